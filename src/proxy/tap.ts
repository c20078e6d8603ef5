import { usageOf } from "../providers/http";
import type { Usage } from "../providers/types";

export type StreamEnd = "complete" | "cancelled" | "failed";

export interface StreamOutcome {
  end: StreamEnd;
  /** The provider's usage, when it sent one. */
  usage: Usage | null;
  /** Text the client received, for counting tokens when no usage came. */
  text: string;
}

const encoder = new TextEncoder();

function errorEvent(message: string): Uint8Array {
  const error = { error: { message, type: "upstream_error", param: null, code: "502" } };
  return encoder.encode(`data: ${JSON.stringify(error)}\n\n`);
}

/** Reads usage and content out of OpenAI-shaped SSE lines, without changing a byte. */
class SseScanner {
  private readonly decoder = new TextDecoder();
  private pending = "";
  usage: Usage | null = null;
  text = "";
  /** A data line that is not JSON: the provider's stream cannot be trusted past it. */
  malformed = false;

  push(bytes: Uint8Array): void {
    const added = this.decoder.decode(bytes, { stream: true });
    // Only the new text can hold the next line break: a long line arriving in many pieces is not searched again.
    let newline = added.indexOf("\n");
    if (newline < 0) {
      this.pending += added;
      return;
    }
    let text = this.pending + added;
    newline += this.pending.length;
    while (newline >= 0) {
      this.line(text.slice(0, newline));
      text = text.slice(newline + 1);
      newline = text.indexOf("\n");
    }
    this.pending = text;
  }

  private line(raw: string): void {
    if (!raw.startsWith("data:")) return;
    const data = raw.slice(5).trim();
    if (data === "" || data === "[DONE]") return;
    let chunk: any;
    try {
      chunk = JSON.parse(data);
    } catch {
      this.malformed = true;
      return;
    }
    const usage = usageOf(chunk?.usage);
    if (usage) this.usage = usage;
    const choices = chunk?.choices;
    if (Array.isArray(choices)) {
      for (const choice of choices) {
        const content = choice?.delta?.content ?? choice?.text;
        if (typeof content === "string") this.text += content;
        const calls = choice?.delta?.tool_calls;
        if (Array.isArray(calls)) for (const call of calls) this.text += call?.function?.arguments ?? "";
      }
    }
  }
}

/**
 * Passes a provider's SSE stream to the client chunk by chunk as it arrives, reading usage on the
 * way, and reports once how it ended: completed, cancelled by the client, or cut by the provider
 * (the client then gets an error event instead of a silent truncation).
 */
export function tapStream(source: ReadableStream<Uint8Array>, onEnd: (outcome: StreamOutcome) => void): ReadableStream<Uint8Array> {
  const reader = source.getReader();
  const scanner = new SseScanner();
  let ended = false;
  const finish = (end: StreamEnd) => {
    if (ended) return;
    ended = true;
    onEnd({ end, usage: scanner.usage, text: scanner.text });
  };
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        try {
          const { done, value } = await reader.read();
          if (done) {
            finish("complete");
            controller.close();
            return;
          }
          scanner.push(value);
          if (scanner.malformed) {
            finish("failed");
            controller.enqueue(errorEvent("Upstream sent a malformed stream event; the stream was ended"));
            controller.close();
            await reader.cancel().catch(() => {});
            return;
          }
          controller.enqueue(value);
        } catch (error) {
          finish("failed");
          controller.enqueue(errorEvent(`Upstream stream ended unexpectedly: ${error instanceof Error ? error.message : String(error)}`));
          controller.close();
        }
      },
      cancel(reason) {
        finish("cancelled");
        return reader.cancel(reason).catch(() => {});
      },
    },
    { highWaterMark: 0 },
  );
}
