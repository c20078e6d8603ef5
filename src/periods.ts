import type { Config } from "./config";
import type { Database } from "./db";
import { addDuration, parseDuration, sameDuration } from "./governance/duration";
import type { GatewayState } from "./proxy";

// The period a config starts: the gateway budget's.

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
  const [stored] = await db.query<{ budget_duration: string | null; budget_reset_at: Date | null }>(
    "select budget_duration, budget_reset_at from gateway_spend where id = 1");
  if (!stored) return;
  let resetAt = stored.budget_reset_at;
  if (duration) {
    const before = stored.budget_duration;
    // A row from before the duration was stored (null) ran on this config's duration: it keeps its period.
    const same = before === null || (before !== "" && sameDuration(parseDuration(before), duration));
    if (!resetAt || !same) resetAt = addDuration(new Date(now), duration);
  }
  // Compare-and-set on what was read: of several instances starting on one new config, one starts the
  // period. Spent in a period that had already ended (reset already, as enforcement counts it), spend
  // does not come back in the new one.
  const [row] = await db.query(
    `update gateway_spend set budget_duration = $1::text, budget_reset_at = $2::timestamptz,
       spend = case when budget_reset_at is distinct from $2::timestamptz and budget_reset_at <= $4::timestamptz and $3::text <> '' then 0 else spend end
     where id = 1 and budget_duration is not distinct from $3::text returning budget_reset_at, spend`,
    [duration?.text ?? "", resetAt, stored.budget_duration, new Date(now)],
  );
  const after = row ?? (await loadGatewayState(db));
  state.budgetResetAt = row ? row.budget_reset_at : after.budgetResetAt;
  state.spend = after.spend;
}

export async function loadGatewayState(db: Database): Promise<GatewayState> {
  const [row] = await db.query("select spend, budget_reset_at, updated_at from gateway_spend where id = 1");
  return { spend: row?.spend ?? 0, budgetResetAt: row?.budget_reset_at ?? null, createdAt: row?.updated_at ?? null };
}
