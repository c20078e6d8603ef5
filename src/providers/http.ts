import { SSE_DONE } from "./sse";
import { errorStatus } from "./error-status";
import { type StreamStart, readFirstEvent } from "./stream-start";
import type { Deployment, Route, UpstreamCall, UpstreamResult, Usage } from "./types";

export type ErrorResult = Extract<UpstreamResult, { kind: "error" }>;

/** Where each OpenAI route is served (a Messages request reaches an OpenAI-compatible server as a chat one). */
export const PATHS: Record<Exclude<Route, "messages">, string> = { chat: "/chat/completions", completions: "/completions", embeddings: "/embeddings" };

/** Where a request goes, and the secret that must never appear in a message about it. */
export interface Target {
  url: string;
  /** The URL's host, for messages. */
  host: string;
  /** Every header a request carries, content-type included. */
  headers: Record<string, string>;
  secret?: string;
}

/** A target with what every request to it shares worked out once, when the deployment is built. */
export function makeTarget(url: string, headers: Record<string, string>, secret: string | undefined): Target {
  return { url, host: new URL(url).host, headers: { "content-type": "application/json", ...headers }, secret };
}

/** An upstream answer whose headers arrived; `text()` reads the body within the same deadline. */
export interface Answer {
  response: Response;
  host: string;
  text(): Promise<string | ErrorResult>;
  /** A 2xx stream read to its first event within the same deadline: see `startOf`. */
  start(): Promise<StreamStart | WholeAnswer | ErrorResult>;
}

/** A body read as a stream that held no event but one whole JSON document: a server that does not stream. */
export interface WholeAnswer {
  whole: string;
}

export const isError = (value: unknown): value is ErrorResult => (value as ErrorResult | null)?.kind === "error";

/** A base URL without trailing slashes; throws when it is not an http(s) URL. */
export function baseUrl(value: unknown, fallback: string, deployment: Deployment): string {
  const base = String(value ?? fallback).replace(/\/+$/, "");
  if (!/^https?:\/\/[^\s/]+/.test(base)) throw new Error(`deployment ${deployment.id}: api_base must be an http(s) URL`);
  return base;
}

/** A string `litellm_params` value, else the environment variable LiteLLM would read. */
export function paramOrEnv(params: Record<string, unknown>, name: string, env: Record<string, string | undefined>, variable: string): string | undefined {
  const value = params[name];
  if (typeof value === "string" && value !== "") return value;
  return env[variable] || undefined;
}

/** Seconds from a `retry-after` header (seconds or an HTTP date). */
export function retryAfterOf(headers: Headers): number | undefined {
  const value = headers.get("retry-after");
  if (!value) return undefined;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return Math.max(0, seconds);
  const date = Date.parse(value);
  return Number.isFinite(date) ? Math.max(0, Math.ceil((date - Date.now()) / 1000)) : undefined;
}

/** More tokens than any request can hold: a count past it is the provider's error, not a bill. */
const MAX_TOKENS = 1_000_000_000;

/** A token count as reported: a whole number from 0 to MAX_TOKENS, else null (absent or not to be trusted). */
function tokenCount(value: unknown): number | null {
  return typeof value === "number" && value >= 0 && value <= MAX_TOKENS ? Math.round(value) : null;
}

/**
 * An OpenAI-shaped `usage` object as a Usage, or null when there is none or it cannot be trusted (a
 * negative, non-finite or absurd count, or a count sent as text): the request is then counted
 * from its text, so a provider's bad numbers neither credit a key nor stop its spend being written.
 */
export function usageOf(u: any): Usage | null {
  const prompt = tokenCount(u?.prompt_tokens);
  if (prompt === null) return null;
  const completion = u.completion_tokens === undefined || u.completion_tokens === null ? 0 : tokenCount(u.completion_tokens);
  if (completion === null) return null;
  // A total above prompt + completion (bridges that leave reasoning out of completion_tokens) bills the rest as output.
  const total = Math.max(tokenCount(u.total_tokens) ?? 0, prompt + completion);
  const usage: Usage = { prompt_tokens: prompt, completion_tokens: total - prompt, total_tokens: total };
  const cached = tokenCount(u.prompt_tokens_details?.cached_tokens);
  if (cached !== null) usage.cached_tokens = Math.min(cached, prompt);
  const written = tokenCount(u.cache_creation_input_tokens);
  if (written !== null && written > 0) usage.cache_write_tokens = Math.min(written, prompt - (usage.cached_tokens ?? 0));
  return usage;
}

/** The `usage` of an OpenAI-shaped body, or null when it has none. */
export function usageFrom(value: unknown): Usage | null {
  return usageOf((value as { usage?: unknown } | null)?.usage);
}

/** Provider text with the key blanked out, in case a provider echoes it back. */
export function redact(message: string, secret: string | undefined): string {
  if (!secret || secret.length < 4) return message;
  // In any case, and the masked echo providers give of a wrong key (`sk-PROVI********cdef`), which
  // still shows its start and its end.
  const exact = new RegExp(secret.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"), "gi");
  return message.replace(exact, "[redacted]").replace(/\b[A-Za-z0-9_-]{2,}\*{4,}[A-Za-z0-9_-]*/g, "[redacted]");
}

/**
 * The provider's own words for a non-2xx answer: `error.message` of an OpenAI or Anthropic error body,
 * else the body text, trimmed.
 */
export function errorFromText(status: number, text: string, headers: Headers, secret?: string): ErrorResult {
  let message = text.trim();
  let type: string | undefined;
  let param: string | undefined;
  try {
    const parsed = JSON.parse(text);
    const error = parsed?.error;
    if (typeof error === "string") message = error;
    else if (error && typeof error.message === "string") {
      message = error.message;
      if (typeof error.type === "string") type = error.type;
      if (typeof error.param === "string" && error.param.length <= 256) param = error.param;
    } else if (typeof parsed?.message === "string") message = parsed.message;
  } catch {
    // Not JSON (a proxy's HTML page, plain text): the text itself is the message.
  }
  if (message === "") message = `Provider answered ${status}`;
  return { kind: "error", status, message: redact(message, secret).slice(0, 1000), type, param, retryAfter: retryAfterOf(headers) };
}

/**
 * The error a provider answered 2xx with (`{"error": {...}}` and no answer, as OpenRouter and some
 * OpenAI-compatible servers send a failure), or null when the body is an answer. As LiteLLM reads it,
 * an `error` that says nothing (no message, no code) is not one. An SSE event named `error` is one
 * whatever its data (`{"message": …}`, `{"type": "overloaded_error", …}`). Its status is the one its
 * `code` or `type` names (see error-status.ts), else 502: the provider failed to answer.
 */
export function errorInAnswer(parsed: unknown, text: string, headers: Headers, secret?: string, errorEvent = false): ErrorResult | null {
  const body = parsed as { error?: unknown; choices?: unknown; data?: unknown } | null;
  const error = body?.error;
  if (error === undefined || error === null || error === "" || error === false) {
    return errorEvent ? errorFromText(errorStatus(body) ?? 502, text, headers, secret) : null;
  }
  if (!errorEvent && ((Array.isArray(body!.choices) && body!.choices.length > 0) || (Array.isArray(body!.data) && body!.data.length > 0))) return null;
  const fields = typeof error === "object" ? (error as { message?: unknown; code?: unknown }) : null;
  if (!errorEvent && fields && !fields.message && (fields.code === undefined || fields.code === null)) return null;
  return errorFromText(errorStatus(fields) ?? 502, text, headers, secret);
}

const REASONS: Record<string, string> = {
  ECONNREFUSED: "connection refused",
  ECONNRESET: "connection reset",
  ENOTFOUND: "host not found",
  EAI_AGAIN: "host lookup failed",
  ETIMEDOUT: "connect timed out",
  EHOSTUNREACH: "host unreachable",
};

/** Why fetch failed, as a short code: never the request, its headers or its URL. */
function reasonOf(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === "string" && code !== "") return REASONS[code] ? `${REASONS[code]}, ${code}` : code;
  return error instanceof Error ? error.name : "unknown error";
}

/** The gateway aborts a request that outlived request_timeout with a TimeoutError reason. */
/** The longest delay a timer holds: past it the runtime fires at once (a timeout of 30 days would cut every request). */
const LONGEST_TIMER_MS = 2 ** 31 - 1;
const timedOutBy = (signal: AbortSignal) => signal.aborted && (signal.reason as { name?: string } | undefined)?.name === "TimeoutError";

/**
 * The deployment's own deadline (`timeout`, or `stream_timeout` for streams, in seconds) joined with
 * the caller's signal. A stream's deadline covers the wait for the provider's first event only, each
 * piece read restarting it (pings keep it open, as they keep a read timeout): a long generation that is
 * flowing must not be cut, and the gateway's request_timeout still bounds it.
 */
function deadlineOf(call: UpstreamCall) {
  const params = call.deployment.params;
  const seconds = Number(call.stream ? (params.stream_timeout ?? params.timeout) : params.timeout);
  // Most deployments have no timeout of their own: they get no controller and no timer.
  const own = seconds > 0 ? new AbortController() : null;
  const arm = () => (own ? setTimeout(() => own.abort(new DOMException("deployment timeout", "TimeoutError")), Math.min(seconds * 1000, LONGEST_TIMER_MS)) : undefined);
  let timer = arm();
  return {
    seconds,
    signal: own ? AbortSignal.any([call.signal, own.signal]) : call.signal,
    clear: () => clearTimeout(timer),
    restart: () => {
      if (!own) return;
      clearTimeout(timer);
      timer = arm();
    },
    timedOut: () => (own?.signal.aborted === true && !call.signal.aborted) || timedOutBy(call.signal),
  };
}

function failure(call: UpstreamCall, error: unknown, timedOut: boolean, host: string, seconds: number): ErrorResult {
  if (timedOut) {
    const limit = seconds > 0 && !timedOutBy(call.signal) ? ` within ${seconds}s` : " in time";
    return { kind: "error", status: 504, type: "timeout", abandoned: true, message: `Upstream ${host} did not answer${limit}` };
  }
  if (call.signal.aborted) return { kind: "error", status: 499, type: "cancelled", abandoned: true, message: "Request cancelled by the client" };
  return { kind: "error", status: 502, connectionError: true, type: "upstream_connection_error", message: `Upstream connection failed: ${host} (${reasonOf(error)})` };
}

/** POSTs a JSON body upstream: the answer once its headers arrive, or an error result (never a throw). */
export async function post(call: UpstreamCall, target: Target, body: string): Promise<Answer | ErrorResult> {
  const { host } = target;
  const deadline = deadlineOf(call);
  let response: Response;
  try {
    // A redirect is not followed: it would carry the provider key (and the prompt) to wherever it points.
    response = await fetch(target.url, { method: "POST", headers: target.headers, body, signal: deadline.signal, redirect: "manual" });
  } catch (error) {
    deadline.clear();
    return failure(call, error, deadline.timedOut(), host, deadline.seconds);
  }
  if (response.status >= 300 && response.status < 400) {
    deadline.clear();
    void response.body?.cancel().catch(() => {});
    return {
      kind: "error", status: 502, type: "upstream_error", connectionError: true,
      message: `Upstream ${host} answered ${response.status} (a redirect), which litegate does not follow: set api_base to the address it redirects to`,
    };
  }
  return {
    response,
    host,
    async text() {
      try {
        return await response.text();
      } catch (error) {
        return failure(call, error, deadline.timedOut(), host, deadline.seconds);
      } finally {
        deadline.clear();
      }
    },
    async start() {
      try {
        // Every piece read restarts both the deployment's deadline and, through `onRead`, the request's.
        return await startOf(response, host, target.secret, () => {
          deadline.restart();
          call.onRead?.();
        });
      } catch (error) {
        const failed = failure(call, error, deadline.timedOut(), host, deadline.seconds);
        return failed.connectionError ? brokenOff(host, `the connection broke (${reasonOf(error)})`) : failed;
      } finally {
        deadline.clear();
      }
    },
  };
}

/**
 * A stream the provider ended or broke off before its first event: the client has nothing yet, so it is
 * failed (and retried) as any other provider failure; the provider had the prompt and bills it.
 */
const brokenOff = (host: string, how: string): ErrorResult => ({
  kind: "error", status: 502, type: "upstream_error", abandoned: true, message: `Upstream ${host} started a stream and ${how} before its first event`,
});

/**
 * A 2xx stream up to its first event (see `readFirstEvent`). One the provider opens with an error event,
 * before any answer, is that error, as the same error answered as JSON is (see `errorInAnswer`), for the
 * client has been sent nothing yet: it is retried, sent to fallbacks, or answered with its status. A body
 * with no event that is one whole JSON document is given back whole, to be read as a JSON answer.
 */
async function startOf(response: Response, host: string, secret: string | undefined, onRead: () => void): Promise<StreamStart | WholeAnswer | ErrorResult> {
  const { start, data, event, ended } = await readFirstEvent(response.body!, onRead);
  if (data === undefined) return ended ? wholeOf(start.head) ?? brokenOff(host, "closed it") : start;
  const trimmed = data.trim();
  if (trimmed === "" || trimmed === SSE_DONE) return start;
  const first = firstChunkOf(data);
  // Not JSON, as a 2xx answer that is not JSON: the provider failed to answer.
  const failed = first === undefined ? invalidStream(host) : errorInAnswer(first.chunk, first.text, response.headers, secret, event === "error");
  if (!failed) return start;
  await start.rest.cancel().catch(() => {});
  return failed;
}

/** A body as a whole answer when it is one JSON document, else undefined. */
function wholeOf(body: Uint8Array): WholeAnswer | undefined {
  const whole = new TextDecoder().decode(body);
  try {
    JSON.parse(whole);
    return { whole };
  } catch {
    return undefined;
  }
}

/**
 * The first chunk of an event's data, and its text: the data as JSON, else its first line's when each
 * line is a JSON chunk of its own (as some servers write them, see `verdictOf` in the stream tap);
 * undefined when the event is not JSON.
 */
function firstChunkOf(data: string): { chunk: unknown; text: string } | undefined {
  try {
    return { chunk: JSON.parse(data), text: data };
  } catch {
    // Several lines, each a chunk, or not JSON at all.
  }
  const lines = data.split("\n").filter((line) => line.trim() !== "" && line.trim() !== SSE_DONE);
  try {
    const chunks = lines.map((line) => JSON.parse(line));
    return { chunk: chunks[0] ?? null, text: lines[0] ?? "" };
  } catch {
    return undefined;
  }
}

const invalidStream = (host: string): ErrorResult => ({
  kind: "error", status: 502, type: "upstream_error", message: `Upstream ${host} answered with a stream whose first event is not JSON`,
});

/** A non-2xx answer as an error result, its body read within the deadline. */
export async function errorFrom(answer: Answer, secret?: string): Promise<ErrorResult> {
  const text = await answer.text();
  // A body cut off mid-read still says what the status said; a timeout or a cancel says more.
  if (isError(text)) return text.connectionError ? errorFromText(answer.response.status, "", answer.response.headers) : text;
  return errorFromText(answer.response.status, text, answer.response.headers, secret);
}

export const invalidJson = (host: string): ErrorResult => ({
  kind: "error", status: 502, type: "upstream_error", message: `Upstream ${host} answered with invalid JSON`,
});

/**
 * A JSON content type (`application/json`, `+json`): a stream request's answer under any other is read as
 * a stream (some servers send SSE as text/plain, text/html or with none), as the openai SDK reads it.
 */
export const isJson = (response: Response) => /application\/json|\+json/i.test(response.headers.get("content-type") ?? "");
