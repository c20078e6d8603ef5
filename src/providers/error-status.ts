/**
 * The HTTP status of a provider error that carries none of its own: an error a provider sends in a 2xx
 * answer or in a stream (where the status is already 200) names its kind by `code` (OpenAI:
 * `"rate_limit_exceeded"`, `"context_length_exceeded"`, …) or `type` (Anthropic: `"overloaded_error"`,
 * …). Each is the status the provider answers the same error with as a plain HTTP error, so clients,
 * retries and fallbacks treat it alike: a rate limit is a 429 to wait on, a prompt too long a 400 that no
 * other deployment of the same model will take either.
 */
const STATUS_OF: Record<string, number> = {
  // OpenAI's `code`s.
  rate_limit_exceeded: 429,
  insufficient_quota: 429,
  context_length_exceeded: 400,
  string_above_max_length: 400,
  invalid_prompt: 400,
  content_policy_violation: 400,
  content_filter: 400,
  invalid_api_key: 401,
  unsupported_country_region_territory: 403,
  model_not_found: 404,
  // OpenAI's `type`s, and Anthropic's (which it answers with these statuses).
  invalid_request_error: 400,
  authentication_error: 401,
  permission_error: 403,
  not_found_error: 404,
  request_too_large: 413,
  rate_limit_error: 429,
  overloaded_error: 529,
};

/** An error's own `code` when it is an HTTP error status (`503`, `"429"`), else undefined. */
function statusOfCode(code: unknown): number | undefined {
  const status = typeof code === "number" ? code : typeof code === "string" && /^\d{3}$/.test(code) ? Number(code) : NaN;
  return Number.isInteger(status) && status >= 400 && status <= 599 ? status : undefined;
}

/**
 * The status of an error object (`{message, type, code}`): its `code` when that is an HTTP error status,
 * else what its `code`, then its `type`, names; undefined when neither is known.
 */
export function errorStatus(error: unknown): number | undefined {
  if (!error || typeof error !== "object") return undefined;
  const { code, type } = error as { code?: unknown; type?: unknown };
  return statusOfCode(code)
    ?? (typeof code === "string" && Object.hasOwn(STATUS_OF, code) ? STATUS_OF[code] : undefined)
    ?? (typeof type === "string" && Object.hasOwn(STATUS_OF, type) ? STATUS_OF[type] : undefined);
}
