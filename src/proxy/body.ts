import { GatewayError, badRequest, tooLarge } from "../http/errors";
import { UNSTORABLE_MESSAGE, parseJsonBody, unstorable } from "../http/lenient-json";
import { chatRequestOf } from "../providers/messages";
import type { Route } from "../providers/types";
import { countPromptTokens } from "../tokens";

const utf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * The body as text, refused when larger than the limit or not valid UTF-8. A declared length over the
 * limit is refused before anything is read; a body without one (chunked) is read only up to the limit.
 */
export async function readBodyText(request: Request, maxBytes: number, limitMb: number): Promise<string> {
  const declared = request.headers.get("content-length");
  if (declared !== null && Number(declared) > maxBytes) throw tooLarge(limitMb);
  let bytes: Uint8Array;
  try {
    bytes = declared !== null ? new Uint8Array(await request.arrayBuffer()) : await readUpTo(request, maxBytes, limitMb);
  } catch (error) {
    if (error instanceof GatewayError) throw error;
    throw badRequest("Request body could not be read in full (the connection ended early, or it was shorter than its Content-Length)");
  }
  if (bytes.byteLength > maxBytes) throw tooLarge(limitMb);
  try {
    return utf8.decode(bytes);
  } catch {
    throw badRequest("Request body is not valid UTF-8");
  }
}

async function readUpTo(request: Request, maxBytes: number, limitMb: number): Promise<Uint8Array> {
  if (!request.body) return new Uint8Array(0);
  const reader = request.body.getReader();
  const parts: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return parts.length === 1 ? parts[0]! : Buffer.concat(parts, size);
    size += value.byteLength;
    if (size > maxBytes) {
      await reader.cancel().catch(() => {});
      throw tooLarge(limitMb);
    }
    parts.push(value);
  }
}

export interface InferenceBody {
  body: Record<string, unknown>;
  /** The body to forward: the client's text when it was strict JSON, else the body re-serialised. */
  raw: string;
  model: string;
  stream: boolean;
  /** The customer (`user` field), if any. */
  user: string | null;
  maxTokens: number | null;
  /** Completions the request asks for (`n`, `best_of`, a list of prompts): its reservation is that many times max_tokens. */
  choices: number;
  /** LiteLLM's router parameters the body carried, or null (most bodies). */
  routing: ClientRouting | null;
}

/** LiteLLM's per-request router parameters: `fallbacks` (model names) and `num_retries`, in place of config.yaml's. */
export interface ClientRouting {
  fallbacks?: string[];
  retries?: number;
}

/** The most retries or fallbacks one request may ask for: each is a provider call. */
const MOST_CLIENT_TRIES = 10;

/**
 * LiteLLM's router parameters, taken out of the body: they are the gateway's to follow (as LiteLLM's
 * proxy does), and a provider refuses a parameter it does not know. Null when the body has none.
 */
function routingOf(body: Record<string, unknown>): ClientRouting | null {
  const { fallbacks, num_retries: retries } = body;
  if (fallbacks === undefined && retries === undefined) return null;
  delete body.fallbacks;
  delete body.num_retries;
  const routing: ClientRouting = {};
  if (fallbacks !== null && fallbacks !== undefined) {
    if (!Array.isArray(fallbacks) || fallbacks.length > MOST_CLIENT_TRIES) throw badRequest(`fallbacks: must be a list of at most ${MOST_CLIENT_TRIES} model names`, "fallbacks");
    const bad = fallbacks.findIndex((name) => typeof name !== "string" || name === "" || name.length > 512);
    if (bad >= 0) throw badRequest(`fallbacks[${bad}]: must be a model name`, "fallbacks");
    routing.fallbacks = fallbacks as string[];
  }
  if (retries !== null && retries !== undefined) {
    if (typeof retries !== "number" || !Number.isInteger(retries) || retries < 0 || retries > MOST_CLIENT_TRIES) {
      throw badRequest(`num_retries: must be an integer from 0 to ${MOST_CLIENT_TRIES}`, "num_retries");
    }
    routing.retries = retries;
  }
  return routing;
}

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value);

function optionalCount(body: Record<string, unknown>, field: string): number | null {
  const value = body[field];
  if (value === undefined || value === null) return null;
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0) {
    throw badRequest(`${field}: must be a non-negative integer`, field);
  }
  return value;
}

/** The most completions one request may ask for (`n`), as OpenAI bounds it: each is reserved on the budgets. */
const MAX_CHOICES = 128;
/** The most completions of a list of prompts (each prompt × `n`), as OpenAI bounds a list of inputs. */
const MAX_COMPLETIONS = 2048;

function atMost(body: Record<string, unknown>, field: string, most: number): number | null {
  const value = optionalCount(body, field);
  if (value !== null && value > most) throw badRequest(`${field}: must be at most ${most} (got ${value})`, field);
  return value;
}

/** A JSON object naming a model: what every body litegate routes by model must be. */
function parseModelBody(text: string) {
  if (text.trim() === "") throw badRequest("Request body is empty: send a JSON object");
  const parsed = parseJsonBody(text);
  if (!parsed.ok) throw badRequest(parsed.message);
  const body = parsed.value;
  if (!isObject(body)) throw badRequest("Request body must be a JSON object");
  const model = body.model;
  if (typeof model !== "string" || model === "") {
    throw badRequest(model === undefined || model === null ? "model: required, a model name" : `model: must be a model name (got ${JSON.stringify(model).slice(0, 100)})`, "model");
  }
  // The name is stored with the spend (a wildcard entry serves names as sent): text Postgres refuses would cost the whole batch.
  if (model.length > 512 || unstorable(model) || /[\u0000-\u001f\u007f]/.test(model)) {
    throw badRequest("model: must be a model name of at most 512 characters, valid Unicode without control characters", "model");
  }
  return { parsed, body, model };
}

/** Parses and checks what the gateway itself relies on; every other field (but LiteLLM's router parameters) goes to the provider untouched. */
export function parseInferenceBody(text: string, route: Route): InferenceBody {
  const { parsed, body, model } = parseModelBody(text);
  if (route === "chat") {
    if (!Array.isArray(body.messages) || body.messages.length === 0) {
      throw badRequest("messages: required, a non-empty array of messages", "messages");
    }
    for (let i = 0; i < body.messages.length; i++) {
      if (!isObject(body.messages[i])) throw badRequest(`messages[${i}]: must be an object`, `messages[${i}]`);
    }
  } else if (route === "messages") {
    checkMessagesBody(body);
  } else if (route === "completions") {
    if (body.prompt === undefined || body.prompt === null) throw badRequest("prompt: required", "prompt");
  } else if (!(typeof body.input === "string" || Array.isArray(body.input)) || body.input.length === 0) {
    // As OpenAI answers: an empty list or an object has nothing to embed.
    throw badRequest(body.input === undefined || body.input === null || body.input === "" ? "input: required" : "input: must be a non-empty string or a non-empty array of strings or token ids", "input");
  }
  if (body.stream !== undefined && body.stream !== null && typeof body.stream !== "boolean") {
    throw badRequest("stream: must be a boolean", "stream");
  }
  const user = body.user;
  if (user !== undefined && user !== null && typeof user !== "string") throw badRequest("user: must be a string", "user");
  if (typeof user === "string") checkCustomerId(user, "user");
  // Both sent: providers differ in which they obey (vLLM takes max_completion_tokens first), so the larger is reserved.
  const maxTokens = route === "messages" ? optionalCount(body, "max_tokens") : largerOf(optionalCount(body, "max_tokens"), optionalCount(body, "max_completion_tokens"));
  const routing = routingOf(body);
  const raw = parsed.strict === false || routing ? JSON.stringify(body) : text;
  return { body, raw, model, stream: body.stream === true && route !== "embeddings", user: user || null, maxTokens, choices: choicesOf(body, route), routing };
}

const largerOf = (a: number | null, b: number | null): number | null => (a === null ? b : b === null ? a : Math.max(a, b));

/** How many completions a request generates (and is billed for): `n`, or `best_of` when larger, for each prompt of a list. */
function choicesOf(body: Record<string, unknown>, route: Route): number {
  if (route === "embeddings" || route === "messages") return 1;
  const n = Math.max(1, atMost(body, "n", MAX_CHOICES) ?? 1, route === "completions" ? (atMost(body, "best_of", MAX_CHOICES) ?? 1) : 1);
  const prompts = route === "completions" && Array.isArray(body.prompt) && body.prompt.length > 0 && typeof body.prompt[0] !== "number" ? body.prompt.length : 1;
  if (n * prompts > MAX_COMPLETIONS) {
    throw badRequest(`prompt: at most ${MAX_COMPLETIONS} completions per request (${prompts} prompts × ${n})`, "prompt");
  }
  return n * prompts;
}

/**
 * What Anthropic's Messages API requires, checked before anything is reserved: `max_tokens` (the
 * reservation's size), and `messages`, `system` and `tools` in a shape the answer can be made from.
 */
function checkMessagesBody(body: Record<string, unknown>, answered = true): void {
  if (answered && (body.max_tokens === undefined || body.max_tokens === null)) throw badRequest("max_tokens: required, a positive integer", "max_tokens");
  if (answered && (typeof body.max_tokens !== "number" || !Number.isInteger(body.max_tokens) || body.max_tokens < 1)) {
    throw badRequest("max_tokens: must be a positive integer", "max_tokens");
  }
  if (!Array.isArray(body.messages) || body.messages.length === 0) throw badRequest("messages: required, a non-empty array of messages", "messages");
  for (let i = 0; i < body.messages.length; i++) {
    const m = body.messages[i];
    if (!isObject(m)) throw badRequest(`messages[${i}]: must be an object`, `messages[${i}]`);
    if (m.role !== "user" && m.role !== "assistant") throw badRequest(`messages[${i}].role: must be "user" or "assistant"`, `messages[${i}].role`);
    if (typeof m.content !== "string" && !(Array.isArray(m.content) && m.content.every(isObject))) {
      throw badRequest(`messages[${i}].content: must be a string or an array of content blocks`, `messages[${i}].content`);
    }
  }
  const system = body.system;
  if (system !== undefined && system !== null && typeof system !== "string" && !(Array.isArray(system) && system.every(isObject))) {
    throw badRequest("system: must be a string or an array of text blocks", "system");
  }
  // The tools are counted into the prompt (and translated for OpenAI-compatible deployments): each must be a tool definition.
  const tools = body.tools;
  if (tools !== undefined && tools !== null) {
    if (!Array.isArray(tools)) throw badRequest("tools: must be an array of tool definitions", "tools");
    const bad = tools.findIndex((tool) => !isObject(tool));
    if (bad >= 0) throw badRequest(`tools[${bad}]: must be an object (a tool definition)`, `tools[${bad}]`);
  }
}

/** A `/v1/messages/count_tokens` body: a Messages request without `max_tokens`, nothing to answer but its prompt's size. */
export function parseCountTokensBody(text: string): { body: Record<string, unknown>; model: string } {
  const { body, model } = parseModelBody(text);
  checkMessagesBody(body, false);
  return { body, model };
}

/** A customer id as sent (the `user` field, or the header `user_header_name` names), or a 400 naming where it came from. */
export function checkCustomerId(id: string, where: string): void {
  if (id.length > 256) throw badRequest(`${where}: at most 256 characters`, "user");
  // The customer id is stored with the spend: text Postgres refuses would make the whole batch unwritable.
  if (unstorable(id)) throw badRequest(`${where}: ${UNSTORABLE_MESSAGE}`, "user");
  // As the admin API refuses them in ids: a customer made here must be one an admin can name.
  if (/[\u0000-\u001f\u007f]/.test(id)) throw badRequest(`${where}: must not hold a control character`, "user");
}

/** Whether the client asked for the usage chunk at the end of a stream (litegate asks for it either way). */
export function clientWantsUsage(body: Record<string, unknown>): boolean {
  const options = body.stream_options as { include_usage?: unknown } | null | undefined;
  return typeof options === "object" && options !== null && options.include_usage === true;
}

/** The choices a stream answers with: `n` (best_of cannot stream), for each prompt of a completions list. */
export function streamedChoices(route: Route, body: Record<string, unknown>): number {
  const n = typeof body.n === "number" && Number.isInteger(body.n) && body.n > 1 ? body.n : 1;
  const prompt = body.prompt;
  const prompts = route === "completions" && Array.isArray(prompt) && prompt.length > 0 && typeof prompt[0] !== "number" ? prompt.length : 1;
  return n * prompts;
}

/**
 * Prompt tokens of a request body (see `countPromptTokens`); a Messages request counts as the chat
 * request it amounts to (its system prompt, turns, images, tool uses and results, tool definitions).
 */
export function promptTokensOf(route: Route, body: Record<string, unknown>, exact: boolean): number {
  return route === "messages" ? countPromptTokens("chat", chatRequestOf(body), exact) : countPromptTokens(route, body, exact);
}
