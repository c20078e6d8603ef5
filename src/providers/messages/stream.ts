import { translateEvents } from "../event-stream";
import { usageOf } from "../http";
import { SSE_DONE } from "../sse";
import type { Usage } from "../types";
import { anthropicUsage, messageId, stopReasonOf, toolNameOf } from "./response";

type Json = Record<string, any>;

const encoder = new TextEncoder();

/** One chunk of a provider's stream: `[DONE]`, or its JSON; throws when it is neither. */
function chunkOf(text: string): Json | typeof SSE_DONE {
  if (text.trim() === SSE_DONE) return SSE_DONE;
  try {
    return JSON.parse(text);
  } catch {
    throw new Error("provider sent a malformed stream event");
  }
}

/**
 * The chunks of one event's data: one, else one per line, as some servers write a chunk per `data:`
 * line with no blank line between (the chat path's stream tap reads them so too).
 */
function chunksOf(data: string): (Json | typeof SSE_DONE)[] {
  try {
    return [chunkOf(data)];
  } catch (error) {
    if (!data.includes("\n")) throw error;
    return data.split("\n").filter((line) => line.trim() !== "").map(chunkOf);
  }
}

/**
 * A provider's error (an `error` member, or the data of an event named `error`) as Anthropic's error
 * event, with the provider's words, kind and code: the client reads why, and the request's log row has it.
 */
function errorEventOf(error: unknown): Uint8Array {
  const fields: Json = error && typeof error === "object" ? error : {};
  const message = typeof error === "string" ? error : typeof fields.message === "string" ? fields.message : "Upstream sent an error event";
  const type = typeof fields.type === "string" ? fields.type : "api_error";
  return anthropicEvent("error", { error: fields.code === undefined ? { type, message } : { type, message, code: fields.code } });
}

/** One Server-Sent Event as Anthropic sends it: its type named on the `event:` line and in the data. */
export const anthropicEvent = (type: string, data: Json = {}): Uint8Array =>
  encoder.encode(`event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`);

/**
 * An OpenAI chat stream as Anthropic Messages events: message_start, a content block per text run or
 * tool call (content_block_start, its deltas, content_block_stop), then message_delta with the stop
 * reason and the usage, and message_stop. The usage is the provider's, else `counted` of the text
 * passed on. A stream that ends before its finish_reason ends as failed; one that sends an error ends
 * with Anthropic's error event saying it.
 */
export function messagesStream(
  source: ReadableStream<Uint8Array>, model: string, counted: (text: string) => Usage, onRead?: () => void, head?: Uint8Array, names?: Map<string, string>,
): ReadableStream<Uint8Array> {
  let started = false;
  let done = false;
  /** The open content block: its index, and for a tool call the provider's index of that call. */
  let open: { index: number; tool?: number } | null = null;
  let blocks = 0;
  const tools = new Map<number, number>();
  let stop: string | null = null;
  let usage: Usage | null = null;
  let text = "";

  function close(out: Uint8Array[]): void {
    if (open) out.push(anthropicEvent("content_block_stop", { index: open.index }));
    open = null;
  }

  function openBlock(out: Uint8Array[], block: Json, tool?: number): number {
    close(out);
    open = { index: blocks++, tool };
    out.push(anthropicEvent("content_block_start", { index: open.index, content_block: block }));
    return open.index;
  }

  function finish(out: Uint8Array[]): Uint8Array[] {
    close(out);
    const final = usage ?? counted(text);
    out.push(anthropicEvent("message_delta", { delta: { stop_reason: stop ?? "end_turn", stop_sequence: null }, usage: anthropicUsage(final) }));
    out.push(anthropicEvent("message_stop"));
    done = true;
    return out;
  }

  function choice(out: Uint8Array[], delta: Json | undefined): void {
    if (typeof delta?.content === "string" && delta.content !== "") {
      if (open?.tool !== undefined || !open) openBlock(out, { type: "text", text: "" });
      out.push(anthropicEvent("content_block_delta", { index: open!.index, delta: { type: "text_delta", text: delta.content } }));
      text += delta.content;
    }
    for (const call of Array.isArray(delta?.tool_calls) ? delta.tool_calls : []) {
      const key = typeof call?.index === "number" ? call.index : 0;
      let index = tools.get(key);
      if (index === undefined) {
        const called = String(call?.function?.name ?? "");
        index = openBlock(out, { type: "tool_use", id: String(call?.id ?? `toolu_${crypto.randomUUID()}`), name: toolNameOf(called, names), input: {} }, key);
        tools.set(key, index);
        text += called;
      }
      const args = call?.function?.arguments;
      if (typeof args === "string" && args !== "") {
        out.push(anthropicEvent("content_block_delta", { index, delta: { type: "input_json_delta", partial_json: args } }));
        text += args;
      }
    }
  }

  return translateEvents(source, {
    translate(data, event) {
      const out: Uint8Array[] = [];
      for (const chunk of chunksOf(data)) {
        if (chunk === SSE_DONE) return finish(out);
        // As the chat path's stream tap reads one: an `error` that is null, "" or false is none.
        const error = chunk?.error;
        if (event === "error" || (error !== undefined && error !== null && error !== "" && error !== false)) {
          close(out);
          out.push(errorEventOf(error ?? chunk));
          done = true;
          return out;
        }
        if (!started) {
          started = true;
          const message = { id: messageId(chunk?.id), type: "message", role: "assistant", model, content: [], stop_reason: null, stop_sequence: null, usage: anthropicUsage(null) };
          out.push(anthropicEvent("message_start", { message }));
        }
        usage = usageOf(chunk?.usage) ?? usage;
        const first = Array.isArray(chunk?.choices) ? chunk.choices.find((c: Json) => (c?.index ?? 0) === 0) : undefined;
        choice(out, first?.delta);
        if (first?.finish_reason) {
          stop = stopReasonOf(first.finish_reason);
          close(out);
        }
        // The usage after the finish is the provider's last word, whether or not `[DONE]` follows.
        if (stop !== null && chunk?.usage) return finish(out);
      }
      return out;
    },
    finished: () => done,
    end() {
      if (stop !== null) return finish([]);
      throw new Error("provider stream ended before the answer was complete");
    },
  }, onRead, head);
}
