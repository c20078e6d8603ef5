import { spendIntoPeriod } from "./admin/common";
import type { Config } from "./config";
import type { Database, Sql } from "./db";
import { addDuration, parseDuration, sameDuration } from "./governance/duration";
import { counterKeys, scopes } from "./governance/keys";
import type { GatewayState } from "./proxy";

// Periods a config starts: the gateway budget's, and those of the rows on a default duration.

/**
 * The gateway budget's period as the config names it. Given a period while none is stored
 * (`budget_duration` added to a budget already spent), or one of another length than the stored period
 * runs on (`1h` where it was `30d`; `60m` is `1h`), a period starts now and what was spent counts in it,
 * as when `/key/update` changes a key's duration: a new period forgives nothing, and a gateway refused
 * for good still reaches its end (refusals write no spend). A duration taken away is stored as `''`: the
 * budget no longer resets, and its stored period stays, so spend of requests planned in it still adds
 * up (a period it no longer has would read as ended, and the next delta would replace the spend).
 */
export async function startGatewayPeriod(db: Database, state: GatewayState, config: Config, now: number): Promise<void> {
  const { max_budget, budget_duration } = config.litellm_settings;
  if (max_budget === undefined) return;
  const duration = parseDuration(budget_duration);
  const [stored] = await db.query<{ budget_duration: string | null; budget_reset_at: Date | null; budget_anchor_at: Date | null }>(
    "select budget_duration, budget_reset_at, budget_anchor_at from gateway_spend where id = 1");
  if (!stored) return;
  let resetAt = stored.budget_reset_at;
  let anchorAt = stored.budget_anchor_at;
  if (duration) {
    const before = stored.budget_duration;
    // A row from before the duration was stored (null) ran on this config's duration: it keeps its period.
    const same = before === null || (before !== "" && sameDuration(parseDuration(before), duration));
    if (!resetAt || !same) [resetAt, anchorAt] = [addDuration(new Date(now), duration), new Date(now)];
  }
  // Compare-and-set on what was read: of several instances starting on one new config, one starts the
  // period. Spent in a period that had already ended (reset already, as enforcement counts it), spend
  // does not come back in the new one.
  const [row] = await db.query(
    `update gateway_spend set budget_duration = $1::text, budget_reset_at = $2::timestamptz, budget_anchor_at = $5::timestamptz,
       spend = case when budget_reset_at is distinct from $2::timestamptz and budget_reset_at <= $4::timestamptz and $3::text <> '' then 0 else spend end
     where id = 1 and budget_duration is not distinct from $3::text returning budget_reset_at, budget_anchor_at, spend`,
    [duration?.text ?? "", resetAt, stored.budget_duration, new Date(now), anchorAt],
  );
  const after = row ?? (await loadGatewayState(db));
  state.budgetResetAt = row ? row.budget_reset_at : after.budgetResetAt;
  state.anchorAt = row ? row.budget_anchor_at : after.anchorAt;
  state.spend = after.spend;
}

export async function loadGatewayState(db: Database): Promise<GatewayState> {
  const [row] = await db.query("select spend, budget_reset_at, updated_at, budget_anchor_at from gateway_spend where id = 1");
  return { spend: row?.spend ?? 0, budgetResetAt: row?.budget_reset_at ?? null, createdAt: row?.updated_at ?? null, anchorAt: row?.budget_anchor_at ?? null };
}

/** The rows a default duration applies to: those with no duration of their own. */
const DEFAULTS = {
  /** Internal users without a budget_duration (litellm_settings.internal_user_budget_duration). */
  users: {
    column: "internal_user_budget_duration",
    rows: "update users set %s, updated_at = now() where user_role = 'internal_user' and budget_duration is null",
    scope: scopes.users(),
  },
  /** Customers without a budget of their own (max_end_user_budget_id's budget_duration). */
  customers: {
    column: "end_user_budget_duration",
    rows: "update end_users set %s, updated_at = now() where budget_id is null",
    scope: scopes.customers(),
  },
} as const;

export type DefaultKind = keyof typeof DEFAULTS;

/** The default durations as `config` and the budgets table have them now. */
async function configuredDefaults(db: Sql, config: Config): Promise<Record<DefaultKind, string | null>> {
  const { internal_user_budget_duration, max_end_user_budget_id } = config.litellm_settings;
  const [budget] = max_end_user_budget_id === undefined ? []
    : await db.query("select budget_duration from budgets where budget_id = $1", [max_end_user_budget_id]);
  return { users: internal_user_budget_duration ?? null, customers: budget?.budget_duration ?? null };
}

/**
 * The rows on a default duration given another length (`internal_user_budget_duration: 1h` where it
 * was `30d`, or max_end_user_budget_id's budget now another duration) start a period of the new length
 * now, what they spent counted in it (not when their period had already ended), as the gateway budget
 * does (see startGatewayPeriod) and as an admin change of their own duration does: an internal user
 * does not stay refused for the rest of a 30-day period. The same length (`24h` for `1d`) leaves the
 * periods running; a stored value of null (a database from before these were stored) is only stored.
 * One statement per kind, a compare-and-set on the stored value: of several instances reloading one
 * config, one starts the periods. `flush` runs first when a period starts (unwritten spend belongs to
 * the period it was spent in). Returns the budget counter prefixes to start again.
 */
export async function startDefaultPeriods(db: Sql, config: Config, now: number, flush: () => Promise<void>,
  kinds: readonly DefaultKind[] = ["users", "customers"]): Promise<string[]> {
  const configured = await configuredDefaults(db, config);
  const [stored] = await db.query("select internal_user_budget_duration, end_user_budget_duration from gateway_spend where id = 1");
  if (!stored) return [];
  const restart: string[] = [];
  let flushed = false;
  for (const kind of kinds) {
    const { column, rows, scope } = DEFAULTS[kind];
    const duration = parseDuration(configured[kind]);
    const before: string | null = stored[column];
    if (before !== null && sameDuration(parseDuration(before), duration)) continue;
    if (before !== null && !flushed) {
      await flush();
      flushed = true;
    }
    const start = `spend = ${spendIntoPeriod("$4")}, budget_reset_at = $3::timestamptz, budget_anchor_at = $4::timestamptz`;
    const [row] = await db.query(
      `with claimed as (
         update gateway_spend set ${column} = $1::text where id = 1 and ${column} is not distinct from $2::text returning 1
       ), started as (${rows.replace("%s", start)} and $2::text is not null and exists (select 1 from claimed))
       select count(*)::int as claimed from claimed`,
      [duration?.text ?? "", before, duration ? addDuration(new Date(now), duration) : null, new Date(now)],
    );
    if (before !== null && row?.claimed) restart.push(counterKeys.budgetPrefix(scope));
  }
  return restart;
}
