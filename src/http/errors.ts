/**
 * The one error type domain code throws, and the one place it becomes the OpenAI error envelope:
 * `{"error": {"message", "type", "param", "code"}}` with `code` the HTTP status as a string.
 */
export class GatewayError extends Error {
  constructor(
    readonly status: number,
    readonly type: string,
    message: string,
    readonly param: string | null = null,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

export const badRequest = (message: string, param: string | null = null) =>
  new GatewayError(400, "bad_request_error", message, param);

export const notFound = (message: string) => new GatewayError(404, "not_found_error", message);

export const authError = (message: string) => new GatewayError(401, "auth_error", message);

export const forbidden = (message: string) => new GatewayError(403, "permission_denied", message);

export const tooLarge = (limitMb: number) =>
  new GatewayError(413, "request_too_large", `Request body is larger than max_request_size_mb=${limitMb}`);

/**
 * A request's path as errors and logs show it: LiteLLM's `POST /key/{key}/regenerate` carries a raw
 * key, which is shown in its display form (`sk-...abcd`), as everywhere else.
 */
export function shownPath(url: string): string {
  return new URL(url).pathname.replace(/(?<=^|\/)sk-[^/]*/gi, (raw) => `sk-...${raw.slice(-4)}`);
}

export function errorBody(error: GatewayError): string {
  return JSON.stringify({
    error: { message: error.message, type: error.type, param: error.param, code: String(error.status) },
  });
}

export function errorResponse(error: GatewayError, extraHeaders?: Record<string, string>): Response {
  return new Response(errorBody(error), {
    status: error.status,
    headers: { "content-type": "application/json", ...error.headers, ...extraHeaders },
  });
}

/** Anything thrown that is not a GatewayError: the client sees a plain 500 envelope, never a stack. */
export function unexpected(): GatewayError {
  return new GatewayError(500, "internal_server_error", "Internal server error");
}
