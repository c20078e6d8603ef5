import { type ErrorResult, PATHS, type Target, baseUrl, errorFrom, errorInAnswer, invalidJson, isError, isJson, makeTarget, paramOrEnv, post, usageFrom } from "./http";
import { type Span, closingBrace, memberSpans } from "./json-members";
import { messagesViaChat } from "./messages";
import { SSE_DONE } from "./sse";
import type { Deployment, Provider, UpstreamCall, UpstreamResult } from "./types";

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value);

const EDITED = ["model", "stream_options"] as const;
const NONE: readonly string[] = [];

/** LiteLLM's own members of a body, left out of what the provider gets (see `upstreamBody`); none for most bodies, with nothing made. */
function droppedOf(body: Record<string, unknown>): readonly string[] {
  const metadata = body.metadata !== undefined && body.store !== true;
  if (body.litellm_metadata === undefined) return metadata ? ["metadata"] : NONE;
  return metadata ? ["litellm_metadata", "metadata"] : ["litellm_metadata"];
}

/**
 * The body to send: the client's bytes when nothing has to change; otherwise the same text with only
 * the model name swapped, for streams usage asked for in the last chunk (so a streamed answer is never
 * free), and LiteLLM's own members left out — changed in place, so that every other byte reaches the
 * provider as the client sent it. `litellm_metadata` is LiteLLM's (where it reads the customer), and so
 * is `metadata` (tags, a customer's `user_id`) unless the request stores its completion (`store: true`),
 * the one case OpenAI takes it: a provider refuses a member it does not know, and OpenAI `metadata`
 * without `store`. A body naming `model` twice is re-serialised with the one litegate checked and priced.
 */
export function upstreamBody(call: UpstreamCall, askUsage = true): string {
  const { body, rawBody, deployment, stream, route } = call;
  const options = body.stream_options;
  const wantsUsage = askUsage && stream && route !== "embeddings" && !(isObject(options) && options.include_usage === true);
  const sameModel = body.model === deployment.upstreamModel;
  const dropped = droppedOf(body);
  // A second `"model"` in the text may be a second top-level member: then the body is re-serialised below.
  const first = rawBody.indexOf('"model"');
  if (sameModel && !wantsUsage && dropped.length === 0 && rawBody.indexOf('"model"', first + 7) < 0) return rawBody;
  const streamOptions = JSON.stringify({ ...(isObject(options) ? options : {}), include_usage: true });
  let text: string | null = rawBody;
  // One at a time, each from the text the one before left (a member's comma may be its neighbour's).
  for (const name of dropped) {
    const member: Span["member"] = memberSpans(text, [name])?.get(name)?.member;
    text = member ? text.slice(0, member.start) + text.slice(member.end) : null;
    if (text === null) break;
  }
  const spans = text === null ? null : memberSpans(text, EDITED);
  const model = spans?.get("model");
  if (text !== null && spans && model) {
    const edits: Array<[Span, string]> = [];
    if (!sameModel) edits.push([model, JSON.stringify(deployment.upstreamModel)]);
    if (wantsUsage) {
      const brace = closingBrace(text);
      const existing = spans.get("stream_options");
      edits.push(existing ? [existing, streamOptions] : [{ start: brace, end: brace }, `,"stream_options":${streamOptions}`]);
    }
    for (const [span, value] of edits.sort((a, b) => b[0].start - a[0].start)) text = text.slice(0, span.start) + value + text.slice(span.end);
    return text;
  }
  const next: Record<string, unknown> = { ...body, model: deployment.upstreamModel };
  for (const name of dropped) delete next[name];
  if (wantsUsage) next.stream_options = JSON.parse(streamOptions);
  return JSON.stringify(next);
}

/**
 * Sends an OpenAI-shaped request and reads the answer: JSON with its usage, SSE untouched, or an error
 * (a non-2xx status, or a 2xx whose body, or whose stream's first event, is an error in place of an answer).
 * A stream request's answer is read as SSE unless its content type says JSON.
 */
export async function sendOpenAiShaped(call: UpstreamCall, target: Target, askUsage = true): Promise<UpstreamResult> {
  const answer = await post(call, target, upstreamBody(call, askUsage));
  if (isError(answer)) return answer;
  const { response, host } = answer;
  if (!response.ok) return errorFrom(answer, target.secret);
  let text: string | ErrorResult;
  if (call.stream && response.body && !isJson(response)) {
    const start = await answer.start();
    if (isError(start)) return start;
    if (!("whole" in start)) return { kind: "stream", status: response.status, stream: start.rest, head: start.head, secret: target.secret };
    text = start.whole;
  } else text = await answer.text();
  if (isError(text)) return text;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return invalidJson(host);
  }
  const failed = errorInAnswer(parsed, text, response.headers, target.secret);
  if (failed) return failed;
  // A server that does not stream answered the stream request whole: the client still gets a stream.
  if (call.stream) return { kind: "stream", status: response.status, stream: streamOfAnswer(call.route, parsed), secret: target.secret };
  return { kind: "json", status: response.status, body: text, usage: usageFrom(parsed) };
}

/**
 * A whole answer as the stream it stands for: one chunk with every choice (a chat message as its delta,
 * each tool call with its index, as stream deltas carry them), a usage chunk (given to the client only
 * if it asked, as any), then `[DONE]`.
 */
export function streamOfAnswer(route: UpstreamCall["route"], answer: any): ReadableStream<Uint8Array> {
  const chat = route !== "completions";
  const head = { id: answer?.id, object: chat ? "chat.completion.chunk" : "text_completion", created: answer?.created, model: answer?.model };
  const choices = (Array.isArray(answer?.choices) ? answer.choices : []).map((choice: any) => {
    if (!chat) return choice;
    const { message, ...rest } = choice ?? {};
    const delta = { ...message };
    if (Array.isArray(delta.tool_calls)) delta.tool_calls = delta.tool_calls.map((tool: unknown, index: number) => ({ index, ...(tool as object) }));
    return { ...rest, delta };
  });
  const events = [{ ...head, choices }, ...(answer?.usage ? [{ ...head, choices: [], usage: answer.usage }] : [])];
  return new Response(`${events.map((event) => `data: ${JSON.stringify(event)}\n\n`).join("")}data: ${SSE_DONE}\n\n`).body!;
}

/** OpenAI, or any server speaking its API at `api_base` (vLLM, Ollama, Groq, LM Studio…). */
export function openAiAdapter(deployment: Deployment, env: Record<string, string | undefined>): Provider {
  const params = deployment.params;
  const base = baseUrl(params.api_base ?? (deployment.provider === "openai" ? env.OPENAI_API_BASE : undefined), "https://api.openai.com/v1", deployment);
  const key = paramOrEnv(params, "api_key", deployment.provider === "openai" ? env : {}, "OPENAI_API_KEY");
  const headers: Record<string, string> = {};
  if (key) headers.authorization = `Bearer ${key}`;
  if (typeof params.organization === "string" && params.organization) headers["openai-organization"] = params.organization;
  const targets = {
    chat: makeTarget(base + PATHS.chat, headers, key),
    completions: makeTarget(base + PATHS.completions, headers, key),
    embeddings: makeTarget(base + PATHS.embeddings, headers, key),
  };
  const send = (call: UpstreamCall): Promise<UpstreamResult> =>
    call.route === "messages" ? messagesViaChat(call, send) : sendOpenAiShaped(call, targets[call.route]);
  return { send };
}
