import { MAX_EVENT_BYTES } from "./sse";

const LF = 10;
const CR = 13;

/** A stream whose first event is not an error: the bytes read to find it, and the rest, unread. */
export interface StreamStart {
  /** What was read of the stream up to its first event (and whatever came with it), to pass on first. */
  head: Uint8Array;
  /** The stream, unlocked, from where `head` ends. */
  rest: ReadableStream<Uint8Array>;
}

/** A stream's start as read: its first event's data and name, if one came whole, and whether the stream ended there. */
export interface FirstEvent {
  start: StreamStart;
  data?: string;
  /** The event's `event:` name (`error`), "" when it has none. */
  event?: string;
  ended: boolean;
}

const valueOf = (line: string, field: number) => (line.charCodeAt(field) === 32 ? line.slice(field + 1) : line.slice(field));

/**
 * The `data:` and `event:` name of the first complete event of SSE text that has data (comments and
 * pings before it skipped), or undefined while none is complete; the text after it is not looked at.
 * Lines end with LF, CRLF or CR; a CR at the very end may be half a CRLF, so the line it ends waits for
 * the next piece.
 */
export function firstData(text: string, ended: boolean): { data: string; event: string } | undefined {
  const usable = ended ? `${text}\n\n` : text;
  const breaks = /\r\n|\r|\n/g;
  let data: string[] | null = null;
  let event = "";
  let start = 0;
  for (let found = breaks.exec(usable); found; found = breaks.exec(usable)) {
    if (found.index === usable.length - 1 && found[0] === "\r") return undefined;
    const line = usable.slice(start, found.index);
    start = breaks.lastIndex;
    if (line === "") {
      if (data) return { data: data.join("\n"), event };
      event = "";
    } else if (line.startsWith("data:")) {
      (data ??= []).push(valueOf(line, 5));
    } else if (line.startsWith("event:")) {
      event = valueOf(line, 6);
    }
  }
  return undefined;
}

/**
 * Reads a provider's SSE stream up to its first event that carries data: usually the first chunk holds
 * it whole, and nothing more is read. The client's answer has not started then, so a provider that opens
 * with an error can still be answered as if it had sent that error as JSON (retried, or given its
 * status). An event over MAX_EVENT_BYTES is not waited for further: the rest of the stream judges it.
 * Throws what reading throws (a broken connection, an abort), with the stream cancelled. `onRead` is
 * called for each piece read.
 */
export async function readFirstEvent(stream: ReadableStream<Uint8Array>, onRead?: () => void): Promise<FirstEvent> {
  const reader = stream.getReader();
  const utf8 = new TextDecoder();
  const chunks: Uint8Array[] = [];
  let bytes = 0;
  let text = "";
  let first: { data: string; event: string } | undefined;
  let ended = false;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) {
        ended = true;
        first = firstData(text, true);
        break;
      }
      onRead?.();
      chunks.push(value);
      bytes += value.length;
      text += utf8.decode(value, { stream: true });
      // Only a piece with a line break can end an event: one arriving in many pieces is searched once.
      if (value.includes(LF) || value.includes(CR)) first = firstData(text, false);
      if (first !== undefined || bytes > MAX_EVENT_BYTES) break;
    }
  } catch (error) {
    await reader.cancel().catch(() => {});
    throw error;
  }
  reader.releaseLock();
  const head = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
  return { start: { head, rest: stream }, data: first?.data, event: first?.event, ended };
}
