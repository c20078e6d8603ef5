import { describe, expect, test } from "bun:test";
import { type StreamOutcome, tapStream } from "../../src/proxy/tap";

const encoder = new TextEncoder();
const event = (data: unknown) => `data: ${JSON.stringify(data)}\r\n\r\n`;
const SSE =
  event({ choices: [{ index: 0, delta: { content: "Grüße, " } }] }) +
  ": a comment line\n\n" +
  event({ choices: [{ index: 0, delta: { content: "漢字 🙂" } }] }) +
  event({ choices: [{ index: 0, delta: { tool_calls: [{ function: { arguments: '{"a":1}' } }] } }] }) +
  event({ choices: [], usage: { prompt_tokens: 11, completion_tokens: 7, total_tokens: 18 } }) +
  "data: [DONE]\n\n";

/** Runs bytes through the tap in the given pieces; returns what came out and how it ended. */
async function tap(pieces: Uint8Array[]): Promise<{ out: Uint8Array; outcome: StreamOutcome }> {
  const source = new ReadableStream<Uint8Array>({
    start(controller) {
      for (const piece of pieces) controller.enqueue(piece);
      controller.close();
    },
  });
  let outcome: StreamOutcome | undefined;
  const out = new Uint8Array(await new Response(tapStream(source, (o) => (outcome = o))).arrayBuffer());
  return { out, outcome: outcome! };
}

describe("the stream tap", () => {
  test("usage and text are read wherever the provider's pieces split the events, and every byte passes unchanged", async () => {
    const bytes = encoder.encode(SSE);
    // Every split point, including inside multi-byte characters, "data:" and the CRLF pairs.
    for (let at = 1; at < bytes.length; at++) {
      const { out, outcome } = await tap([bytes.slice(0, at), bytes.slice(at)]);
      expect(out).toEqual(bytes);
      expect(`${at}: ${JSON.stringify(outcome)}`).toBe(
        `${at}: ${JSON.stringify({ end: "complete", usage: { prompt_tokens: 11, completion_tokens: 7, total_tokens: 18 }, text: 'Grüße, 漢字 🙂{"a":1}' })}`,
      );
    }
    // Byte by byte.
    const { outcome } = await tap(Array.from(bytes, (b) => new Uint8Array([b])));
    expect(outcome.usage?.total_tokens).toBe(18);
  });

  test("a line megabytes long arriving in small pieces is read once", async () => {
    const long = event({ choices: [{ delta: { content: "x".repeat(3_000_000) } }] }) + event({ choices: [], usage: { prompt_tokens: 1, completion_tokens: 2 } });
    const bytes = encoder.encode(long);
    const pieces: Uint8Array[] = [];
    for (let i = 0; i < bytes.length; i += 4096) pieces.push(bytes.slice(i, i + 4096));
    const { out, outcome } = await tap(pieces);
    expect(out.length).toBe(bytes.length);
    expect(outcome.text.length).toBe(3_000_000);
    expect(outcome.usage).toEqual({ prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 });
  });
});
