import { countPromptTokens, countTextTokens } from "../tokens";
import { messagesViaChat } from "./messages";
import { SSE_DONE, chunkOf, sseData, usageChunkOf } from "./sse";
import type { Deployment, Provider, Route, UpstreamCall, UpstreamResult, Usage } from "./types";

const DEFAULT_ANSWER = "This is a mock response from litegate.";

type Json = Record<string, any>;

/** `mock_response: {error: {status, message}}` (or `{status, message}`): the error to answer with. */
function configuredError(value: Json): UpstreamResult {
  const error = value.error && typeof value.error === "object" ? value.error : value;
  const message = typeof value.error === "string" ? value.error : error.message;
  const retryAfter = Number(error.retry_after ?? value.retry_after);
  return {
    kind: "error",
    status: Number(error.status ?? value.status ?? 500),
    message: typeof message === "string" ? message : "mock error",
    type: typeof error.type === "string" ? error.type : undefined,
    retryAfter: Number.isFinite(retryAfter) ? retryAfter : undefined,
  };
}

/** Waits `ms`, or less when the signal fires; true when it fired. */
function pause(ms: number, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return Promise.resolve(true);
  if (ms <= 0) return Promise.resolve(false);
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve(signal.aborted);
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done);
  });
}

/** A stable, made-up 8-number vector per input. */
function vectorOf(input: unknown): number[] {
  const hash = new Bun.CryptoHasher("sha256").update(typeof input === "string" ? input : JSON.stringify(input)).digest();
  return Array.from(hash.subarray(0, 8), (byte) => Math.round((byte / 255 - 0.5) * 1e6) / 1e6);
}

function embeddingInputs(input: unknown): unknown[] {
  // A flat array of numbers is one input given as tokens; any other array is a batch.
  if (!Array.isArray(input) || input.every((item) => typeof item === "number")) return [input];
  return input;
}

function embeddings(call: UpstreamCall, model: string): UpstreamResult {
  const prompt = countPromptTokens("embeddings", call.body, true);
  const data = embeddingInputs(call.body.input).map((input, index) => ({ object: "embedding", index, embedding: vectorOf(input) }));
  const usage = { prompt_tokens: prompt, total_tokens: prompt };
  return { kind: "json", status: 200, body: JSON.stringify({ object: "list", model, data, usage }), usage: { ...usage, completion_tokens: 0 } };
}

function completion(route: Route, id: string, created: number, model: string, answer: string, usage: Usage): Json {
  return route === "chat"
    ? { id, object: "chat.completion", created, model, choices: [{ index: 0, message: { role: "assistant", content: answer }, finish_reason: "stop" }], usage }
    : { id, object: "text_completion", created, model, choices: [{ index: 0, text: answer, logprobs: null, finish_reason: "stop" }], usage };
}

/** The answer as OpenAI SSE, a word per chunk, `mock_delay_ms` apart; produced as the client reads. */
function streamOf(call: UpstreamCall, id: string, created: number, model: string, answer: string, usage: Usage, delay: number): ReadableStream<Uint8Array> {
  const piece = (text: string | null, finish: string | null = null): Json => call.route === "chat"
    ? chunkOf(id, model, created, text === null ? {} : { content: text }, finish)
    : { id, object: "text_completion", created, model, choices: [{ index: 0, text: text ?? "", logprobs: null, finish_reason: finish }] };
  const includeUsage = (call.body.stream_options as Json | undefined)?.include_usage === true;
  const events: unknown[] = [];
  if (call.route === "chat") events.push(chunkOf(id, model, created, { role: "assistant", content: "" }));
  for (const word of answer.split(/(?<= )/)) if (word) events.push(piece(word));
  events.push(piece(null, "stop"));
  if (includeUsage) events.push(call.route === "chat" ? usageChunkOf(id, model, created, usage) : { id, object: "text_completion", created, model, choices: [], usage });
  events.push(SSE_DONE);
  let next = 0;
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        if (next > 0 && (await pause(delay, call.signal))) {
          controller.error(new Error("request cancelled"));
          return;
        }
        controller.enqueue(sseData(events[next++]));
        if (next === events.length) controller.close();
      },
    },
    { highWaterMark: 0 },
  );
}

/**
 * Answers locally from `litellm_params.mock_response`, with usage counted like a provider would:
 * for offline use, demos and tests. `mock_delay_ms` paces it (before an answer, between chunks).
 */
export function mockAdapter(deployment: Deployment): Provider {
  const params = deployment.params;
  const delay = Math.max(0, Number(params.mock_delay_ms ?? 0) || 0);
  const configured = params.mock_response;
  const answer = typeof configured === "string" ? configured : DEFAULT_ANSWER;
  const provider: Provider = {
    async send(call: UpstreamCall): Promise<UpstreamResult> {
      if (call.route === "messages") return messagesViaChat(call, provider.send);
      if (!call.stream && (await pause(delay, call.signal))) {
        // The gateway's request_timeout aborts with a TimeoutError; anything else is the client leaving.
        if ((call.signal.reason as { name?: string } | undefined)?.name === "TimeoutError") {
          return { kind: "error", status: 504, type: "timeout", abandoned: true, message: "Upstream mock did not answer in time" };
        }
        return { kind: "error", status: 499, type: "cancelled", abandoned: true, message: "Request cancelled by the client" };
      }
      if (configured && typeof configured === "object") return configuredError(configured as Json);
      const model = String(call.body.model);
      if (call.route === "embeddings") return embeddings(call, model);
      const id = `${call.route === "chat" ? "chatcmpl" : "cmpl"}-${crypto.randomUUID()}`;
      const created = Math.floor(Date.now() / 1000);
      const prompt = countPromptTokens(call.route, call.body, true);
      const completionTokens = countTextTokens(answer);
      const usage = { prompt_tokens: prompt, completion_tokens: completionTokens, total_tokens: prompt + completionTokens };
      if (call.stream) return { kind: "stream", status: 200, stream: streamOf(call, id, created, model, answer, usage, delay) };
      return { kind: "json", status: 200, body: JSON.stringify(completion(call.route, id, created, model, answer, usage)), usage };
    },
  };
  return provider;
}
