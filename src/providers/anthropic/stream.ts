import { usageFrom } from "../http";
import { MAX_EVENT_BYTES, SSE_DONE, chunkOf, sseData, usageChunkOf } from "../sse";
import type { Usage } from "../types";
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

/** The `data:` payload of one SSE event block (lines joined as the SSE format says). */
function dataOf(block: string): string {
  let data = "";
  let lines = 0;
  for (const line of block.split("\n")) {
    if (!line.startsWith("data:")) continue;
    data += (lines++ > 0 ? "\n" : "") + line.slice(line.startsWith("data: ") ? 6 : 5);
  }
  return data;
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
  const reader = source.getReader();
  const decoder = new TextDecoder();
  const translator = createTranslator(model, jsonAnswer);
  const usageSoFar = (): Usage | null => {
    const reported = translator.usage();
    return reported.input_tokens === undefined ? null : usageFrom({ usage: openAiUsage(reported) });
  };
  /** Text received and not yet part of a complete event, in the pieces it came in, and its length; `last` is its last character. */
  let waiting: string[] = [];
  let waitingLength = 0;
  let last = "";
  const stream = new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        try {
          await step(controller);
        } catch (error) {
          await reader.cancel().catch(() => {});
          throw error;
        }
      },
      cancel(reason) {
        return reader.cancel(reason);
      },
    },
    { highWaterMark: 0 },
  );
  return { stream, usageSoFar };

  async function step(controller: ReadableStreamDefaultController<Uint8Array>): Promise<void> {
    // Keep reading until this pull has something to hand over: a pull that enqueues nothing
    // is not called again by every consumer.
    for (;;) {
      const { done, value } = head ? { done: false as const, value: head } : await reader.read();
      head = undefined;
      if (done) {
        if (!translator.finished()) throw new Error("provider stream ended before message_stop");
        controller.close();
        return;
      }
      onRead?.();
      // Only the new text (and the character before it) can complete an event. Until one is complete the
      // text waits in pieces: a long event arriving in many pieces is neither searched nor copied again.
      let added = decoder.decode(value, { stream: true });
      if (added === "") continue;
      if (last === "\r" && added.startsWith("\n") && waiting.length > 0) {
        // A CRLF cut in two: the CR goes, and the character before it is the one the LF follows.
        const tail = waiting.pop()!.slice(0, -1);
        if (tail !== "") waiting.push(tail);
        last = waiting.at(-1)?.at(-1) ?? "";
      }
      if (added.includes("\r")) added = added.replace(/\r\n/g, "\n");
      const completes = added.includes("\n\n") || (last === "\n" && added.startsWith("\n"));
      waiting.push(added);
      waitingLength += added.length;
      last = added.at(-1)!;
      if (!completes) {
        if (waitingLength > MAX_EVENT_BYTES) throw new Error(`provider sent a stream event over ${MAX_EVENT_BYTES / 1024 / 1024} MB without ending it`);
        continue;
      }
      let pending = waiting.join("");
      waiting = [];
      let produced = false;
      let boundary = pending.indexOf("\n\n");
      while (boundary >= 0) {
        const data = dataOf(pending.slice(0, boundary));
        pending = pending.slice(boundary + 2);
        boundary = pending.indexOf("\n\n");
        if (data === "") continue;
        let event: Json;
        try {
          event = JSON.parse(data);
        } catch {
          throw new Error("provider sent a malformed stream event");
        }
        for (const out of translator.translate(event)) {
          controller.enqueue(sseData(out));
          produced = true;
        }
        if (translator.finished()) {
          // Nothing comes after message_stop: the client's stream ends now, not when the socket closes.
          controller.close();
          await reader.cancel().catch(() => {});
          return;
        }
      }
      // The start of the next event waits with whatever follows it.
      if (pending !== "") waiting.push(pending);
      waitingLength = pending.length;
      last = pending.at(-1) ?? "";
      if (produced) return;
    }
  }
}
