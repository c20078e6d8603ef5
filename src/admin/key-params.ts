import type { KeyDefaults, KeyUpperBounds } from "../config";
import { addDuration, parseDuration } from "../governance/duration";
import { badRequest } from "../http/errors";

/**
 * The operator's `default_key_generate_params` and `upperbound_key_generate_params`
 * (litellm_settings), applied to what /key/generate, /key/update and /key/regenerate are sent.
 */

type Body = Record<string, any>;

const DEFAULTED = ["max_budget", "soft_budget", "budget_duration", "duration", "max_parallel_requests", "tpm_limit", "rpm_limit", "models", "metadata", "user_id", "team_id"] as const;
const CAPPED_NUMBERS = ["max_budget", "max_parallel_requests", "tpm_limit", "rpm_limit"] as const;
const CAPPED_DURATIONS = ["budget_duration", "duration"] as const;

const isEmpty = (value: unknown) =>
  value === undefined || value === null || (Array.isArray(value) && value.length === 0) ||
  (typeof value === "object" && !Array.isArray(value) && Object.keys(value).length === 0);

/**
 * A new key's fields the request left out take the operator's defaults. Null, [] and {} count as left
 * out, as in LiteLLM: its UI sends them for every field left blank, which would otherwise escape the defaults.
 */
export function withKeyDefaults(body: Body, defaults: KeyDefaults | undefined): Body {
  if (!defaults) return body;
  const out = { ...body };
  for (const field of DEFAULTED) {
    const value = defaults[field];
    if (value !== undefined && value !== null && isEmpty(out[field])) out[field] = structuredClone(value);
  }
  return out;
}

/** How long a duration lasts from `now` (a month is the calendar month ahead, as a key's expiry counts it). */
const lengthOf = (text: string, now: number) => addDuration(new Date(now), parseDuration(text)!).getTime() - now;

/** Null (no limit, no expiry, no reset) and "-1" (never expires) are longer and larger than any cap. */
function isOver(value: unknown, cap: number | string, now: number): boolean {
  if (value === null || value === "-1") return true;
  if (typeof cap === "number") return Number(value) > cap;
  return parseDuration(value) !== null && lengthOf(String(value), now) > lengthOf(cap, now);
}

/**
 * Refuses a value over the operator's cap, naming the field and both values as LiteLLM does. A new key
 * (`fill`) takes the cap for a capped field it was not sent or sent as null: without one it would have
 * no limit at all. A change refuses null instead, as that lifts the limit (but a duration, which null leaves as it is).
 */
export function withinUpperBounds(body: Body, bounds: KeyUpperBounds | undefined, now: number, fill: boolean): Body {
  if (!bounds) return body;
  const out = { ...body };
  for (const field of [...CAPPED_NUMBERS, ...CAPPED_DURATIONS]) {
    const cap = bounds[field];
    if (cap === undefined || cap === null) continue;
    const value = out[field];
    // A change's duration sent as null leaves the expiry as it is (see the key update).
    if (value === undefined || (value === null && (fill || field === "duration"))) {
      if (fill) out[field] = cap;
      continue;
    }
    if (isOver(value, cap, now)) {
      throw badRequest(`${field} is over max limit set in config - user_value=${value === null ? "null" : value}; max_value=${cap}`, field);
    }
  }
  return out;
}
