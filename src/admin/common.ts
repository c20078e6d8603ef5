import type { Database, Sql } from "../db";
import { addDuration, currentPeriodEnd, parseDuration, sameDuration } from "../governance/duration";
import { GatewayError, badRequest, notFound } from "../http/errors";
import { hashKey } from "../auth/keys";
import { date } from "../auth/repo";
import { anchorOf } from "../governance/periods";
import { counterKeys, scopes } from "../governance/keys";
import { SEP, type SpendRow } from "../spend/batch";
import type { AdminDeps } from "./deps";
import { type ModelSpendTable, restartModelPeriods } from "./model-budgets";

/** A foreign key refused the change: foreign_key_violation, or restrict_violation for an ON DELETE RESTRICT key. */
export const isForeignKeyViolation = (error: unknown) => ["23503", "23001"].includes((error as { code?: string } | null)?.code ?? "");

/**
 * The id column a foreign key violation names (`keys_team_id_fkey`), from the constraint postgres.js
 * reports or the message the embedded database sends: a team deleted while a key was made for it.
 */
function violatedColumn(error: unknown): string | null {
  const e = error as { constraint_name?: string; message?: string } | null;
  return /_(team_id|user_id|budget_id)_fkey\b/.exec(e?.constraint_name ?? e?.message ?? "")?.[1] ?? null;
}

/** Database errors a bad request can cause, as clear 400s (a unique or foreign key violation); `param` names the field sent. */
export function dbError(error: unknown, what: string, param: string | null = null): never {
  const code = (error as { code?: string })?.code;
  if (code === "23505") throw badRequest(`${what} already exists`, param);
  if (isForeignKeyViolation(error)) {
    const column = violatedColumn(error);
    if (column) throw badRequest(`${column}: refers to a ${column.slice(0, -3)} that does not exist (deleted meanwhile?)`, column);
    throw badRequest(`${what}: refers to something that does not exist or is still referenced`, param);
  }
  // program_limit_exceeded: a value too large for an index (or another of the database's limits).
  if (code === "54000") throw badRequest(`${what}: too large for the database (an id or text too long)`);
  throw error;
}

/** Runs a write; turns constraint violations into 400s. */
export async function write<T>(what: string, fn: () => Promise<T>, param: string | null = null): Promise<T> {
  try {
    return await fn();
  } catch (error) {
    if (error instanceof GatewayError) throw error;
    return dbError(error, what, param);
  }
}

export function resetAtFor(duration: string | null | undefined, now: number): Date | null {
  const parsed = parseDuration(duration ?? undefined);
  return parsed ? addDuration(new Date(now), parsed) : null;
}

/**
 * A row's first period, begun at one instant: its first reset, and where its periods count from
 * (budget_anchor_at; none without a duration, whose first period, if one comes to apply, counts from
 * the row's making).
 */
export interface FirstPeriod {
  resetAt: Date | null;
  anchorAt: Date | null;
}

export function firstPeriod(duration: string | null | undefined, now: number): FirstPeriod {
  const resetAt = resetAtFor(duration, now);
  return { resetAt, anchorAt: resetAt && new Date(now) };
}

/**
 * The first period of an internal user made now without a duration of its own: its budget runs on
 * `internal_user_budget_duration` (see userBudgetDuration), from when it is made.
 */
export function internalUserPeriod(deps: Pick<AdminDeps, "runtime" | "clock">): FirstPeriod {
  return firstPeriod(deps.runtime().config.litellm_settings.internal_user_budget_duration, deps.clock.now());
}

/** A key given as raw `sk-…` or as its hash. */
export function tokenOf(key: string): string {
  return /^[0-9a-f]{64}$/.test(key) ? key : hashKey(key);
}

export async function mustExist(sql: Sql, table: "users" | "teams" | "budgets" | "end_users", column: string, id: string, field: string): Promise<void> {
  const rows = await sql.query(`select 1 from ${table} where ${column} = $1`, [id]);
  if (rows.length === 0) throw badRequest(`${field}: ${table === "end_users" ? "customer" : table.slice(0, -1)} "${id}" does not exist`, field);
}

/**
 * Deletes every one of `ids` or none: an id that does not exist is a 404 naming it, as LiteLLM answers,
 * and the others stay. The rows' ON DELETE CASCADE takes what hangs off them.
 */
export async function deleteEvery(sql: Database, table: "teams" | "users", column: string, ids: string[], what: string): Promise<string[]> {
  return sql.transaction(async (tx) => {
    await lockMemberships(tx);
    // Their memberships go too (on delete cascade), and with them the budgets made for those memberships.
    const memberships = await tx.query(`select budget_id from team_memberships where ${column} = any($1::text[])`, [ids]);
    // The other side of each membership stops listing it: a user's `teams`, a team's `members_with_roles`.
    if (table === "teams") {
      await tx.query(
        `update users set teams = array(select t from unnest(teams) t where t <> all($1::text[])), updated_at = now()
         where teams && $1::text[]`, [ids]);
    } else {
      await tx.query(
        `update teams set members_with_roles = (select coalesce(jsonb_agg(m), '[]'::jsonb) from jsonb_array_elements(members_with_roles) m
           where not (m->>'user_id' = any($1::text[]))), updated_at = now()
         where team_id in (select team_id from team_memberships where user_id = any($1::text[]))`, [ids]);
    }
    const rows = await tx.query(`delete from ${table} where ${column} = any($1::text[]) returning ${column}`, [ids]);
    const deleted = new Set(rows.map((r) => r[column] as string));
    const missing = ids.filter((id) => !deleted.has(id));
    if (missing.length > 0) throw notFound(`${what} not found, passed ${column}=${missing.join(", ")}; nothing was deleted`);
    await dropOwnBudgets(tx, memberships.map((m) => m.budget_id));
    // A team's member budget goes with the team (when nothing else was put on it).
    if (table === "teams") {
      await tx.query(
        `delete from budgets b where b.budget_id = any($1::text[]) and not exists (select 1 from team_memberships m where m.budget_id = b.budget_id)
           and not exists (select 1 from end_users e where e.budget_id = b.budget_id) and not exists (select 1 from keys k where k.budget_id = b.budget_id)`,
        [[...deleted].map((id) => `team-members:${id}`)]);
    }
    return [...deleted];
  });
}

/**
 * Taken first, for the length of its transaction, by every change to who is in which team: a team, its
 * memberships and its users' `teams` change together. A team deleted while a member was added could
 * otherwise interleave with it, row locks taken in different orders (a user listing a team just gone).
 */
export async function lockMemberships(sql: Sql): Promise<void> {
  await sql.query("select pg_advisory_xact_lock(hashtext('litegate:memberships'))");
}

/** Ids of the budgets litegate makes for one membership or one customer (never shared, never made by /budget/new). */
export const OWN_BUDGET_PREFIXES = ["team-member:", "customer:"];
/** Ids /budget/new leaves to litegate: those above, and a team's member budget (`team-members:<team>`). */
export const RESERVED_BUDGET_PREFIXES = [...OWN_BUDGET_PREFIXES, "team-members:"];

/**
 * A budget_id sent for a key or a customer: a budget that exists, and none litegate keeps for one
 * membership, a team's members or one customer (unless the row is on it already): a change to those
 * (a /customer/update, a /team/member_update, a member added again) would change this one's limits too.
 */
export async function mustBeSharedBudget(sql: Sql, budgetId: string, current: string | null | undefined): Promise<void> {
  const reserved = RESERVED_BUDGET_PREFIXES.find((prefix) => budgetId.startsWith(prefix));
  if (reserved && budgetId !== current) {
    throw badRequest(`budget_id: "${budgetId}" is a budget litegate keeps for one membership, a team's members or one customer; give a budget made with /budget/new`, "budget_id");
  }
  await mustExist(sql, "budgets", "budget_id", budgetId, "budget_id");
}

/** Deletes budgets made for one membership or customer once nothing uses them (the membership or customer is gone). */
export async function dropOwnBudgets(sql: Sql, budgetIds: Array<string | null | undefined>): Promise<void> {
  const own = budgetIds.filter((id): id is string => typeof id === "string" && OWN_BUDGET_PREFIXES.some((prefix) => id.startsWith(prefix)));
  if (own.length === 0) return;
  await sql.query(
    `delete from budgets b where b.budget_id = any($1::text[])
       and not exists (select 1 from team_memberships m where m.budget_id = b.budget_id)
       and not exists (select 1 from end_users e where e.budget_id = b.budget_id)
       and not exists (select 1 from keys k where k.budget_id = b.budget_id)`, [own]);
}

/**
 * The spend rows that go with users or teams when they are deleted (their spend per model, keys and
 * memberships, by ON DELETE CASCADE), read before the delete: every instance drops their counters and unwritten spend.
 */
export async function spendRowsOwnedBy(sql: Sql, column: "user_id" | "team_id", ids: string[]): Promise<SpendRow[]> {
  const own = ids.map((id): SpendRow => ({ table: column === "user_id" ? "userModels" : "teamModels", id }));
  const keys = await sql.query("select token from keys where " + column + " = any($1::text[])", [ids]);
  const members = await sql.query("select team_id, user_id from team_memberships where " + column + " = any($1::text[])", [ids]);
  return [
    ...own,
    ...keys.flatMap((k): SpendRow[] => [{ table: "keys", id: k.token }, { table: "keyModels", id: k.token }]),
    ...members.map((m): SpendRow => ({ table: "members", id: m.team_id + SEP + m.user_id })),
  ];
}

export function found<T>(row: T | undefined, what: string): T {
  if (!row) throw notFound(`${what} not found`);
  return row;
}

/** `column = $n` assignments for the fields present in `body`, JSON columns cast. */
/** Columns that are never null: a null sent for one sets its default. */
const NULL_MEANS: Record<string, unknown> = { blocked: false };

export function assignments(body: Record<string, unknown>, columns: readonly string[], jsonColumns: readonly string[] = [], arrayColumns: readonly string[] = []) {
  const sets: string[] = [];
  const values: unknown[] = [];
  for (const column of columns) {
    if (!(column in body)) continue;
    const value = body[column] ?? NULL_MEANS[column] ?? null;
    values.push(jsonColumns.includes(column) ? JSON.stringify(value ?? {}) : arrayColumns.includes(column) ? (value ?? []) : value);
    const n = values.length;
    sets.push(jsonColumns.includes(column) ? `${column} = $${n}::text::jsonb` : arrayColumns.includes(column) ? `${column} = $${n}::text[]` : `${column} = $${n}`);
  }
  return { sets, values };
}

/**
 * The stored spend of a row an admin change gives a new period (`now`: the parameter holding the
 * gateway's time): it counts in the new period, unless the period it was spent in had already ended,
 * which counts as reset already (see periodOf): spend of no period running does not come back.
 */
export const spendIntoPeriod = (now: string, table = "") =>
  `case when ${table}budget_reset_at <= ${now}::timestamptz then 0 else ${table}spend end`;

/**
 * A row's period started again now: the SET clauses (its spend carried in, see spendIntoPeriod; its
 * reset; where its chain counts from, the instant it began), `reset` and `since` naming the parameters
 * that `newPeriodAt` gives, read from one clock reading.
 */
export const newPeriodSet = (reset: string, since: string, table = "") =>
  `spend = ${spendIntoPeriod(since, table)}, budget_reset_at = ${reset}, budget_anchor_at = ${since}`;

export const newPeriodAt = (duration: string | null | undefined, now: number): [Date | null, Date] => [resetAtFor(duration, now), new Date(now)];

export const iso = (value: unknown) => (value instanceof Date ? value.toISOString() : value ?? null);

/**
 * A stored spend and reset as enforcement counts them: a period whose reset has passed is over before
 * the scheduler writes the reset (up to ten minutes later), so the view shows nothing spent in the
 * period now running, and its end when the duration is known.
 */
export function periodView(spend: unknown, resetAt: unknown, duration: unknown, now = Date.now(), origin: Date | null = null) {
  if (!(resetAt instanceof Date) || resetAt.getTime() > now) return { spend, budget_reset_at: iso(resetAt) };
  const parsed = parseDuration(duration);
  return { spend: 0, budget_reset_at: parsed ? currentPeriodEnd(resetAt, parsed, new Date(now), origin).toISOString() : iso(resetAt) };
}

/**
 * A holder's shared budget row (`row_to_json`, its times as text) with `budget_reset_at` at the end of
 * the period running now, as /budget/info and the holder's own field show it: the stored one may have
 * passed up to ten minutes before the scheduler writes the next.
 */
export function budgetTableView(table: Record<string, any> | null | undefined, now = Date.now()) {
  if (!table) return null;
  const { budget_anchor_at: _, ...shown } = table;
  const resetAt = typeof table.budget_reset_at === "string" ? new Date(table.budget_reset_at) : null;
  if (!resetAt || resetAt.getTime() > now) return shown;
  const origin = anchorOf({ budget_anchor_at: date(table.budget_anchor_at), created_at: date(table.created_at) });
  return { ...shown, budget_reset_at: periodView(0, resetAt, table.budget_duration, now, origin).budget_reset_at };
}

/** The column a membership's rows are read with for its view: where its calendar months count from. */
export const MEMBERSHIP_ORIGIN = "coalesce(m.budget_anchor_at, m.created_at) as period_origin";

/**
 * A team membership as the API shows it (read with MEMBERSHIP_ORIGIN): the running period's spend and
 * reset, its budget's too.
 */
export function membershipView(m: Record<string, any>, now = Date.now()) {
  const { period_origin: origin, ...shown } = m;
  return { ...shown, ...periodView(m.spend, m.budget_reset_at, m.litellm_budget_table?.budget_duration, now, origin instanceof Date ? origin : null),
    litellm_budget_table: budgetTableView(m.litellm_budget_table, now) };
}

/**
 * What an update does to a budget holder's period and counters, from the row before it. A new period
 * comes with a different duration only: the same one sent again (an admin screen sends every field)
 * leaves the period running. A max_budget set again after none had no counter kept up to date
 * meanwhile, so its counters start again from the stored spend.
 */
export function budgetChange(before: { budget_duration?: unknown; max_budget?: unknown } | undefined, body: Record<string, unknown>) {
  return {
    newPeriod: "budget_duration" in body && !(before && sameDuration(parseDuration(before.budget_duration), parseDuration(body.budget_duration))),
    budgetBack: body.max_budget != null && before?.max_budget == null,
  };
}

export interface UpdateSpec {
  table: "users" | "teams" | "budgets";
  idColumn: string;
  what: string;
  columns: readonly string[];
  json?: readonly string[];
  arrays?: readonly string[];
  /** Counter scope whose budget counters restart when spend or duration is set. */
  scope?: (id: string) => string;
  /** The spend row a set spend resets on every instance. */
  spendRow?: SpendRow["table"];
  /** The duration a row without one of its own resets on (an internal user's default), from the row as it is or as the update leaves it. */
  fallbackDuration?: (row: Record<string, any>) => string | null;
  /** Where its spend per model is kept: a model_max_budget sent starts the periods it changes anew. */
  modelSpend?: ModelSpendTable;
  /**
   * Whether a default budget may hold the row after the update where it did not before (a user made an
   * internal_user): its counter, not kept while no budget held the row, starts again from the stored spend.
   */
  defaultBudgetBack?: (before: Record<string, any>, after: Record<string, any>) => boolean;
}

/**
 * Where `changes` gives a row a new budget_reset_at, where its chain of periods counts from
 * (budget_anchor_at, see sql/0011_budget_anchor.sql): now for a period begun now, the reset itself
 * when an admin sent it.
 */
export function anchorSet(changes: Record<string, unknown>, body: Record<string, unknown>, values: unknown[], now: number): string[] {
  if (!("budget_reset_at" in changes)) return [];
  const reset = changes.budget_reset_at ?? null;
  values.push(reset === (body.budget_reset_at ?? null) || reset === null ? reset : new Date(now));
  return [`budget_anchor_at = $${values.length}`];
}

/**
 * Marks a holder's spend as set by an admin now (`spend_set_at`, by the gateway's clock): a spend write
 * that began before it carries spend made before it, and leaves the set value alone (src/spend/repo.ts).
 */
export function spendSetAt(values: unknown[], now: number): string {
  values.push(new Date(now));
  return `spend_set_at = $${values.length}`;
}

/**
 * The update every budget holder shares: pending spend written first (it belongs to the period it
 * was spent in), a new duration restarting the period, counters forgotten when spend or duration
 * changes, caches invalidated everywhere.
 */
export async function updateBudgetHolder(
  deps: Pick<AdminDeps, "db" | "clock" | "spend" | "counters" | "invalidate" | "runtime">,
  spec: UpdateSpec,
  id: string,
  body: Record<string, unknown>,
): Promise<Record<string, any>> {
  await deps.spend.flush();
  const changes: Record<string, unknown> = { ...body };
  const modelBudgets = spec.modelSpend && "model_max_budget" in body;
  const [before] = "budget_duration" in body || "max_budget" in body || spec.fallbackDuration || modelBudgets
    ? await deps.db.query(`select * from ${spec.table} where ${spec.idColumn} = $1`, [id]) : [];
  const change = budgetChange(before, body);
  const budgetBack = change.budgetBack || (before !== undefined && (spec.defaultBudgetBack?.(before, { ...before, ...body }) ?? false));
  // With a default, what the row resets on (its own duration, else the default) may change with
  // another field too (a user made an internal_user): that starts a new period as well, and what was
  // spent counts in it; the same duration it had already leaves the period running.
  const resetsOn = (row: Record<string, any>) => (row.budget_duration as string | null | undefined) ?? spec.fallbackDuration?.(row) ?? null;
  const duration = resetsOn({ ...before, ...body });
  const newPeriod = spec.fallbackDuration && before ? !sameDuration(parseDuration(resetsOn(before)), parseDuration(duration)) : change.newPeriod;
  // One instant for the new period's reset, where it counts from, and the spend carried into it.
  const now = deps.clock.now();
  if (newPeriod) changes.budget_reset_at = resetAtFor(duration, now);
  const { sets, values } = assignments(changes, spec.columns, spec.json, spec.arrays);
  // Nothing to change (the id alone, or fields taken and ignored) answers the row as it is, as LiteLLM does.
  if (sets.length === 0) return found((await deps.db.query(`select * from ${spec.table} where ${spec.idColumn} = $1`, [id]))[0], spec.what);
  sets.push(...anchorSet(changes, body, values, now));
  // A budget row holds no spend (its holders do, below).
  if (newPeriod && spec.table !== "budgets" && !("spend" in body)) {
    values.push(new Date(now));
    sets.push(`spend = ${spendIntoPeriod(`$${values.length}`)}`);
  }
  if ("spend" in body && spec.table !== "budgets") sets.push(spendSetAt(values, deps.clock.now()));
  values.push(id);
  const [row] = await write(spec.what.toLowerCase(), () =>
    deps.db.query(`update ${spec.table} set ${[...sets, "updated_at = now()"].join(", ")} where ${spec.idColumn} = $${values.length} returning *`, values));
  found(row, spec.what);
  // The budget max_end_user_budget_id names holds every customer without one of its own too.
  const endUserDefault = spec.table === "budgets" && id === deps.runtime().config.litellm_settings.max_end_user_budget_id;
  if (spec.table === "budgets" && newPeriod) {
    // Those whose period this budget's duration sets (customers, members, keys with no duration of
    // their own) start the new period at once, as the budget does; their next request plans on it.
    const [at, since] = [changes.budget_reset_at, new Date(now)];
    const start = newPeriodSet("$2", "$3");
    await deps.db.query(`update end_users set ${start}, updated_at = now() where budget_id = $1 or ($4 and budget_id is null)`, [id, at, since, endUserDefault]);
    await deps.db.query(`update team_memberships set ${start} where budget_id = $1`, [id, at, since]);
    await deps.db.query(`update keys set ${start}, updated_at = now() where budget_id = $1 and budget_duration is null`, [id, at, since]);
    // The customers' default duration as their period now runs: a restart or reload finds it unchanged (see startDefaultPeriods).
    if (endUserDefault) await deps.db.query("update gateway_spend set end_user_budget_duration = $1 where id = 1", [parseDuration(duration)?.text ?? ""]);
  }
  const restart: string[] = [];
  if (modelBudgets) {
    restart.push(...await restartModelPeriods(deps.db, spec.modelSpend!, id, before?.model_max_budget ?? {}, (body.model_max_budget ?? {}) as Record<string, any>, deps.clock.now()));
  }
  if (spec.scope && ("spend" in body || newPeriod || budgetBack)) restart.push(counterKeys.budgetPrefix(spec.scope(id)));
  if (spec.table === "budgets" && (budgetBack || newPeriod)) {
    // The counters of everything on the budget start again too (its customers, team members and keys).
    const holders = await deps.db.query(
      `select 'c' as kind, user_id as a, null as b from end_users where budget_id = $1
       union all select 'm', team_id, user_id from team_memberships where budget_id = $1
       union all select 'k', token, null from keys where budget_id = $1`, [id]);
    for (const h of holders) {
      const scope = h.kind === "c" ? scopes.customer(h.a) : h.kind === "m" ? scopes.member(h.a, h.b) : scopes.key(h.a);
      restart.push(counterKeys.budgetPrefix(scope));
    }
    if (endUserDefault) restart.push(counterKeys.budgetPrefix(scopes.customers()));
  }
  deps.invalidate({ kind: "all", reset: spec.spendRow && "spend" in body ? [{ table: spec.spendRow, id }] : undefined, restart });
  return row!;
}
