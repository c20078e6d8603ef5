import { type Static, Type as T } from "@sinclair/typebox";
import { DEFAULT_DATA_DIR } from "../paths";

const Money = T.Number({ minimum: 0 });
const Count = T.Integer({ minimum: 0 });
const Seconds = T.Number({ minimum: 0 });
/** A deadline: 0 would abort every request at once, so it is refused, not taken. */
const TIMEOUT = { exclusiveMinimum: 0, problem: "must be a number of seconds above 0 (0 would time every request out at once)" };
const Timeout = T.Number(TIMEOUT);
const Duration = T.String({ description: "30s, 20m, 1h, 7d, 2w or 1mo" });
const Open = { additionalProperties: true } as const;

export const LitellmParams = T.Object({
  model: T.String({ minLength: 1 }),
  api_key: T.Optional(T.String()),
  api_base: T.Optional(T.String()),
  api_version: T.Optional(T.String()),
  organization: T.Optional(T.String()),
  mock_response: T.Optional(T.Union([T.String(), T.Record(T.String(), T.Unknown())])),
  mock_delay_ms: T.Optional(Count),
  input_cost_per_token: T.Optional(Money),
  output_cost_per_token: T.Optional(Money),
  cache_read_input_token_cost: T.Optional(Money),
  cache_creation_input_token_cost: T.Optional(Money),
  rpm: T.Optional(Count),
  tpm: T.Optional(Count),
  weight: T.Optional(T.Number({ exclusiveMinimum: 0 })),
  timeout: T.Optional(Timeout),
  stream_timeout: T.Optional(Timeout),
  max_retries: T.Optional(Count),
  /** Requests in flight at this deployment (per instance); more wait their turn. */
  max_parallel_requests: T.Optional(T.Integer({ minimum: 1 })),
}, Open);

export const ModelInfo = T.Object({
  id: T.Optional(T.String({ minLength: 1 })),
  access_groups: T.Optional(T.Array(T.String())),
  /** Any of LiteLLM's modes is taken; those litegate has no route for are warned about at load. */
  mode: T.Optional(T.String()),
  input_cost_per_token: T.Optional(Money),
  output_cost_per_token: T.Optional(Money),
  cache_read_input_token_cost: T.Optional(Money),
  cache_creation_input_token_cost: T.Optional(Money),
  base_model: T.Optional(T.String()),
  /** The model `/health` calls for a wildcard entry (`openai/gpt-4o-mini` for `openai/*`), as LiteLLM reads it. */
  health_check_model: T.Optional(T.String({ minLength: 1 })),
  /** How long `/health` waits for this deployment's check, in seconds, as LiteLLM reads it (30 s by default). */
  health_check_timeout: T.Optional(Timeout),
  max_tokens: T.Optional(Count),
  max_input_tokens: T.Optional(Count),
  max_output_tokens: T.Optional(Count),
}, Open);

export const ModelEntry = T.Object({
  model_name: T.String({ minLength: 1 }),
  litellm_params: LitellmParams,
  model_info: T.Optional(ModelInfo),
}, Open);

/** A request header's name: anything else would make every request's header lookup throw. */
const HeaderName = T.String({
  pattern: "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$",
  problem: "must be a header name (letters, digits and !#$%&'*+.^_`|~-, no spaces or colon)",
});

/** One entry of `user_header_mappings`: a request header and the role of the id it carries. */
const HeaderMapping = T.Object({ header_name: HeaderName, litellm_user_role: T.String({ minLength: 1 }) }, Open);

export const GeneralSettings = T.Object({
  master_key: T.Optional(T.String()),
  /** The only header the caller's key is read from when set (LiteLLM's setting); a reload may change it. */
  litellm_key_header_name: T.Optional(HeaderName),
  database_url: T.Optional(T.String()),
  /** Not empty: "" would be no directory at all (the embedded database then fails to open, naming no setting). */
  data_dir: T.String({ default: DEFAULT_DATA_DIR, minLength: 1 }),
  redis_url: T.Optional(T.String()),
  proxy_budget_rescheduler_min_time: T.Number({ minimum: 0, default: 597 }),
  proxy_budget_rescheduler_max_time: T.Number({ minimum: 0, default: 605 }),
  reject_unpriced_models: T.Boolean({ default: false }),
  max_request_size_mb: T.Number({ exclusiveMinimum: 0, default: 32 }),
  default_completion_tokens: T.Integer({ minimum: 0, default: 1024 }),
  admin_api: T.Union([T.Literal("enabled"), T.Literal("disabled")], { default: "enabled" }),
  admin_port: T.Optional(T.Integer({ minimum: 0, maximum: 65535 })),
  metrics_public: T.Boolean({ default: false }),
  /** How many keys (and teams, users, customers) /metrics gives budget and limit gauges for: those nearest an edge. */
  metrics_budget_gauges_limit: T.Integer({ minimum: 0, default: 1000 }),
  log_level: T.Union([T.Literal("debug"), T.Literal("info"), T.Literal("warn"), T.Literal("error")], { default: "info" }),
  log_format: T.Union([T.Literal("text"), T.Literal("json")], { default: "text" }),
  shutdown_grace_seconds: T.Number({ minimum: 0, default: 30 }),
  key_cache_size: T.Integer({ minimum: 1, default: 100_000 }),
  key_cache_ttl_seconds: T.Number({ minimum: 0, default: 60 }),
  /** No default here: LiteLLM's other names for it apply when this one is not written (600 s when none is). */
  request_timeout: T.Optional(Timeout),
  database_connection_pool_limit: T.Integer({ minimum: 1, default: 10 }),
  allow_requests_on_db_unavailable: T.Boolean({ default: true }),
  /** Every inference request must name its customer (`user`, or the header below): LiteLLM's setting. */
  enforce_user_param: T.Boolean({ default: false }),
  /** A request header naming the customer, read before the `user` field (as LiteLLM reads it). */
  user_header_name: T.Optional(HeaderName),
  /**
   * LiteLLM's newer form of it: headers naming a caller's identity by role; those with role `customer`
   * name the customer, in their order, and `user_header_name` is then not read.
   */
  user_header_mappings: T.Optional(T.Union([HeaderMapping, T.Array(HeaderMapping)], {
    problem: "must be {header_name, litellm_user_role} or a list of them, each header_name a header name (letters, digits and !#$%&'*+.^_`|~-, no spaces or colon)",
  })),
  /** Requests in flight through the whole gateway (every instance sharing Redis), whoever sends them: LiteLLM's setting. */
  global_max_parallel_requests: T.Optional(Count),
}, Open);

const Fallbacks = T.Array(T.Record(T.String(), T.Array(T.String())));
/** LiteLLM's fallbacks for every model without its own: `fallbacks: [{"*": […]}]` written another way. */
const DefaultFallbacks = T.Array(T.String({ minLength: 1 }));

/** Caps on what /key/generate, /key/update and /key/regenerate may set, as LiteLLM's `upperbound_key_generate_params`. */
export const KeyUpperBounds = T.Object({
  max_budget: T.Optional(Money),
  budget_duration: T.Optional(Duration),
  duration: T.Optional(Duration),
  max_parallel_requests: T.Optional(Count),
  tpm_limit: T.Optional(Count),
  rpm_limit: T.Optional(Count),
}, Open);

/** What /key/generate takes for fields the request left out, as LiteLLM's `default_key_generate_params`. */
export const KeyDefaults = T.Object({
  ...KeyUpperBounds.properties,
  soft_budget: T.Optional(Money),
  models: T.Optional(T.Array(T.String())),
  metadata: T.Optional(T.Record(T.String(), T.Unknown())),
  user_id: T.Optional(T.String()),
  team_id: T.Optional(T.String()),
}, Open);

export const LitellmSettings = T.Object({
  max_budget: T.Optional(Money),
  budget_duration: T.Optional(Duration),
  max_end_user_budget: T.Optional(Money),
  /** A /budget/new budget that customers without a budget of their own are held to. */
  max_end_user_budget_id: T.Optional(T.String({ minLength: 1 })),
  max_internal_user_budget: T.Optional(Money),
  internal_user_budget_duration: T.Optional(Duration),
  num_retries: T.Optional(Count),
  request_timeout: T.Optional(Timeout),
  fallbacks: T.Optional(Fallbacks),
  default_fallbacks: T.Optional(DefaultFallbacks),
  context_window_fallbacks: T.Optional(Fallbacks),
  cache: T.Optional(T.Boolean()),
  cache_params: T.Optional(T.Object({
    type: T.Optional(T.String()), host: T.Optional(T.String()), port: T.Optional(T.Union([T.Integer(), T.String()])), password: T.Optional(T.String()),
  }, Open)),
  upperbound_key_generate_params: T.Optional(KeyUpperBounds),
  default_key_generate_params: T.Optional(KeyDefaults),
  drop_params: T.Optional(T.Boolean()),
  set_verbose: T.Optional(T.Boolean()),
}, Open);

export const RouterSettings = T.Object({
  redis_host: T.Optional(T.String()),
  redis_port: T.Optional(T.Union([T.Integer({ minimum: 1, maximum: 65535 }), T.String()])),
  redis_password: T.Optional(T.String()),
  redis_url: T.Optional(T.String()),
  /** Put before every Redis key and channel, so deployments sharing one Redis database count apart. */
  redis_namespace: T.Optional(T.String({ minLength: 1, maxLength: 200 })),
  num_retries: T.Optional(Count),
  retry_after: T.Optional(Seconds),
  allowed_fails: T.Optional(Count),
  cooldown_time: T.Number({ minimum: 0, default: 60 }),
  routing_strategy: T.Optional(T.String()),
  fallbacks: T.Optional(Fallbacks),
  default_fallbacks: T.Optional(DefaultFallbacks),
  context_window_fallbacks: T.Optional(Fallbacks),
  timeout: T.Optional(Timeout),
  /** `max_parallel_requests` for every deployment that sets none. */
  default_max_parallel_requests: T.Optional(T.Integer({ minimum: 1 })),
  /** A name clients may ask for, served by another model group: `{"gpt-4": "gpt-4o"}` or `{"gpt-4": {model: "gpt-4o", hidden: true}}`. */
  model_group_alias: T.Optional(T.Record(T.String({ minLength: 1 }), T.Union([
    T.String({ minLength: 1 }), T.Object({ model: T.String({ minLength: 1 }), hidden: T.Optional(T.Boolean()) }, Open),
  ]))),
}, Open);

export const ConfigSchema = T.Object({
  model_list: T.Array(ModelEntry, { default: [] }),
  general_settings: GeneralSettings,
  litellm_settings: LitellmSettings,
  router_settings: RouterSettings,
  environment_variables: T.Record(T.String(), T.String(), { default: {} }),
}, { additionalProperties: false });

/** The modes whose routes litegate serves (`/chat/completions`, `/completions`, `/embeddings`). */
export const SERVED_MODES = ["chat", "completion", "embedding"];

export type Config = Static<typeof ConfigSchema>;
export type ModelEntry = Static<typeof ModelEntry>;
export type GeneralSettings = Static<typeof GeneralSettings>;
export type LitellmSettings = Static<typeof LitellmSettings>;
export type RouterSettings = Static<typeof RouterSettings>;
export type KeyUpperBounds = Static<typeof KeyUpperBounds>;
export type KeyDefaults = Static<typeof KeyDefaults>;

/** The provider a `litellm_params.model` names (`azure/gpt-4o` → `azure`); `openai` when it names none. */
export function providerOf(model: string): string {
  const slash = model.indexOf("/");
  return slash > 0 ? model.slice(0, slash) : "openai";
}

/** Keys each section knows; anything else is warned about and ignored. */
export const KNOWN_KEYS = {
  model_entry: Object.keys(ModelEntry.properties),
  litellm_params: Object.keys(LitellmParams.properties),
  model_info: Object.keys(ModelInfo.properties),
  general_settings: Object.keys(GeneralSettings.properties),
  litellm_settings: Object.keys(LitellmSettings.properties),
  router_settings: Object.keys(RouterSettings.properties),
  upperbound_key_generate_params: Object.keys(KeyUpperBounds.properties),
  default_key_generate_params: Object.keys(KeyDefaults.properties),
};
