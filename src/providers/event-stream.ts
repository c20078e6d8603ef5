import { MAX_EVENT_BYTES } from "./sse";

/** Turns one provider's stream events into the client's, one event at a time. */
export interface EventTranslator {
  /** The client's bytes for one event's `data:` payload and `event:` name (often none); throws to end the stream as failed. */
  translate(data: string, event: string): Uint8Array[];
  /** The answer is complete: the provider's stream is not read further. */
  finished(): boolean;
  /** The provider's stream ended before `finished()`: the last bytes, or a throw when the answer is not complete. */
  end(): Uint8Array[];
}

/** The `data:` payload of one SSE event block (lines joined as the SSE format says), and its `event:` name. */
function eventOf(block: string): { data: string; event: string } {
  let data = "";
  let event = "";
  let lines = 0;
  for (const line of block.split("\n")) {
    if (line.startsWith("event:")) event = line.slice(line.startsWith("event: ") ? 7 : 6);
    if (!line.startsWith("data:")) continue;
    data += (lines++ > 0 ? "\n" : "") + line.slice(line.startsWith("data: ") ? 6 : 5);
  }
  return { data, event };
}

/**
 * A provider's SSE stream translated event by event: each event's output is passed on as soon as the
 * event is complete (events may arrive split anywhere, even inside a UTF-8 character). `onRead` is
 * called for every piece read, events that make nothing (pings) included; `head` is what was already
 * read of `source`, translated first.
 */
export function translateEvents(source: ReadableStream<Uint8Array>, translator: EventTranslator, onRead?: () => void, head?: Uint8Array): ReadableStream<Uint8Array> {
  const reader = source.getReader();
  const decoder = new TextDecoder();
  /**
   * Text received and not yet part of a complete event, in the pieces it came in, each line end made
   * LF; its length; and its last character. `afterCr`: the last piece read ended with a CR, so an LF
   * starting the next one is the rest of that line end.
   */
  let waiting: string[] = [];
  let waitingLength = 0;
  let last = "";
  let afterCr = false;
  return new ReadableStream<Uint8Array>(
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

  async function step(controller: ReadableStreamDefaultController<Uint8Array>): Promise<void> {
    // Keep reading until this pull has something to hand over: a pull that enqueues nothing
    // is not called again by every consumer.
    for (;;) {
      const { done, value } = head ? { done: false as const, value: head } : await reader.read();
      head = undefined;
      if (done) {
        // An event the provider did not end with its blank line still counts.
        const rest = eventOf(waiting.join(""));
        waiting = [];
        if (rest.data !== "") for (const out of translator.translate(rest.data, rest.event)) controller.enqueue(out);
        if (!translator.finished()) for (const out of translator.end()) controller.enqueue(out);
        controller.close();
        return;
      }
      onRead?.();
      // Only the new text (and the character before it) can complete an event. Until one is complete the
      // text waits in pieces: a long event arriving in many pieces is neither searched nor copied again.
      let added = decoder.decode(value, { stream: true });
      // Lines end with LF, CRLF or CR alone (a CRLF may be cut in two): each becomes one LF.
      if (afterCr && added.startsWith("\n")) added = added.slice(1);
      afterCr = added.endsWith("\r");
      if (added.includes("\r")) added = added.replace(/\r\n?/g, "\n");
      if (added === "") continue;
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
        const { data, event } = eventOf(pending.slice(0, boundary));
        pending = pending.slice(boundary + 2);
        boundary = pending.indexOf("\n\n");
        if (data === "") continue;
        for (const out of translator.translate(data, event)) {
          controller.enqueue(out);
          produced = true;
        }
        if (translator.finished()) {
          // Nothing comes after the answer: the client's stream ends now, not when the socket closes.
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
