import { FormatRegistry, Kind, TypeRegistry } from "@sinclair/typebox";
import { t } from "elysia";
import { parseDuration } from "../governance/duration";

/** Field schemas shared by the admin routes. */

const DECIMAL = /^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$/;

/**
 * A number, or a numeric string (LiteLLM clients send both), within bounds. The bounds hold for the
 * string too, as a format checked with the rest of the body, so an error names its field
 * (`max_budget: must be …`); numbers-as-text such as "Infinity" or "0x10" are refused.
 */
/**
 * A number, also as text (query strings, documents that quote numbers). `field` names a query
 * parameter in errors: the framework checks those one at a time and its error has no path.
 */
export function numeric(options: { minimum: number; maximum?: number; integer?: boolean; description?: string; field?: string }) {
  const { minimum, maximum = Number.MAX_VALUE, integer = false } = options;
  const format = `numeric-${minimum}-${maximum}${integer ? "-integer" : ""}`;
  if (!FormatRegistry.Has(format)) {
    FormatRegistry.Set(format, (text) => {
      if (!DECIMAL.test(text)) return false;
      const n = Number(text);
      return n >= minimum && n <= maximum && (!integer || Number.isInteger(n));
    });
  }
  const named = options.field === undefined ? {} : { title: options.field };
  const bounds = { minimum, ...(options.maximum === undefined ? {} : { maximum }), ...(integer ? { multipleOf: 1 } : {}), ...named };
  return t
    .Transform(t.Union([t.Number(bounds), t.String({ format, ...named })], { description: options.description, ...named }))
    .Decode((value) => (typeof value === "string" ? Number(value) : value))
    .Encode((value) => value);
}

export const Money = numeric({ minimum: 0, maximum: 1e15, description: "USD" });
/** A page number: far past the last page, yet small enough that its offset stays a number Postgres takes. */
export const Page = numeric({ minimum: 1, maximum: 1_000_000_000, integer: true, field: "page" });
export const Limit = numeric({ minimum: 0, maximum: 2_147_483_647, integer: true });
FormatRegistry.Set("litegate-duration", (text) => parseDuration(text) !== null);
export const DurationText = t.String({
  format: "litegate-duration", description: "30s, 20m, 1h, 7d, 2w or 1mo",
  error: "must be a duration such as 30s, 20m, 1h, 7d, 2w or 1mo, longer than zero and at most a century",
});
/** A key's lifetime: a duration, or "-1" (LiteLLM's older spelling of null) for a key that never expires. */
const KeyDuration = t.Union([DurationText, t.Literal("-1")]);
/** YYYY-MM-DD, optionally with a time and a zone: a four-digit year, as the database reads it. */
const DATE = /^(\d{4})-(\d{2})-(\d{2})(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}(?::?\d{2})?)?)?$/;

/**
 * The date a text names, or null; a bare day is its start (or its last millisecond). 2024-02-30 is not a
 * day, nor is one whose instant falls outside the years 1 to 9999 in UTC (9999-12-31T23:59:59-12:00 is in
 * the year 10000): the runtime writes such a date as `+010000-…`, which neither database nor a reader takes.
 */
export function timestampOf(text: string, endOfDay = false): Date | null {
  const parts = DATE.exec(text.trim());
  if (!parts) return null;
  // A time without a zone is UTC, as a bare day is (the runtime would read it in the server's zone).
  const zoned = /[T ].*(Z|[+-]\d{2}(:?\d{2})?)$/.test(parts[0]);
  const date = new Date(parts[0].length === 10 ? `${parts[0]}T${endOfDay ? "23:59:59.999" : "00:00:00.000"}Z` : zoned ? parts[0] : `${parts[0].replace(" ", "T")}Z`);
  // Not Date.UTC, which reads the years 0 to 99 as 1900 to 1999.
  const day = new Date(0);
  day.setUTCFullYear(Number(parts[1]), Number(parts[2]) - 1, Number(parts[3]));
  if (Number.isNaN(date.getTime()) || !day.toISOString().startsWith(parts[0].slice(0, 10))) return null;
  const year = date.getUTCFullYear();
  return year >= 1 && year <= 9999 ? date : null;
}
FormatRegistry.Set("litegate-timestamp", (text) => timestampOf(text) !== null);
const Timestamp = t.String({ format: "litegate-timestamp", error: "must be a date, YYYY-MM-DD or an ISO timestamp" });
/** Ids never hold control characters: litegate joins two of them with one (spend/batch.ts SEP). */
const PRINTABLE = "^[^\\u0000-\\u001f\\u007f]*$";
/**
 * Ids are also held to 1,000 bytes of UTF-8: two of them make a membership's key, and Postgres indexes
 * no key past 2,704 bytes (512 CJK characters are 1,536 bytes).
 */
FormatRegistry.Set("litegate-id", (text) => Buffer.byteLength(text, "utf8") <= 1000);
export const Id = t.String({ minLength: 1, maxLength: 512, pattern: PRINTABLE, format: "litegate-id", error: "must be a non-empty string of at most 512 characters (1,000 bytes of UTF-8), none of them a control character" });
/** A user id may be empty, as in LiteLLM (its docs create the user "" and keys for it). */
export const UserId = t.String({ maxLength: 512, pattern: PRINTABLE, format: "litegate-id", error: "must be a string of at most 512 characters (1,000 bytes of UTF-8), none of them a control character" });
export const Models = t.Array(t.String({ maxLength: 512 }), { maxItems: 1000 });
export const Metadata = t.Record(t.String(), t.Unknown());
const opt = <T extends Parameters<typeof t.Optional>[0]>(schema: T) => t.Optional(t.Union([schema, t.Null()]));

/**
 * A model's budget, in either spelling LiteLLM takes: `{budget_limit, time_period}` or
 * `{max_budget, budget_duration}` (its /budget/new docs), stored as the first; with per-model limits
 * beside it, or alone (LiteLLM's budget is optional too). One object rather than a union of the two
 * spellings, so an error names the field that is wrong, not one the other spelling requires.
 */
const ModelBudget = t.Transform(t.Object({
  budget_limit: opt(Money), time_period: opt(DurationText),
  max_budget: opt(Money), budget_duration: opt(DurationText),
  rpm_limit: opt(Limit), tpm_limit: opt(Limit),
}, { additionalProperties: true }))
  .Decode((value: Record<string, any>) => {
    const { max_budget, budget_duration, ...rest } = value;
    const budget_limit = value.budget_limit ?? max_budget ?? null;
    return { ...rest, budget_limit, time_period: value.time_period ?? budget_duration ?? null };
  })
  .Encode((value) => value as any);
export const ModelBudgets = t.Record(t.String(), ModelBudget);
export const ModelLimits = t.Record(t.String(), t.Union([Limit, t.Null()]));
/**
 * A key's or team's metadata: anything, but the per-model limits LiteLLM reads from it (a key's before
 * its own `model_rpm_limit`, a team's only there; see governance/policy.ts) must be limits, or they
 * would be taken and not enforced.
 */
export const LimitsMetadata = t.Object({ model_rpm_limit: t.Optional(t.Union([ModelLimits, t.Null()])), model_tpm_limit: t.Optional(t.Union([ModelLimits, t.Null()])) }, { additionalProperties: true });

/** Text LiteLLM reads as "none": its UI sends "" for an empty budget, and "None" or "null" for no duration. */
const noneAs = (...texts: string[]) => t.Transform(t.Union(texts.map((text) => t.Literal(text)), { error: `must be ${texts.map((text) => JSON.stringify(text)).join(" or ")} for none` }))
  .Decode(() => null)
  .Encode(() => texts[0] as never);

/** The next budget reset, which an update may set outright (budget_duration sets it too). */
export const nextReset = { budget_reset_at: opt(Timestamp) };

/** Budget and limit fields, as keys, users, teams and budgets carry them. */
export const budgetFields = {
  max_budget: t.Optional(t.Union([Money, t.Null(), noneAs("")])),
  soft_budget: t.Optional(t.Union([Money, t.Null(), noneAs("")])),
  budget_duration: t.Optional(t.Union([DurationText, t.Null(), noneAs("", "None", "null")])),
  tpm_limit: opt(Limit),
  rpm_limit: opt(Limit),
  max_parallel_requests: opt(Limit),
};

/**
 * A LiteLLM field that would change what a key, team or customer may do, and that litegate does not
 * implement: refused unless left out, null or empty, rather than taken and ignored (a `read_only`
 * key that could still call models, a `guardrails` list that guards nothing).
 */
function refusedUnlessEmpty(what: string, empty: "array" | "object" | "members" | "null", allowed: (string | boolean)[] = []) {
  const error = `left out, null or empty${allowed.length ? ` (or ${allowed.map((v) => JSON.stringify(v)).join(", ")})` : ""}: litegate does not implement ${what}`;
  const variants = [t.Null({ error }), ...allowed.map((v) => t.Literal(v, { error }))];
  if (empty === "array") variants.push(t.Array(t.Unknown(), { maxItems: 0, error }) as any);
  if (empty === "object") variants.push(t.Record(t.String(), t.Unknown(), { maxProperties: 0, error }) as any);
  if (empty === "members") variants.push(t.Unsafe({ [Kind]: "litegate-unset-settings", error }) as any);
  return t.Optional(t.Union(variants, { error }));
}

const isUnset = (value: unknown) => value === null || value === false
  || (typeof value === "object" && Object.keys(value as object).length === 0);
/**
 * An object of settings each unset (LiteLLM's UI sends every one: `{"models": [], "mcp_servers": null, …}`).
 * Its own kind, which the framework leaves as sent: a union of schemas would have it reshape `true` or
 * `1` into `{}`, and take them as unset.
 */
TypeRegistry.Set("litegate-unset-settings", (_schema, value) =>
  typeof value === "object" && value !== null && !Array.isArray(value) && Object.values(value).every(isUnset));

/** Key fields LiteLLM takes that litegate does not implement (see `refusedUnlessEmpty`). */
export const keyRefusedFields = {
  key_type: refusedUnlessEmpty("key types other than the default (read_only or management keys)", "null", ["default", "llm_api"]),
  allowed_routes: refusedUnlessEmpty("allowed_routes", "array"),
  enforced_params: refusedUnlessEmpty("enforced_params", "array"),
  aliases: refusedUnlessEmpty("key model aliases", "object"),
  permissions: refusedUnlessEmpty("key permissions", "object"),
  guardrails: refusedUnlessEmpty("guardrails", "array"),
  temp_budget_increase: refusedUnlessEmpty("temporary budget increases", "null"),
  temp_budget_expiry: refusedUnlessEmpty("temporary budget increases", "null"),
  allowed_model_region: refusedUnlessEmpty("model regions", "null"),
  budget_limits: refusedUnlessEmpty("budget_limits (one budget per key; use model_max_budget per model)", "array"),
  // "best_effort_throughput" is LiteLLM's default, and what litegate does.
  rpm_limit_type: refusedUnlessEmpty("rpm_limit_type other than best_effort_throughput", "null", ["best_effort_throughput"]),
  tpm_limit_type: refusedUnlessEmpty("tpm_limit_type other than best_effort_throughput", "null", ["best_effort_throughput"]),
  tpd_limit: refusedUnlessEmpty("tokens-per-day limits", "null"),
  tag_rpm_limit: refusedUnlessEmpty("per-tag limits", "object"),
  end_user_budget_id: refusedUnlessEmpty("a key's own budget for its customers (use litellm_settings.max_end_user_budget_id)", "null"),
  throttle_on_budget_exceeded: refusedUnlessEmpty("throttling past a budget (a key over budget is refused)", "null", [false]),
  budget_fallbacks: refusedUnlessEmpty("budget fallbacks", "object"),
  object_permission: refusedUnlessEmpty("object permissions (models, MCP servers, vector stores, agents)", "members"),
  access_group_ids: refusedUnlessEmpty("access groups granted to a key", "array"),
  allowed_passthrough_routes: refusedUnlessEmpty("pass-through routes", "array"),
  allowed_vector_store_indexes: refusedUnlessEmpty("vector stores", "array"),
  allowed_cache_controls: refusedUnlessEmpty("caching, nor so limits on the cache controls a key may send", "array"),
  config: refusedUnlessEmpty("a key's own config (model_list)", "object"),
  router_settings: refusedUnlessEmpty("a key's own router_settings", "members"),
  policies: refusedUnlessEmpty("guardrail policies", "array"),
  prompts: refusedUnlessEmpty("prompt management", "array"),
  enable_prompt_caching: refusedUnlessEmpty("prompt caching injected by the gateway", "null", [false]),
  auto_rotate: refusedUnlessEmpty("automatic key rotation", "null", [false]),
  // An empty id names nothing (LiteLLM reads "" as none for organization_id and project_id).
  organization_id: refusedUnlessEmpty("organizations", "null", [""]),
  project_id: refusedUnlessEmpty("projects", "null", [""]),
  agent_id: refusedUnlessEmpty("agents", "null", [""]),
};

/** A duration of nothing (`"0s"`, `"0"`): LiteLLM revokes the old secret at once for it, with or without a default grace. */
const ZeroDuration = t.String({ pattern: "^\\s*0+\\s*(mo|s|m|h|d|w)?\\s*$" });

/**
 * /key/regenerate's own fields: `grace_period`, how long the old secret still authenticates as the key
 * (left out, null or "": LITELLM_KEY_ROTATION_GRACE_PERIOD's, by default none; a zero one: none, whatever
 * the default, as in LiteLLM); the master key is the config's, not regenerated.
 */
export const regenerateFields = {
  grace_period: t.Optional(t.Union([DurationText, ZeroDuration, t.Null(), t.Literal("")], {
    error: "must be a duration such as 30s, 20m, 1h, 7d, 2w or 1mo (at most a century), \"0s\" to revoke the old key at once, or null for the default",
  })),
  new_master_key: refusedUnlessEmpty("regenerating the master key (set general_settings.master_key and restart)", "null", [""]),
};

/** Team fields LiteLLM takes that litegate does not implement. */
export const teamRefusedFields = {
  rpm_limit_type: keyRefusedFields.rpm_limit_type,
  tpm_limit_type: keyRefusedFields.tpm_limit_type,
  object_permission: keyRefusedFields.object_permission,
  router_settings: refusedUnlessEmpty("a team's own router_settings", "members"),
  organization_id: keyRefusedFields.organization_id,
  model_aliases: refusedUnlessEmpty("team model aliases", "object"),
  guardrails: refusedUnlessEmpty("guardrails", "array"),
  team_member_key_duration: refusedUnlessEmpty("team_member_key_duration", "null"),
  budget_limits: refusedUnlessEmpty("budget_limits (one budget per team)", "array"),
};

/**
 * User fields LiteLLM takes on /user/update that litegate does not implement: per-model limits are a
 * key's (LiteLLM holds a user's own across all its keys).
 */
export const userRefusedFields = {
  model_rpm_limit: refusedUnlessEmpty("per-model limits on users (keys have model_rpm_limit)", "object"),
  model_tpm_limit: refusedUnlessEmpty("per-model limits on users (keys have model_tpm_limit)", "object"),
};

/** Customer fields LiteLLM takes that litegate does not implement. */
export const customerRefusedFields = {
  allowed_model_region: refusedUnlessEmpty("model regions", "null"),
  default_model: refusedUnlessEmpty("a customer's default model", "null"),
};

/** A raw key of the caller's choosing (/key/generate's `key`, /key/regenerate's `new_key`). */
export const RawKey = t.String({ pattern: "^sk-[A-Za-z0-9_\\-.]{4,256}$", error: "must be sk- followed by 4 to 256 letters, digits, '_', '-' or '.'" });

/** The /key/generate body; /user/new takes it too. */
export const keyFields = {
  ...budgetFields,
  duration: opt(KeyDuration),
  key_alias: opt(t.String({ maxLength: 512 })),
  key: opt(RawKey),
  models: opt(Models),
  model_max_budget: opt(ModelBudgets),
  model_rpm_limit: opt(ModelLimits),
  model_tpm_limit: opt(ModelLimits),
  user_id: opt(UserId),
  team_id: opt(Id),
  budget_id: opt(Id),
  metadata: opt(LimitsMetadata),
  blocked: opt(t.Boolean()),
  /** Spend to start from (a key or user moved from another gateway keeps what it spent). */
  spend: opt(Money),
  ...keyRefusedFields,
};

export const open = { additionalProperties: true } as const;
export { opt };
