import { afterAll, beforeAll, expect, test } from "bun:test";
import { type RunningGateway, startBinary } from "../helpers/binary";
import { type Upstream, startUpstream } from "../helpers/upstream";

// A deployment's stream_timeout (else its timeout) bounds each silence of a stream, as LiteLLM's read
// timeout does: a provider that goes quiet mid-stream is cut then, not after the whole request_timeout,
// and a stream that keeps flowing is never cut.

let upstream: Upstream;
let gateway: RunningGateway;

beforeAll(async () => {
  upstream = await startUpstream();
  gateway = await startBinary({ config: `
model_list:
  - model_name: bounded
    litellm_params: {model: openai/m, api_base: "${upstream.url}", stream_timeout: 1, input_cost_per_token: 0.000001, output_cost_per_token: 0.000002}
general_settings:
  master_key: sk-1234
  request_timeout: 30
` });
}, 120_000);
afterAll(async () => {
  await gateway.stop("SIGKILL");
  upstream.stop();
});

async function stream(): Promise<{ text: string; ms: number }> {
  const started = performance.now();
  const response = await fetch(`${gateway.url}/v1/chat/completions`, {
    method: "POST", headers: { authorization: "Bearer sk-1234", "content-type": "application/json" },
    body: JSON.stringify({ model: "bounded", stream: true, messages: [{ role: "user", content: "Hello" }] }),
  });
  expect(response.status).toBe(200);
  return { text: await response.text(), ms: performance.now() - started };
}

test("a stream whose provider goes quiet for longer than stream_timeout is cut, saying why", async () => {
  upstream.reset();
  upstream.set({ chunks: 3, chunkDelayMs: 4000 });
  const { text, ms } = await stream();
  expect(text).toContain("stream_timeout (1s)");
  expect(text).not.toContain("[DONE]");
  // Cut by the once-a-second sweep after a second of silence, long before the provider's next piece.
  expect(ms).toBeLessThan(3500);
});

test("a stream whose pieces come more often than stream_timeout runs to its end, however long it takes", async () => {
  upstream.reset();
  upstream.set({ chunks: 6, chunkDelayMs: 400 });
  const { text, ms } = await stream();
  expect(text).toContain("[DONE]");
  expect(text).not.toContain("stream_timeout");
  expect(ms).toBeGreaterThan(2000);
});

test("a stream silent for longer than the server's idle timeout (LITEGATE_IDLE_TIMEOUT) but within its deadlines reaches its end", async () => {
  // The server's idle timer (255 s by default, 2 s here) used to reset a client's stream whose provider
  // was silent that long, although request_timeout (30 s here) allowed it.
  const idle = await startBinary({ env: { LITEGATE_IDLE_TIMEOUT: "2" }, config: `
model_list:
  - model_name: slow
    litellm_params: {model: openai/m, api_base: "${upstream.url}", input_cost_per_token: 0.000001, output_cost_per_token: 0.000002}
general_settings:
  master_key: sk-1234
  request_timeout: 30
` });
  try {
    upstream.reset();
    upstream.set({ chunks: 2, chunkDelayMs: 6000 });
    const response = await fetch(`${idle.url}/v1/chat/completions`, {
      method: "POST", headers: { authorization: "Bearer sk-1234", "content-type": "application/json" },
      body: JSON.stringify({ model: "slow", stream: true, messages: [{ role: "user", content: "Hello" }] }),
    });
    expect(response.status).toBe(200);
    expect(await response.text()).toContain("[DONE]");
  } finally {
    await idle.stop("SIGKILL");
  }
}, 30_000);

test("a stream whose provider takes longer than the server's idle timeout to send its first event reaches its end; pings before it keep request_timeout open", async () => {
  // litegate waits for a stream's first event before answering (an error there is retried): the client's
  // connection is silent meanwhile, bounded by request_timeout (3 s here), not by the idle timer (2 s).
  // The provider's pings restart request_timeout then, as they do once the stream is passed on.
  const encoder = new TextEncoder();
  const chunk = (content: string, finish: string | null = null) => `data: ${JSON.stringify({ id: "c", object: "chat.completion.chunk", created: 1, model: "m", choices: [{ index: 0, delta: { content }, finish_reason: finish }] })}\n\n`;
  const thinking = Bun.serve({
    port: 0, hostname: "127.0.0.1", idleTimeout: 60,
    async fetch(request) {
      const pings = ((await request.json()) as { model: string }).model === "pinging";
      return new Response(new ReadableStream({
        async start(controller) {
          if (!pings) await Bun.sleep(2500);
          else {
            for (let i = 0; i < 10; i++) {
              await Bun.sleep(500);
              controller.enqueue(encoder.encode(": ping\n\n"));
            }
          }
          controller.enqueue(encoder.encode(`${chunk("thought")}${chunk("", "stop")}data: [DONE]\n\n`));
          controller.close();
        },
      }), { headers: { "content-type": "text/event-stream" } });
    },
  });
  const idle = await startBinary({ env: { LITEGATE_IDLE_TIMEOUT: "2" }, config: `
model_list:
  - model_name: thinking
    litellm_params: {model: openai/thinking, api_base: "http://127.0.0.1:${thinking.port}/v1", input_cost_per_token: 0.000001, output_cost_per_token: 0.000002}
  - model_name: pinging
    litellm_params: {model: openai/pinging, api_base: "http://127.0.0.1:${thinking.port}/v1", input_cost_per_token: 0.000001, output_cost_per_token: 0.000002}
general_settings:
  master_key: sk-1234
  request_timeout: 3
` });
  try {
    for (const model of ["thinking", "pinging"]) {
      const response = await fetch(`${idle.url}/v1/chat/completions`, {
        method: "POST", headers: { authorization: "Bearer sk-1234", "content-type": "application/json" },
        body: JSON.stringify({ model, stream: true, messages: [{ role: "user", content: "Hello" }] }),
      });
      expect(`${model}: ${response.status}`).toBe(`${model}: 200`);
      expect(await response.text()).toContain("[DONE]");
    }
  } finally {
    await idle.stop("SIGKILL");
    thinking.stop(true);
  }
}, 30_000);
