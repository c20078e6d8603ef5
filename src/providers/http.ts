import type { Route, Usage, UpstreamResult } from "./types";

export const PATHS: Record<Route, string> = { chat: "/chat/completions", completions: "/completions", embeddings: "/embeddings" };

/** Seconds from a `retry-after` header (seconds or an HTTP date). */
export function retryAfterOf(headers: Headers): number | undefined {
  const value = headers.get("retry-after");
  if (!value) return undefined;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return Math.max(0, seconds);
  const date = Date.parse(value);
  return Number.isFinite(date) ? Math.max(0, Math.ceil((date - Date.now()) / 1000)) : undefined;
}

export function usageFrom(value: unknown): Usage | null {
  const u = (value as { usage?: Record<string, any> } | null)?.usage;
  if (!u || typeof u.prompt_tokens !== "number") return null;
  const completion = typeof u.completion_tokens === "number" ? u.completion_tokens : 0;
  return {
    prompt_tokens: u.prompt_tokens,
    completion_tokens: completion,
    total_tokens: typeof u.total_tokens === "number" ? u.total_tokens : u.prompt_tokens + completion,
    cached_tokens: u.prompt_tokens_details?.cached_tokens ?? undefined,
  };
}

/** An error answer from the provider, its message kept and trimmed. */
export async function errorFrom(response: Response): Promise<UpstreamResult> {
  const text = await response.text().catch(() => "");
  let message = text.trim() || `Provider answered ${response.status}`;
  let type: string | undefined;
  try {
    const parsed = JSON.parse(text);
    const error = parsed?.error;
    if (typeof error === "string") message = error;
    else if (error && typeof error.message === "string") {
      message = error.message;
      type = typeof error.type === "string" ? error.type : undefined;
    } else if (typeof parsed?.message === "string") message = parsed.message;
  } catch {
    // not JSON: keep the text
  }
  return { kind: "error", status: response.status, message: message.slice(0, 1000), type, retryAfter: retryAfterOf(response.headers) };
}

/** Connection failures and timeouts, without anything from the request (no keys). */
export function failureFrom(error: unknown, timedOut: boolean, target: string): UpstreamResult {
  if (timedOut) return { kind: "error", status: 504, type: "timeout", message: `Upstream ${target} did not answer in time` };
  const reason = error instanceof Error ? (error as { code?: string }).code ?? error.name : "error";
  return { kind: "error", status: 502, connectionError: true, type: "upstream_connection_error", message: `Upstream connection failed: ${target} (${reason})` };
}

/** The gateway aborts a request that outlived request_timeout with a TimeoutError reason. */
const timedOutBy = (signal: AbortSignal) => signal.aborted && (signal.reason as { name?: string } | undefined)?.name === "TimeoutError";

/** A signal that fires on the client's abort or after `seconds`, and tells whether time ran out. */
export function deadline(signal: AbortSignal, seconds: unknown): { signal: AbortSignal; timedOut: () => boolean } {
  const s = Number(seconds);
  if (!Number.isFinite(s) || s <= 0) return { signal, timedOut: () => timedOutBy(signal) };
  const timeout = AbortSignal.timeout(s * 1000);
  return { signal: AbortSignal.any([signal, timeout]), timedOut: () => (timeout.aborted && !signal.aborted) || timedOutBy(signal) };
}
