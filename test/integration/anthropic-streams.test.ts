import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { hashKey } from "../../src/auth/keys";
import { countTextTokens } from "../../src/tokens";
import { anthropicConfig, inProcessGateway } from "../helpers/gateway";
import { until } from "../helpers/until";

/**
 * Anthropic streams through the gateway: what they are charged, and how long they are let run. A fake
 * Messages API plays the script named by the request's first user message.
 */
const thought = "thinking hard about this problem ".repeat(10);
const encoder = new TextEncoder();
const event = (type: string, data: Record<string, unknown> = {}) => encoder.encode(`event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`);
const start = event("message_start", { message: { id: "msg_1", type: "message", role: "assistant", content: [], usage: { input_tokens: 10, output_tokens: 1 } } });
const text = (words: string) => [
  event("content_block_start", { index: 0, content_block: { type: "text", text: "" } }),
  event("content_block_delta", { index: 0, delta: { type: "text_delta", text: words } }),
  event("content_block_stop", { index: 0 }),
  event("message_delta", { delta: { stop_reason: "end_turn" }, usage: { output_tokens: 5 } }),
  event("message_stop"),
];

let h: Awaited<ReturnType<typeof inProcessGateway>>;
let anthropic: ReturnType<typeof Bun.serve>;

const scripts: Record<string, (send: (bytes: Uint8Array) => void) => Promise<void>> = {
  /** Thinks for 20 events, then the connection drops. */
  async "think-then-cut"(send) {
    send(start);
    send(event("content_block_start", { index: 0, content_block: { type: "thinking", thinking: "" } }));
    for (let i = 0; i < 20; i++) send(event("content_block_delta", { index: 0, delta: { type: "thinking_delta", thinking: thought } }));
  },
  /** Keeps the connection alive with a ping every half second (of the gateway's clock) for 6 s, then answers. */
  async "pings"(send) {
    send(start);
    for (let i = 0; i < 12; i++) {
      await Bun.sleep(150);
      h.clock.advance(500);
      send(event("ping"));
    }
    for (const bytes of text("at last")) send(bytes);
  },
  /** Answers a little, then sends an event that never ends, a megabyte at a time. */
  async "endless-event"(send) {
    send(start);
    for (const bytes of text("Once upon a time").slice(0, 2)) send(bytes);
    send(encoder.encode('event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"'));
    const piece = encoder.encode("x".repeat(1024 * 1024));
    for (let i = 0; i < 40 && !stopped; i++) {
      await Bun.sleep(5);
      send(piece);
    }
  },
};
let stopped = false;

beforeAll(async () => {
  anthropic = Bun.serve({
    port: 0,
    async fetch(request) {
      const body = (await request.json()) as any;
      const script = scripts[String(body.messages?.[0]?.content?.[0]?.text ?? "")]!;
      stopped = false;
      request.signal.addEventListener("abort", () => (stopped = true));
      const stream = new ReadableStream<Uint8Array>({
        async start(controller) {
          await script((bytes) => !stopped && controller.enqueue(bytes));
          if (!stopped) controller.close();
        },
        cancel() {
          stopped = true;
        },
      });
      return new Response(stream, { headers: { "content-type": "text/event-stream" } });
    },
  });
  h = await inProcessGateway(anthropicConfig(anthropic.port, "  request_timeout: 2\n"));
}, 120_000);
afterAll(async () => {
  await h.close();
  anthropic.stop(true);
});

const said = (words: string) => ({ stream: true, messages: [{ role: "user", content: words }] });

async function rowsOf(key: string): Promise<{ status: string; prompt_tokens: number; completion_tokens: number }[]> {
  await h.flush();
  return (await h.db.query("select status, prompt_tokens, completion_tokens from spend_logs where api_key = $1 order by start_time", [hashKey(key)])) as any;
}

describe("Anthropic streams", () => {
  test("a stream cut short while thinking is charged the thinking passed on", async () => {
    const key = await h.createKey();
    const answer = await (await h.chat(key, said("think-then-cut"), "claude")).text();
    expect(answer).toContain("reasoning_content");
    await until("the spend log row", async () => (await rowsOf(key)).length === 1);
    expect(await rowsOf(key)).toEqual([{ status: "stream_failed", prompt_tokens: 10, completion_tokens: countTextTokens(thought.repeat(20)) }]);
  });

  test("keep-alive pings keep a quiet stream within request_timeout", async () => {
    const key = await h.createKey();
    const answer = await (await h.chat(key, said("pings"), "claude")).text();
    expect(answer).not.toContain("request_timeout");
    expect(answer).toContain("at last");
    expect(answer.endsWith("data: [DONE]\n\n")).toBe(true);
  });

  test("an event that grows past 16 MB without ending ends the stream with an error, charged what was passed on", async () => {
    const key = await h.createKey();
    const answer = await (await h.chat(key, said("endless-event"), "claude")).text();
    expect(answer).toContain("Once upon a time");
    expect(answer).toContain("provider sent a stream event over 16 MB without ending it");
    expect(answer.length).toBeLessThan(10_000);
    await until("the spend log row", async () => (await rowsOf(key)).length === 1);
    expect(await rowsOf(key)).toEqual([{ status: "stream_failed", prompt_tokens: 10, completion_tokens: countTextTokens("Once upon a time") }]);
    await until("the provider's stream to be left", () => stopped);
  });
});
