/** Client-side codes the Postgres client gives when it cannot reach or lost the server. */
const CLIENT_CODES = new Set([
  "ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "EPIPE", "ENOTFOUND", "EHOSTUNREACH", "ENETUNREACH", "EAI_AGAIN",
  "CONNECTION_CLOSED", "CONNECTION_ENDED", "CONNECTION_DESTROYED", "CONNECT_TIMEOUT",
]);

/**
 * Whether an error means the database cannot be reached right now (rather than that the request is
 * wrong): the client's connection codes, SQLSTATE class 08 (connection exception) and the server
 * shutting down or starting (57P01–57P03). Such a request is answered 503, to be retried.
 */
export function isDatabaseUnavailable(error: unknown): boolean {
  const code = String((error as { code?: unknown } | null)?.code ?? "");
  return CLIENT_CODES.has(code) || code.startsWith("08") || code === "57P01" || code === "57P02" || code === "57P03";
}
