import { errorStatus } from "../error-status";
import { type Answer, type ErrorResult, type Target, baseUrl, errorFrom, errorFromText, invalidJson, isError, isJson, makeTarget, paramOrEnv, post, usageFrom, usageOf } from "../http";
import type { Deployment, Provider, UpstreamCall, UpstreamResult } from "../types";
import { jsonSchemaOf, malformedForAnthropic, toAnthropic } from "./request";
import { fromAnthropic, openAiUsage } from "./response";
import { streamOfMessage, translateStreamWithUsage } from "./stream";
import { streamOfAnswer } from "../openai";
import type { StreamStart } from "../stream-start";

export { toAnthropic } from "./request";
export { fromAnthropic } from "./response";
export { translateStream } from "./stream";

const API_VERSION = "2023-06-01";

/**
 * A stream's first bytes with its message_start (the one event that names a model) naming `model`;
 * anything else as read. `head` holds the first event whole (see readFirstEvent).
 */
function namedHead(head: Uint8Array, model: string): Uint8Array {
  const bytes = Buffer.from(head.buffer, head.byteOffset, head.byteLength);
  const ends = [bytes.indexOf("\n\n"), bytes.indexOf("\r\n\r\n")].filter((i) => i >= 0);
  if (ends.length === 0) return head;
  const end = Math.min(...ends);
  const first = bytes.subarray(0, end).toString("utf8");
  const line = /^data: ?(.*)$/m.exec(first);
  if (!line) return head;
  let event: Record<string, any>;
  try {
    event = JSON.parse(line[1]!);
  } catch {
    return head;
  }
  if (event?.type !== "message_start" || typeof event.message !== "object" || event.message === null) return head;
  event.message.model = model;
  const named = `${first.slice(0, line.index)}data: ${JSON.stringify(event)}${first.slice(line.index + line[0].length)}`;
  return Buffer.concat([Buffer.from(named), bytes.subarray(end)]);
}

/**
 * A JSON answer's text and message (`whole`: its text, already read). An error Anthropic answers with
 * a 2xx is one: its error's type names the status Anthropic answers it with otherwise (see error-status.ts).
 */
async function messageOf(answer: Answer, target: Target, whole?: string): Promise<{ text: string; message: Record<string, any> } | ErrorResult> {
  const text = whole === undefined ? await answer.text() : whole;
  if (isError(text)) return text;
  let message: Record<string, any>;
  try {
    message = JSON.parse(text);
  } catch {
    return invalidJson(answer.host);
  }
  if (message?.type === "error") return errorFromText(errorStatus(message.error) ?? 502, text, answer.response.headers, target.secret);
  return { text, message };
}

/**
 * Posts a request to Anthropic: an error (the post failed, a non-2xx status, a stream opened with an
 * error), a stream read to its first event, or a JSON answer (still to read, or read whole as a stream
 * that held none: a stream request's answer is read as one unless its content type says JSON).
 */
async function opened(call: UpstreamCall, target: Target, body: string): Promise<ErrorResult | { start: StreamStart } | { answer: Answer; whole?: string }> {
  const answer = await post(call, target, body);
  if (isError(answer)) return answer;
  if (!answer.response.ok) return errorFrom(answer, target.secret);
  if (!(call.stream && answer.response.body && !isJson(answer.response))) return { answer };
  const start = await answer.start();
  return isError(start) ? start : "whole" in start ? { answer, whole: start.whole } : { start };
}

/**
 * A Messages request (`/v1/messages`) goes as the client sent it, only the model renamed (and litegate's
 * own `litellm_metadata` left out); the answer comes back as Anthropic's bytes, a stream event by event,
 * named after the model the client asked for (as LiteLLM names it, and as every other answer is named).
 */
async function forward(call: UpstreamCall, target: Target): Promise<UpstreamResult> {
  const { litellm_metadata: _ours, ...body } = call.body;
  const to = call.betas ? { ...target, headers: { ...target.headers, "anthropic-beta": call.betas } } : target;
  const open = await opened(call, to, JSON.stringify({ ...body, model: call.deployment.upstreamModel }));
  if (isError(open)) return open;
  if ("start" in open) {
    return { kind: "stream", status: 200, stream: open.start.rest, head: namedHead(open.start.head, String(call.body.model)), secret: target.secret };
  }
  const read = await messageOf(open.answer, target, open.whole);
  if (isError(read)) return read;
  const { text, message } = read;
  const usage = message?.usage ? usageOf(openAiUsage(message.usage)) : null;
  const named = typeof message?.model === "string" && message.model !== call.body.model;
  // A deployment that answered the stream request whole: the client still gets a stream.
  if (call.stream) return { kind: "stream", status: 200, stream: streamOfMessage({ ...message, model: call.body.model }), secret: target.secret };
  return { kind: "json", status: 200, body: named ? JSON.stringify({ ...message, model: call.body.model }) : text, usage };
}

async function send(call: UpstreamCall, target: Target): Promise<UpstreamResult> {
  if (call.route === "messages") return forward(call, target);
  if (call.route !== "chat") {
    return { kind: "error", status: 400, type: "invalid_request_error", message: `/${call.route} is not supported by provider anthropic: use /chat/completions` };
  }
  // Anthropic answers one choice: more are refused, as LiteLLM refuses parameters a provider lacks.
  if (typeof call.body.n === "number" && call.body.n > 1) {
    return { kind: "error", status: 400, type: "invalid_request_error", param: "n", message: `n=${call.body.n}: provider anthropic answers one choice per request` };
  }
  const malformed = malformedForAnthropic(call.body);
  if (malformed) return { kind: "error", status: 400, type: "invalid_request_error", param: malformed.param, message: malformed.message };
  // Clients get their answer under the model name they asked for, as with every other provider.
  const model = String(call.body.model);
  const jsonAnswer = jsonSchemaOf(call.body.response_format) !== undefined;
  const open = await opened(call, target, JSON.stringify(toAnthropic(call.body, call.deployment.upstreamModel)));
  if (isError(open)) return open;
  if ("start" in open) {
    const { stream, usageSoFar } = translateStreamWithUsage(open.start.rest, model, jsonAnswer, call.onRead, open.start.head);
    return { kind: "stream", status: 200, stream, usageSoFar, secret: target.secret };
  }
  const read = await messageOf(open.answer, target, open.whole);
  if (isError(read)) return read;
  const translated = fromAnthropic(read.message, model, undefined, jsonAnswer);
  if (call.stream) return { kind: "stream", status: 200, stream: streamOfAnswer("chat", translated), secret: target.secret };
  return { kind: "json", status: 200, body: JSON.stringify(translated), usage: usageFrom(translated) };
}

/** Anthropic's count of a Messages request's input tokens (`/v1/messages/count_tokens`), the model renamed. */
async function countTokens(call: UpstreamCall, target: Target): Promise<number | ErrorResult> {
  const { litellm_metadata: _ours, ...body } = call.body;
  const to = call.betas ? { ...target, headers: { ...target.headers, "anthropic-beta": call.betas } } : target;
  const answer = await post(call, to, JSON.stringify({ ...body, model: call.deployment.upstreamModel }));
  if (isError(answer)) return answer;
  if (!answer.response.ok) return errorFrom(answer, target.secret);
  const read = await messageOf(answer, target);
  if (isError(read)) return read;
  const tokens = read.message?.input_tokens;
  return Number.isSafeInteger(tokens) && tokens >= 0 ? tokens : invalidJson(answer.host);
}

/** Anthropic's Messages API, spoken to clients as OpenAI chat completions. */
export function anthropicAdapter(deployment: Deployment, env: Record<string, string | undefined>): Provider {
  const params = deployment.params;
  // Tolerate an api_base given with the version path, as some configs write it.
  const base = baseUrl(params.api_base ?? env.ANTHROPIC_API_BASE, "https://api.anthropic.com", deployment).replace(/\/v1$/, "");
  const key = paramOrEnv(params, "api_key", env, "ANTHROPIC_API_KEY");
  const headers: Record<string, string> = { "anthropic-version": API_VERSION };
  if (key) headers["x-api-key"] = key;
  const target = makeTarget(`${base}/v1/messages`, headers, key);
  const counter = makeTarget(`${base}/v1/messages/count_tokens`, headers, key);
  return { send: (call) => send(call, target), countTokens: (call) => countTokens(call, counter) };
}
