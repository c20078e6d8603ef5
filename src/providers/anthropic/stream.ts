import { usageFrom } from "../http";
import { translateEvents } from "../event-stream";
import { SSE_DONE, chunkOf, sseData, usageChunkOf } from "../sse";
import type { Usage } from "../types";
import { anthropicEvent } from "../messages/stream";
import { JSON_TOOL } from "./request";
import { finishReasonOf, openAiUsage } from "./response";

type Json = Record<string, any>;

/**
 * Turns Anthropic Messages events into OpenAI chunks, one event at a time. Returns the chunks an
 * event produces (often none); throws on an `error` event so the stream ends as failed.
 */
function createTranslator(model: string, jsonAnswer: boolean) {
  const created = Math.floor(Date.now() / 1000);
  let id = `chatcmpl-${crypto.randomUUID()}`;
  let usage: Json = {};
  let tool = -1;
  /** Inside the answer tool of a `response_format` request: its input is streamed as content. */
  let answering = false;
  let answered = false;
  let finished = false;
  const chunk = (delta: Json, finish: string | null = null) => chunkOf(id, model, created, delta, finish);

  function translate(event: Json): unknown[] {
    switch (event.type) {
      case "message_start":
        id = event.message?.id ?? id;
        usage = { ...event.message?.usage };
        return [chunk({ role: "assistant", content: "" })];
      case "content_block_start": {
        const block = event.content_block;
        answering = jsonAnswer && block?.type === "tool_use" && block.name === JSON_TOOL;
        if (answering) {
          answered = true;
          return [];
        }
        if (block?.type === "tool_use") {
          tool++;
          return [chunk({ tool_calls: [{ index: tool, id: block.id, type: "function", function: { name: block.name, arguments: "" } }] })];
        }
        if (block?.type === "text" && block.text) return [chunk({ content: block.text })];
        return [];
      }
      case "content_block_delta": {
        const delta = event.delta;
        if (delta?.type === "text_delta") return [chunk({ content: delta.text })];
        if (delta?.type === "input_json_delta") {
          return [chunk(answering ? { content: delta.partial_json } : { tool_calls: [{ index: tool, function: { arguments: delta.partial_json } }] })];
        }
        if (delta?.type === "thinking_delta") return [chunk({ reasoning_content: delta.thinking, thinking_blocks: [{ type: "thinking", thinking: delta.thinking }] })];
        if (delta?.type === "signature_delta") return [chunk({ thinking_blocks: [{ type: "thinking", thinking: "", signature: delta.signature }] })];
        return [];
      }
      case "message_delta":
        // Counts here are running totals for the whole message: a count never goes down, and a null
        // or missing one (the SDK's types allow it) leaves what message_start said.
        for (const [name, value] of Object.entries(event.usage ?? {})) {
          if (typeof value === "number" && Number.isFinite(value) && !(value < usage[name])) {
            usage = { ...usage, [name]: value };
          }
        }
        if (!event.delta?.stop_reason) return [];
        // An answer given through the answer tool ends as a plain answer does, unless real tools were called too.
        return [chunk({}, finishReasonOf(answered && tool < 0 && event.delta.stop_reason === "tool_use" ? "end_turn" : event.delta.stop_reason))];
      case "message_stop":
        finished = true;
        return [usageChunkOf(id, model, created, openAiUsage(usage)), SSE_DONE];
      case "error": {
        const error = event.error ?? {};
        throw new Error(`provider error${error.type ? ` (${error.type})` : ""}: ${error.message ?? "no message"}`);
      }
      default:
        return [];
    }
  }
  return { translate, finished: () => finished, usage: () => usage };
}

/**
 * An Anthropic SSE stream as OpenAI SSE: each chunk is passed on as soon as its event is complete
 * (events may arrive split anywhere, even inside a UTF-8 character), with the usage chunk and
 * `[DONE]` at the end. A stream that ends before `message_stop` errors, so it is never taken for a
 * complete answer.
 */
export function translateStream(source: ReadableStream<Uint8Array>, model: string, jsonAnswer = false): ReadableStream<Uint8Array> {
  return translateStreamWithUsage(source, model, jsonAnswer).stream;
}

/**
 * `translateStream`, with the usage Anthropic has reported so far (none before `message_start`).
 * `onRead` is called for every piece read, events that make no chunk (pings) included; `head` is what
 * was already read of `source`, translated first.
 */
export function translateStreamWithUsage(source: ReadableStream<Uint8Array>, model: string, jsonAnswer = false, onRead?: () => void, head?: Uint8Array) {
  const translator = createTranslator(model, jsonAnswer);
  const usageSoFar = (): Usage | null => {
    const reported = translator.usage();
    return reported.input_tokens === undefined ? null : usageFrom({ usage: openAiUsage(reported) });
  };
  const stream = translateEvents(source, {
    translate(data) {
      let event: Json;
      try {
        event = JSON.parse(data);
      } catch {
        throw new Error("provider sent a malformed stream event");
      }
      return translator.translate(event).map((out) => sseData(out));
    },
    finished: () => translator.finished(),
    end() {
      throw new Error("provider stream ended before message_stop");
    },
  }, onRead, head);
  return { stream, usageSoFar };
}

/** What a content block's one delta carries, by the block's type (a block of a type not known here: none). */
const DELTAS: Record<string, ((block: Json) => Json) | undefined> = {
  text: (block) => ({ type: "text_delta", text: block.text ?? "" }),
  tool_use: (block) => ({ type: "input_json_delta", partial_json: JSON.stringify(block.input ?? {}) }),
  thinking: (block) => ({ type: "thinking_delta", thinking: block.thinking ?? "" }),
};
const EMPTY: Record<string, Json> = { text: { text: "" }, tool_use: { input: {} }, thinking: { thinking: "" } };

/**
 * A whole Messages answer as the stream it stands for, for a deployment that answered a stream request
 * whole: message_start (the message with no content yet, its input usage), each content block as its
 * start, one delta and its stop, message_delta (stop reason, output usage), message_stop.
 */
export function streamOfMessage(message: Json): ReadableStream<Uint8Array> {
  const { content, stop_reason, stop_sequence, usage, ...rest } = message;
  const events = [anthropicEvent("message_start", {
    message: { ...rest, content: [], stop_reason: null, stop_sequence: null, usage: { ...usage, output_tokens: 0 } },
  })];
  (Array.isArray(content) ? content : []).forEach((block: Json, index: number) => {
    const delta = DELTAS[block?.type];
    const start = delta ? { ...block, ...EMPTY[block.type] } : block;
    events.push(anthropicEvent("content_block_start", { index, content_block: start }));
    if (delta) events.push(anthropicEvent("content_block_delta", { index, delta: delta(block) }));
    events.push(anthropicEvent("content_block_stop", { index }));
  });
  events.push(anthropicEvent("message_delta", { delta: { stop_reason: stop_reason ?? "end_turn", stop_sequence: stop_sequence ?? null }, usage: { ...usage } }));
  events.push(anthropicEvent("message_stop"));
  return new Response(Buffer.concat(events)).body!;
}
