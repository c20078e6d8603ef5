import { MAX_EVENT_BYTES } from "./sse";

/** A stream whose first event is not an error: the bytes read to find it, and the rest, unread. */
export interface StreamStart {
  /** What was read of the stream up to its first event (and whatever came with it), to pass on first. */
  head: Uint8Array;
  /** The stream, unlocked, from where `head` ends. */
  rest: ReadableStream<Uint8Array>;
}

/** A stream's start as read: its first event's data, if one came whole, and whether the stream ended there. */
export interface FirstEvent {
  start: StreamStart;
  data?: string;
  ended: boolean;
}

const utf8 = new TextDecoder();

/**
 * The `data:` of the first complete event of SSE text that has one (comments and pings before it
 * skipped), or undefined while none is complete. Lines end with LF, CRLF or CR; a CR at the very end
 * may be half a CRLF, so the line it ends waits for the next chunk.
 */
export function firstData(text: string, ended: boolean): string | undefined {
  const usable = ended ? `${text}\n\n` : text.endsWith("\r") ? text.slice(0, -1) : text;
  const lines = usable.split(/\r\n|\r|\n/);
  lines.pop();
  let data: string[] | null = null;
  for (const line of lines) {
    if (line === "") {
      if (data) return data.join("\n");
    } else if (line.startsWith("data:")) {
      (data ??= []).push(line.charCodeAt(5) === 32 ? line.slice(6) : line.slice(5));
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
  const chunks: Uint8Array[] = [];
  let bytes = 0;
  let text = "";
  let data: string | undefined;
  let ended = false;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) {
        ended = true;
        data = firstData(text, true);
        break;
      }
      onRead?.();
      chunks.push(value);
      bytes += value.length;
      text += utf8.decode(value, { stream: true });
      data = firstData(text, false);
      if (data !== undefined || bytes > MAX_EVENT_BYTES) break;
    }
  } catch (error) {
    await reader.cancel().catch(() => {});
    throw error;
  }
  reader.releaseLock();
  const head = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
  return { start: { head, rest: stream }, data, ended };
}
