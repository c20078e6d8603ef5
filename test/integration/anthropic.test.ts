import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { hashKey } from "../../src/auth/keys";
import { anthropicConfig, inProcessGateway } from "../helpers/gateway";

/**
 * A fake Anthropic Messages API. What it does depends on the request's first user message:
 * `silent` starts a stream (billing 500 prompt tokens) and then says nothing; `overloaded` starts one
 * (40 prompt tokens) and sends an error event; `slow` answers after 300 ms; anything else at once.
 */
let anthropic: ReturnType<typeof Bun.serve>;
const received: any[] = [];
const encoder = new TextEncoder();
const event = (type: string, data: Record<string, unknown>) => encoder.encode(`event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`);
const start = (inputTokens: number) => event("message_start", { message: { id: "msg_1", type: "message", role: "assistant", content: [], usage: { input_tokens: inputTokens, output_tokens: 1 } } });
const answer = () => Response.json({
  id: "msg_2", type: "message", role: "assistant", content: [{ type: "text", text: "fine" }], stop_reason: "end_turn",
  usage: { input_tokens: 12, output_tokens: 3 },
});

beforeAll(() => {
  anthropic = Bun.serve({
    port: 0,
    async fetch(request) {
      const body = await request.json() as any;
      received.push(body);
      const said = String(body.messages?.[0]?.content?.[0]?.text ?? "");
      if (said === "silent" || said === "overloaded") {
        const stream = new ReadableStream<Uint8Array>({
          start(controller) {
            controller.enqueue(said === "silent" ? start(500) : start(40));
            controller.enqueue(event("content_block_start", { index: 0, content_block: { type: "text", text: "" } }));
            controller.enqueue(event("content_block_delta", { index: 0, delta: { type: "text_delta", text: "Once upon a time" } }));
            if (said === "overloaded") {
              controller.enqueue(event("error", { error: { type: "overloaded_error", message: "Overloaded" } }));
              controller.close();
            }
          },
        });
        return new Response(stream, { headers: { "content-type": "text/event-stream" } });
      }
      if (said === "slow") await Bun.sleep(300);
      return answer();
    },
  });
});
afterAll(() => anthropic.stop(true));

const config = () => anthropicConfig(anthropic.port);

describe("Anthropic through the gateway", () => {
  test("a tool or tool call without a function name is a 400 naming it, not a crash; an empty assistant turn is left out", async () => {
    const h = await inProcessGateway(config());
    try {
      const key = await h.createKey({});
      const noName = await h.chat(key, { tools: [{ type: "function" }] }, "claude");
      expect(noName.status).toBe(400);
      expect(((await noName.json()) as any).error).toMatchObject({ param: "tools[0].function.name", message: "tools[0].function.name: required, a non-empty string" });
      const nullCall = await h.chat(key, { messages: [{ role: "user", content: "hi" }, { role: "assistant", tool_calls: [null] }, { role: "user", content: "x" }] }, "claude");
      expect(nullCall.status).toBe(400);
      expect(((await nullCall.json()) as any).error.param).toBe("messages[1].tool_calls[0].function.name");
      const sent = received.length;
      const empty = await h.chat(key, { messages: [{ role: "user", content: "hi" }, { role: "assistant", content: "" }, { role: "user", content: "again" }] }, "claude");
      expect(empty.status).toBe(200);
      expect(received.length).toBe(sent + 1);
      expect(received.at(-1).messages).toEqual([{ role: "user", content: [{ type: "text", text: "hi" }, { type: "text", text: "again" }] }]);
    } finally {
      await h.close();
    }
  });

  test("a stream cut short is charged the prompt Anthropic reported at its start, not a count of the text", async () => {
    const h = await inProcessGateway(config());
    try {
      const key = await h.createKey({});
      const left = await h.chat(key, { stream: true, messages: [{ role: "user", content: "silent" }] }, "claude");
      expect(left.status).toBe(200);
      const reader = left.body!.getReader();
      await reader.read();
      await reader.cancel();
      const failed = await h.chat(key, { stream: true, messages: [{ role: "user", content: "overloaded" }] }, "claude");
      expect(failed.status).toBe(200);
      await failed.text().catch(() => "");
      await Bun.sleep(50);
      await h.flush();
      const rows = await h.db.query("select status, prompt_tokens, completion_tokens, spend from spend_logs where api_key = $1 order by prompt_tokens desc", [hashKey(key)]);
      // Reported at the start: 1 output token. The failed stream passed on "Once upon a time" (4 tokens),
      // which counts as it is more; the client that left had read only the first chunk.
      expect(rows.map((r: any) => [r.status, r.prompt_tokens, r.completion_tokens])).toEqual([["client_disconnected", 500, 1], ["stream_failed", 40, 4]]);
      for (const row of rows as any[]) expect(row.spend).toBeCloseTo(row.prompt_tokens * 0.000003 + row.completion_tokens * 0.000015, 12);
    } finally {
      await h.close();
    }
  });

  test("a request without max_tokens reserves what litegate asks Anthropic for: 4,096, or the thinking budget and 4,096", async () => {
    const h = await inProcessGateway(config());
    try {
      // tpm 4,000: one request holding 4,096 completion tokens leaves no room for a second (one holding 1,024 would).
      const key = await h.createKey({ tpm_limit: 4000 });
      const first = h.chat(key, { messages: [{ role: "user", content: "slow" }] }, "claude");
      await Bun.sleep(100);
      const second = await h.chat(key, {}, "claude");
      expect(second.status).toBe(429);
      expect((await first).status).toBe(200);
      expect(received.at(-1).max_tokens).toBe(4096);
      // Thinking: litegate sends its budget plus 4,096, and holds as much (a tpm of 30,000 takes one such request).
      const thinker = await h.createKey({ tpm_limit: 30_000 });
      const thinking = { thinking: { type: "enabled", budget_tokens: 30_000 } };
      const deep = h.chat(thinker, { ...thinking, messages: [{ role: "user", content: "slow" }] }, "claude");
      await Bun.sleep(100);
      expect((await h.chat(thinker, thinking, "claude")).status).toBe(429);
      expect((await deep).status).toBe(200);
      expect(received.at(-1).max_tokens).toBe(34_096);
      // With max_tokens sent, that is what is held: two at once fit.
      const both = await Promise.all([1, 2].map(() => h.chat(key, { max_tokens: 100, messages: [{ role: "user", content: "slow" }] }, "claude")));
      expect(both.map((r) => r.status)).toEqual([200, 200]);
    } finally {
      await h.close();
    }
  });
});
