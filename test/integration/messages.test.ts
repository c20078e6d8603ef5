import { describe, expect, test } from "bun:test";
import { hashKey } from "../../src/auth/keys";
import { countTextTokens } from "../../src/tokens";
import { newKeyOn } from "../helpers/binary";
import { binaryOnPostgres } from "../helpers/raw-provider";
import { type Upstream, startUpstream } from "../helpers/upstream";
import { until } from "../helpers/until";

/**
 * Anthropic's Messages API (`POST /v1/messages`) on the binary, on Postgres: passed through to an
 * Anthropic deployment (a fake Messages API here), translated for an OpenAI-compatible one (the test
 * upstream), governed and charged as /v1/chat/completions is.
 */
const encoder = new TextEncoder();
const event = (type: string, data: Record<string, unknown> = {}) => `event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`;
const MESSAGE = {
  id: "msg_test", type: "message", role: "assistant", model: "claude-upstream", content: [{ type: "text", text: "Hello from Claude" }],
  stop_reason: "end_turn", stop_sequence: null, usage: { input_tokens: 12, output_tokens: 7, cache_read_input_tokens: 0, cache_creation_input_tokens: 0 },
};
const STREAM = [
  event("message_start", { message: { ...MESSAGE, content: [], stop_reason: null, usage: { input_tokens: 12, output_tokens: 1 } } }),
  event("content_block_start", { index: 0, content_block: { type: "text", text: "" } }),
  event("ping"),
  event("content_block_delta", { index: 0, delta: { type: "text_delta", text: "Hello from" } }),
  event("content_block_delta", { index: 0, delta: { type: "text_delta", text: " Claude" } }),
  event("content_block_stop", { index: 0 }),
  event("message_delta", { delta: { stop_reason: "end_turn", stop_sequence: null }, usage: { output_tokens: 7 } }),
  event("message_stop"),
];
/** Prices of the two models (USD per token), and what one answer of each costs. */
const CLAUDE = { input: 0.000003, output: 0.000015 };
const CLAUDE_COST = 12 * CLAUDE.input + 7 * CLAUDE.output;
const M_COST = 10 * 0.000001 + 20 * 0.000002;

let upstream: Upstream;
let anthropic: ReturnType<typeof Bun.serve>;
const received: { headers: Headers; body: any }[] = [];
/** Streams the client left: the fake provider saw the request go. */
let left = 0;

const on = binaryOnPostgres(async () => {
  upstream = await startUpstream();
  anthropic = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    async fetch(request) {
      const body = (await request.json()) as any;
      received.push({ headers: request.headers, body });
      if (!body.stream) return Response.json(MESSAGE);
      const hold = body.messages[0].content === "hold";
      const stream = new ReadableStream<Uint8Array>({
        async start(controller) {
          for (const piece of hold ? STREAM.slice(0, 4) : STREAM) {
            controller.enqueue(encoder.encode(piece));
            await Bun.sleep(5);
          }
          // Held open: the provider goes on thinking until the gateway leaves.
          if (!hold) controller.close();
        },
        cancel() {
          left++;
        },
      });
      return new Response(stream, { headers: { "content-type": "text/event-stream" } });
    },
  });
  const config = `
model_list:
  - model_name: claude
    litellm_params: {model: anthropic/claude-upstream, api_base: "http://127.0.0.1:${anthropic.port}", api_key: sk-ant-test, input_cost_per_token: ${CLAUDE.input}, output_cost_per_token: ${CLAUDE.output}, max_parallel_requests: 1}
  - model_name: m
    litellm_params: {model: openai/m, api_base: "${upstream.url}", api_key: fake, input_cost_per_token: 0.000001, output_cost_per_token: 0.000002}
`;
  return config;
}, () => {
  anthropic?.stop(true);
  upstream?.stop();
});


const newKey = async (fields: Record<string, unknown> = {}) => (await newKeyOn(on.gateway.url, fields)).key;

/** POST /v1/messages as the Anthropic SDK sends it: the key in `x-api-key`, with `anthropic-version`. */
const HEADERS = (key: string) => ({ "x-api-key": key, "anthropic-version": "2023-06-01", "content-type": "application/json" });
const messages = (key: string, body: Record<string, unknown>, init: RequestInit = {}) =>
  fetch(`${on.gateway.url}/v1/messages`, {
    method: "POST",
    headers: HEADERS(key),
    body: JSON.stringify({ max_tokens: 100, messages: [{ role: "user", content: "Hi" }], ...body }),
    ...init,
  });

async function keySpend(key: string): Promise<number> {
  const response = await fetch(`${on.gateway.url}/key/info?key=${key}`, { headers: { authorization: "Bearer sk-1234" } });
  return ((await response.json()) as any).info.spend;
}

async function rowsOf(key: string): Promise<any[]> {
  return on.sql`select status, route, model, prompt_tokens, completion_tokens, spend from spend_logs where api_key = ${hashKey(key)} order by start_time`;
}

/** The events of an Anthropic SSE answer, in order. */
const eventsOf = (text: string) => text.split("\n\n").filter((block) => block.trim() !== "").map((block) => JSON.parse(block.split("\n").find((line) => line.startsWith("data: "))!.slice(6)));

describe("POST /v1/messages on an Anthropic deployment", () => {
  test("JSON: the provider's answer as it sent it, the body forwarded with the model renamed, spend charged and logged", async () => {
    const key = await newKey();
    const response = await messages(key, { model: "claude", system: "Be brief", metadata: { user_id: "end-user-1" } }, { headers: { ...HEADERS(key), "anthropic-beta": "tools-2024-04-04" } });
    expect(response.status).toBe(200);
    expect(response.headers.get("x-litellm-response-cost")).toBe(String(CLAUDE_COST));
    // Named after the model asked for, as LiteLLM names it: the upstream's name stays litegate's.
    expect(await response.json()).toEqual({ ...MESSAGE, model: "claude" });
    const sent = received.at(-1)!;
    expect(sent.body).toEqual({ model: "claude-upstream", max_tokens: 100, messages: [{ role: "user", content: "Hi" }], system: "Be brief", metadata: { user_id: "end-user-1" } });
    expect(sent.headers.get("x-api-key")).toBe("sk-ant-test");
    expect(sent.headers.get("anthropic-beta")).toBe("tools-2024-04-04");
    await until("the key's spend", async () => (await keySpend(key)) > 0, 10_000);
    expect(await keySpend(key)).toBeCloseTo(CLAUDE_COST, 12);
    await until("the spend log row", async () => (await rowsOf(key)).length === 1, 10_000);
    const [row] = await rowsOf(key);
    expect({ ...row, spend: undefined }).toEqual({ status: "success", route: "messages", model: "claude", prompt_tokens: 12, completion_tokens: 7, spend: undefined });
    const logged = await fetch(`${on.gateway.url}/spend/logs?request_id=${response.headers.get("x-litellm-call-id")}`, { headers: { authorization: "Bearer sk-1234" } });
    expect(((await logged.json()) as any[])[0].call_type).toBe("anthropic_messages");
    // The customer is the one `metadata.user_id` names, as LiteLLM reads it.
    const [customer] = await on.sql`select spend from end_users where user_id = 'end-user-1'`;
    expect(customer!.spend).toBeCloseTo(CLAUDE_COST, 12);
  });

  test("stream: the provider's events passed on as they came, charged from message_start and message_delta", async () => {
    const key = await newKey();
    const response = await messages(key, { model: "claude", stream: true });
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toBe("text/event-stream");
    const named = event("message_start", { message: { ...MESSAGE, model: "claude", content: [], stop_reason: null, usage: { input_tokens: 12, output_tokens: 1 } } });
    expect(await response.text()).toBe([named, ...STREAM.slice(1)].join(""));
    await until("the key's spend", async () => (await keySpend(key)) > 0, 10_000);
    expect(await keySpend(key)).toBeCloseTo(CLAUDE_COST, 12);
  });

  test("a client leaving a stream: its slot is given back, and what was used is charged", async () => {
    const key = await newKey();
    const leaving = new AbortController();
    const response = await messages(key, { model: "claude", stream: true, messages: [{ role: "user", content: "hold" }] }, { signal: leaving.signal });
    expect(response.status).toBe(200);
    const reader = response.body!.getReader();
    let seen = "";
    while (!seen.includes("Hello from")) {
      const read = await reader.read();
      if (read.done) break;
      seen += new TextDecoder().decode(read.value);
    }
    expect(seen).toContain("Hello from");
    leaving.abort();
    await until("the provider's stream to be left", () => left === 1, 10_000);
    await until("the spend log row", async () => (await rowsOf(key)).length === 1, 10_000);
    const [row] = await rowsOf(key);
    expect(row!.status).toBe("client_disconnected");
    expect(row!.prompt_tokens).toBe(12);
    expect(row!.completion_tokens).toBeGreaterThan(0);
    expect(row!.spend).toBeCloseTo(12 * CLAUDE.input + row!.completion_tokens * CLAUDE.output, 12);
    // max_parallel_requests is 1: the next request gets the slot the abandoned stream held.
    const next = await messages(key, { model: "claude" });
    expect(next.status).toBe(200);
  });
});

describe("POST /v1/messages on an OpenAI-compatible deployment", () => {
  test("JSON: the chat answer made an Anthropic message, the request a chat one", async () => {
    const key = await newKey();
    const response = await messages(key, { model: "m", system: [{ type: "text", text: "Be brief" }], stop_sequences: ["END"] });
    expect(response.status).toBe(200);
    const body = (await response.json()) as any;
    expect(body).toMatchObject({
      type: "message", role: "assistant", model: "m", content: [{ type: "text", text: "Hello from the test upstream" }],
      stop_reason: "end_turn", usage: { input_tokens: 10, output_tokens: 20 },
    });
    expect(body.id).toStartWith("msg_");
    const sent = upstream.requests.at(-1)!;
    expect(sent.path).toBe("/v1/chat/completions");
    expect(sent.body).toEqual({ model: "m", max_tokens: 100, stop: ["END"], messages: [{ role: "system", content: "Be brief" }, { role: "user", content: "Hi" }] });
    await until("the key's spend", async () => (await keySpend(key)) > 0, 10_000);
    expect(await keySpend(key)).toBeCloseTo(M_COST, 12);
  });

  test("tool use: tools and tool results go as OpenAI's, a tool call comes back as a tool_use block", async () => {
    const key = await newKey();
    upstream.set({ message: { role: "assistant", content: null, tool_calls: [{ id: "call_1", type: "function", function: { name: "weather", arguments: '{"city":"Paris"}' } }] } });
    const response = await messages(key, {
      model: "m",
      tools: [{ name: "weather", description: "The weather", input_schema: { type: "object", properties: { city: { type: "string" } } } }],
      tool_choice: { type: "any" },
      messages: [
        { role: "user", content: "Weather?" },
        { role: "assistant", content: [{ type: "text", text: "Looking" }, { type: "tool_use", id: "toolu_1", name: "weather", input: { city: "Rome" } }] },
        { role: "user", content: [{ type: "tool_result", tool_use_id: "toolu_1", content: "Sunny" }, { type: "text", text: "And Paris?" }] },
      ],
    });
    const sent = upstream.requests.at(-1)!.body;
    upstream.reset();
    expect(response.status).toBe(200);
    expect(((await response.json()) as any)).toMatchObject({
      content: [{ type: "tool_use", id: "call_1", name: "weather", input: { city: "Paris" } }], stop_reason: "end_turn",
    });
    expect(sent.tools).toEqual([{ type: "function", function: { name: "weather", description: "The weather", parameters: { type: "object", properties: { city: { type: "string" } } } } }]);
    expect(sent.tool_choice).toBe("required");
    expect(sent.messages).toEqual([
      { role: "user", content: "Weather?" },
      { role: "assistant", content: "Looking", tool_calls: [{ id: "toolu_1", type: "function", function: { name: "weather", arguments: '{"city":"Rome"}' } }] },
      { role: "tool", tool_call_id: "toolu_1", content: "Sunny" },
      { role: "user", content: "And Paris?" },
    ]);
  });

  test("stream: Anthropic's events made of the chat chunks, with the provider's usage", async () => {
    const key = await newKey();
    const response = await messages(key, { model: "m", stream: true });
    expect(response.status).toBe(200);
    const events = eventsOf(await response.text());
    expect(events.map((e) => e.type)).toEqual([
      "message_start", "content_block_start", ...Array(5).fill("content_block_delta"), "content_block_stop", "message_delta", "message_stop",
    ]);
    expect(events.filter((e) => e.type === "content_block_delta").map((e) => e.delta.text).join("")).toBe("Hello from the test upstream");
    expect(events.at(-2)).toMatchObject({ delta: { stop_reason: "end_turn" }, usage: { input_tokens: 10, output_tokens: 20 } });
    // Usage was asked of the provider, as for every stream.
    expect(upstream.requests.at(-1)!.body.stream_options).toEqual({ include_usage: true });
    await until("the key's spend", async () => (await keySpend(key)) > 0, 10_000);
    expect(await keySpend(key)).toBeCloseTo(M_COST, 12);
  });

  test("a stream the provider cuts ends with Anthropic's error event, and is charged what was passed on", async () => {
    const key = await newKey();
    upstream.set({ cutStreamAfterChunks: 2, chunkDelayMs: 30 });
    const response = await messages(key, { model: "m", stream: true });
    upstream.reset();
    const text = await response.text();
    const events = eventsOf(text);
    expect(events.map((e) => e.type)).toEqual(["message_start", "content_block_start", "content_block_delta", "content_block_delta", "error"]);
    expect(events.at(-1).error.type).toBe("api_error");
    await until("the spend log row", async () => (await rowsOf(key)).length === 1, 10_000);
    const [row] = await rowsOf(key);
    expect(row.status).toBe("stream_failed");
    expect(row.completion_tokens).toBeGreaterThan(0);
  });

  test("a client leaving a translated stream: the provider's stream is left too, and what was passed on is charged", async () => {
    const key = await newKey();
    upstream.set({ chunks: 10, chunkDelayMs: 300 });
    const aborted = upstream.aborted;
    const leaving = new AbortController();
    const response = await messages(key, { model: "m", stream: true }, { signal: leaving.signal });
    const reader = response.body!.getReader();
    let seen = "";
    while (!seen.includes("text_delta")) {
      const read = await reader.read();
      if (read.done) break;
      seen += new TextDecoder().decode(read.value);
    }
    leaving.abort();
    await until("the provider's stream to be left", () => upstream.aborted > aborted, 10_000);
    upstream.reset();
    await until("the spend log row", async () => (await rowsOf(key)).length === 1, 10_000);
    const [row] = await rowsOf(key);
    expect(row.status).toBe("client_disconnected");
    expect(row.prompt_tokens).toBeGreaterThan(0);
    expect(row.completion_tokens).toBeGreaterThan(0);
  });

  test("a provider that reports no usage: the tokens counted are what the client is told and what is charged", async () => {
    const key = await newKey();
    upstream.set({ omitUsage: true });
    const response = await messages(key, { model: "m", stream: true });
    upstream.reset();
    const usage = eventsOf(await response.text()).find((e) => e.type === "message_delta").usage;
    expect(usage.input_tokens).toBeGreaterThan(0);
    expect(usage.output_tokens).toBe(countTextTokens("Hello from the test upstream"));
    await until("the spend log row", async () => (await rowsOf(key)).length === 1, 10_000);
    const [row] = await rowsOf(key);
    expect([row.status, row.prompt_tokens, row.completion_tokens]).toEqual(["success", usage.input_tokens, usage.output_tokens]);
  });
});

describe("POST /v1/messages refusals", () => {
  test("bad input is a 400 naming the field, before anything is sent", async () => {
    const key = await newKey();
    const cases: [Record<string, unknown>, string][] = [
      [{ model: "m", max_tokens: undefined }, "max_tokens"],
      [{ model: "m", max_tokens: "100" }, "max_tokens"],
      [{ model: "m", messages: [] }, "messages"],
      [{ model: "m", messages: [{ role: "system", content: "x" }] }, "messages[0].role"],
      [{ model: "m", messages: [{ role: "user", content: 5 }] }, "messages[0].content"],
      [{ model: "m", system: 5 }, "system"],
    ];
    const before = upstream.requests.length;
    for (const [body, param] of cases) {
      const response = await messages(key, body);
      expect(response.status).toBe(400);
      const { error } = (await response.json()) as any;
      expect(error.param).toBe(param);
      expect(error.message).toStartWith(param.split("[")[0]!);
    }
    expect(upstream.requests.length).toBe(before);
  });

  test("a key over its budget is refused, as on /v1/chat/completions", async () => {
    const key = await newKey({ max_budget: 1e-7 });
    expect((await messages(key, { model: "m" })).status).toBe(200);
    await until("the key's spend", async () => (await keySpend(key)) > 0, 10_000);
    const refused = await messages(key, { model: "m" });
    expect(refused.status).toBe(400);
    expect(((await refused.json()) as any).error.type).toBe("budget_exceeded");
  });

  test("a key past its rpm limit gets a 429 with the rate limit headers", async () => {
    const key = await newKey({ rpm_limit: 1 });
    const first = await messages(key, { model: "claude" });
    expect(first.status).toBe(200);
    expect(first.headers.get("x-ratelimit-limit-requests")).toBe("1");
    const second = await messages(key, { model: "claude" });
    expect(second.status).toBe(429);
    expect(((await second.json()) as any).error.type).toBe("rate_limit_error");
  });
});
