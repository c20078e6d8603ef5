import type { Sql } from "../db";
import { addDuration, parseDuration } from "../governance/duration";
import { GatewayError } from "../http/errors";

/**
 * /key/regenerate's `grace_period`: until when the old secret still authenticates, as the key itself
 * (its budgets, limits and spend), or null when it stops at once. The schema has checked the text.
 */
export function graceUntil(gracePeriod: string | null | undefined, now: number): Date | null {
  const duration = parseDuration(gracePeriod ?? undefined);
  return duration ? addDuration(new Date(now), duration) : null;
}

/** A raw key of the caller's choosing that another key has already: a 409, as /key/generate answers. */
export async function refuseTaken(sql: Sql, token: string, field: string): Promise<void> {
  // Held until the transaction ends, so one made at the same moment is seen here, not refused by the insert as something else.
  await sql.query("select pg_advisory_xact_lock(hashtext('key:' || $1))", [token]);
  if ((await sql.query("select 1 from keys where token = $1", [token])).length > 0) throw new GatewayError(409, "conflict_error", `${field}: this key already exists`, field);
}

/**
 * Records a key's secret replaced: spend settled under the old token still reaches the key (see
 * spend/repo.ts), and the old secret authenticates until `until`. The key's earlier secrets stop now,
 * whatever grace they had: only the one this regeneration gives a grace keeps working.
 */
export async function retire(sql: Sql, old: string, token: string, until: Date | null): Promise<void> {
  await sql.query("update key_renames set revoke_at = null where new_token = $1 and revoke_at is not null", [token]);
  await sql.query(
    `insert into key_renames (old_token, new_token, revoke_at) values ($1, $2, $3)
     on conflict (old_token) do update set new_token = excluded.new_token, renamed_at = now(), revoke_at = excluded.revoke_at`, [old, token, until]);
}

/** The key a token names: an old secret within its grace stands for its key (see `retire`); any other token is itself. */
export async function currentToken(sql: Sql, token: string, now: number): Promise<string> {
  const [grace] = await sql.query(
    "select new_token from key_renames where old_token = $1 and revoke_at > $2 and not exists (select 1 from keys where token = $1)", [token, new Date(now)]);
  return (grace?.new_token as string | undefined) ?? token;
}
