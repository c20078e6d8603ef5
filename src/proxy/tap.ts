import { redact } from "../providers/http";
import { MAX_EVENT_BYTES } from "../providers/sse";
import type { Usage } from "../providers/types";
import { SseEvents, type StreamFailure } from "./sse-events";

export type StreamEnd = "complete" | "cancelled" | "failed";

export interface StreamOutcome {
  end: StreamEnd;
  /** The provider's usage, when it sent one. */
  usage: Usage | null;
  /** Text of the events passed on, for counting tokens when no usage came. */
  text: string;
  /** The provider sent an error event. */
  providerError: boolean;
  /** A failed stream's error: the provider's first error event's, else the one litegate ended it with. */
  failure: StreamFailure | null;
}

/**
 * A stream the provider failed with its own error event before any text, reporting no usage (a
 * translated stream's message_start reports none: its counts are 0): it costs nothing, as the same
 * error answered as JSON does (a stream cut otherwise is charged its use).
 */
export const failedByProvider = (outcome: StreamOutcome, usageSoFar?: () => Usage | null): boolean =>
  outcome.end === "failed" && outcome.providerError && !outcome.text && !outcome.usage?.total_tokens && !usageSoFar?.();

export interface TapOptions {
  /**
   * Whether the client asked for the usage chunk (`stream_options.include_usage`). litegate asks the
   * provider for it either way, to charge the stream; a client that did not ask does not get it.
   */
  clientWantsUsage: boolean;
  /** The provider key: blanked out of the provider's error events and of the error litegate adds. */
  secret?: string;
  /** Called for every chunk the provider sends. */
  onChunk?: () => void;
  /**
   * The usage of a stream the provider sent none for, counted from its text: a client that asked for
   * the usage chunk gets one made of it before `[DONE]`, as LiteLLM makes it.
   */
  countUsage?: (text: string) => Usage;
  /** The choices the request asked for (`n`, for each prompt of a list): the answer is done when each has finished. */
  choices?: number;
  /** What the provider adapter already read of the stream (its first event): read before the rest. */
  head?: Uint8Array;
  /** The stream is Anthropic's Messages events (`/v1/messages`): read as such, and an error litegate adds is one of them. */
  anthropic?: boolean;
}

const encoder = new TextEncoder();

function errorEvent(message: string, anthropic: boolean): Uint8Array {
  // The blank line first: whatever the client holds of an unfinished event is ended before this one.
  if (anthropic) return encoder.encode(`\n\nevent: error\ndata: ${JSON.stringify({ type: "error", error: { type: "api_error", message } })}\n\n`);
  const error = { error: { message, type: "upstream_error", param: null, code: "502" } };
  return encoder.encode(`\n\ndata: ${JSON.stringify(error)}\n\n`);
}

const OVERSIZED = `Upstream sent a stream event over ${MAX_EVENT_BYTES / 1024 / 1024} MB without ending it; the stream was ended`;

const joined = (parts: Uint8Array[]): Uint8Array => (parts.length === 1 ? parts[0]! : Buffer.concat(parts));

/** The runtime's advice for its own debugging, which means nothing to a client. */
const messageOf = (error: unknown) => (error instanceof Error ? error.message : String(error)).replace(/\s*For more information, pass `verbose: true`.*$/s, "");

/**
 * Passes a provider's SSE stream to the client event by event as it arrives, reading usage on the
 * way, and reports once how it ended: completed, cancelled by the client, or cut by the provider —
 * a malformed event, a broken connection, or an end before the provider said the answer was done —
 * in which case the client gets an error event instead of a silent truncation.
 */
export function tapStream(source: ReadableStream<Uint8Array>, options: TapOptions, onEnd: (outcome: StreamOutcome) => void): ReadableStream<Uint8Array> {
  const reader = source.getReader();
  let head = options.head;
  const events = new SseEvents(options.clientWantsUsage, options.secret, options.countUsage, options.choices, options.anthropic);
  let ended = false;
  const finish = (end: StreamEnd, message?: string) => {
    if (ended) return;
    ended = true;
    const failure = end !== "failed" ? null : (events.failure ?? { status: 502, type: "upstream_error", message: message ?? "Upstream stream failed" });
    onEnd({ end, usage: events.usage, text: events.text, providerError: events.providerError, failure });
  };
  const fail = (controller: ReadableStreamDefaultController<Uint8Array>, out: Uint8Array[], message: string) => {
    finish("failed", message);
    if (out.length > 0) controller.enqueue(joined(out));
    // After the provider's own error event, a second one from litegate would only say less.
    if (!events.providerError) controller.enqueue(errorEvent(message, options.anthropic === true));
    controller.close();
  };
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        try {
          for (;;) {
            const { done, value } = head ? { done: false as const, value: head } : await reader.read();
            head = undefined;
            if (done) {
              const out = events.end();
              if (events.malformed) return fail(controller, out, "Upstream sent a malformed stream event; the stream was ended");
              if (!events.answered) return fail(controller, out, "Upstream closed the stream before the answer was complete");
              const closing = events.closing();
              if (closing) out.push(closing);
              finish(events.providerError ? "failed" : "complete");
              if (out.length > 0) controller.enqueue(joined(out));
              controller.close();
              return;
            }
            options.onChunk?.();
            const out = events.push(value);
            if (events.malformed || events.oversized) {
              fail(controller, out, events.malformed ? "Upstream sent a malformed stream event; the stream was ended" : OVERSIZED);
              await reader.cancel().catch(() => {});
              return;
            }
            if (events.done || events.usageFinal) {
              // `[DONE]`, or the usage after the finish, is the provider's last word: one that keeps the
              // connection open after it would hold the client reading to the end, and the request's slot,
              // until the request timeout. Without `[DONE]` the client gets litegate's.
              finish(events.providerError ? "failed" : "complete");
              const closing = events.closing();
              if (closing) out.push(closing);
              if (out.length > 0) controller.enqueue(joined(out));
              controller.close();
              reader.cancel().catch(() => {});
              return;
            }
            // A chunk that completes no event gives the client nothing yet: read on.
            if (out.length > 0) {
              controller.enqueue(joined(out));
              return;
            }
          }
        } catch (error) {
          fail(controller, [], redact(`Upstream stream ended unexpectedly: ${messageOf(error)}`, options.secret));
        }
      },
      cancel(reason) {
        // A client that stops reading once the answer is done (the SDKs stop at `[DONE]`) got all of it;
        // one that leaves before the provider's usage came has left a stream still running.
        finish(events.delivered ? "complete" : "cancelled");
        return reader.cancel(reason).catch(() => {});
      },
    },
    { highWaterMark: 0 },
  );
}

const STREAM = Symbol("stream");
type Marked = Response & { [STREAM]?: true };
/** Marks a stream's answer (see `untimed` in serve.ts): a property read, where its headers or body would be made on every answer. */
export function streamed(response: Response): Response {
  (response as Marked)[STREAM] = true;
  return response;
}

export const isStreamed = (response: Response): boolean => (response as Marked)[STREAM] === true;
