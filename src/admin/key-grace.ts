import type { Sql } from "../db";
import { addDuration, parseDuration } from "../governance/duration";
import { GatewayError } from "../http/errors";

/**
 * /key/regenerate's `grace_period`: until when the old secret still authenticates, as the key itself
 * (its budgets, limits and spend), or null when it stops at once. Left out, null or "", it is the
 * default grace (LiteLLM's `grace_period or LITELLM_KEY_ROTATION_GRACE_PERIOD`); a zero one ("0s")
 * stops it at once whatever the default. The schema has checked the text.
 */
export function graceUntil(gracePeriod: string | null | undefined, defaultGrace: string | null, now: number): Date | null {
  const duration = parseDuration(gracePeriod || defaultGrace || undefined);
  return duration ? addDuration(new Date(now), duration) : null;
}

/**
 * The default grace of a regenerated key's old secret: LITELLM_KEY_ROTATION_GRACE_PERIOD, as LiteLLM
 * reads it (the process's environment, or the config's environment_variables), read at start and at
 * each config reload. Not a duration (nor empty, nor zero): none, as LiteLLM falls back to, and a warning.
 */
export function defaultGrace(env: Record<string, string | undefined>): { grace: string | null; warning?: string } {
  const text = env.LITELLM_KEY_ROTATION_GRACE_PERIOD?.trim();
  if (!text) return { grace: null };
  if (parseDuration(text)) return { grace: text };
  if (/^0+\s*(mo|s|m|h|d|w)?$/.test(text)) return { grace: null };
  return { grace: null, warning: `LITELLM_KEY_ROTATION_GRACE_PERIOD: ${JSON.stringify(text)} is not a duration such as 30s, 20m, 1h, 7d, 2w or 1mo: a regenerated key's old secret stops at once unless the request gives a grace_period` };
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
