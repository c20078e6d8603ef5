import { describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import Anthropic from "@anthropic-ai/sdk";
import OpenAI from "openai";
import { hashKey } from "../../src/auth/keys";
import { newKeyOn } from "../helpers/binary";
import { binaryOnPostgres } from "../helpers/raw-provider";
import { type Upstream, startUpstream } from "../helpers/upstream";
import { until } from "../helpers/until";

/**
 * `POST /v1/messages` driven by Anthropic's own SDK, against a fake Anthropic Messages API answering
 * in Anthropic's shapes (the first user turn names what it does) and the OpenAI-compatible test upstream.
 */
const encoder = new TextEncoder();
const event = (type: string, data: Record<string, unknown> = {}) => `event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`;
const USAGE = { input_tokens: 12, output_tokens: 7, cache_read_input_tokens: 100, cache_creation_input_tokens: 50 };
const MESSAGE = {
  id: "msg_cases", type: "message", role: "assistant", model: "claude-upstream", content: [{ type: "text", text: "Hello from Claude" }],
  stop_reason: "end_turn", stop_sequence: null, usage: USAGE,
};
const TOOL_STREAM = [
  event("message_start", { message: { ...MESSAGE, content: [], stop_reason: null, usage: { ...USAGE, output_tokens: 1 } } }),
  event("content_block_start", { index: 0, content_block: { type: "tool_use", id: "toolu_1", name: "weather", input: {} } }),
  event("content_block_delta", { index: 0, delta: { type: "input_json_delta", partial_json: '{"city": ' } }),
  event("content_block_delta", { index: 0, delta: { type: "input_json_delta", partial_json: '"Paris"}' } }),
  event("content_block_stop", { index: 0 }),
  event("message_delta", { delta: { stop_reason: "tool_use", stop_sequence: null }, usage: { output_tokens: 7 } }),
  event("message_stop"),
];
/** A message as a deployment that does not stream answers a stream request: whole, as JSON. */
const WHOLE = {
  ...MESSAGE, stop_reason: "tool_use",
  content: [{ type: "thinking", thinking: "Paris is a city", signature: "sig" }, { type: "text", text: "Let me look." }, { type: "tool_use", id: "toolu_9", name: "weather", input: { city: "Paris" } }],
};
const OVERLOADED = { type: "error", error: { type: "overloaded_error", message: "Overloaded" } };
const PRICE = { input: 0.000003, output: 0.000015, read: 0.0000003, write: 0.00000375 };
const CACHED_COST = 12 * PRICE.input + 7 * PRICE.output + 100 * PRICE.read + 50 * PRICE.write;

let upstream: Upstream;
let anthropic: ReturnType<typeof Bun.serve>;
/** The count_tokens requests the fake Anthropic API was sent. */
const countRequests: Array<{ body: any; beta: string | null }> = [];

const sse = (pieces: string[], close = true) =>
  new Response(
    new ReadableStream<Uint8Array>({
      async start(controller) {
        for (const piece of pieces) {
          controller.enqueue(encoder.encode(piece));
          await Bun.sleep(5);
        }
        if (close) controller.close();
      },
    }),
    { headers: { "content-type": "text/event-stream" } },
  );

const on = binaryOnPostgres(async () => {
  upstream = await startUpstream();
  anthropic = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    async fetch(request) {
      const body = (await request.json()) as any;
      const first = body.messages[0].content;
      if (new URL(request.url).pathname === "/v1/messages/count_tokens") {
        countRequests.push({ body, beta: request.headers.get("anthropic-beta") });
        return first === "count fails" ? Response.json(OVERLOADED, { status: 529 }) : Response.json({ input_tokens: 4242 });
      }
      const scenario = typeof first === "string" ? first : Array.isArray(first) && first[0]?.type === "text" ? first[0].text : "";
      if (scenario === "overloaded") return Response.json(OVERLOADED, { status: 529 });
      if (scenario === "overloaded in a 200") return Response.json(OVERLOADED);
      if (scenario === "answers whole") return Response.json(WHOLE);
      if (scenario === "slow down") return Response.json({ type: "error", error: { type: "rate_limit_error", message: "Slow down" } }, { status: 429, headers: { "retry-after": "7" } });
      if (!body.stream) return Response.json(MESSAGE);
      if (scenario === "tool") return sse(TOOL_STREAM);
      if (scenario === "silent") return sse(TOOL_STREAM.slice(0, 3), false);
      if (scenario === "overloaded first") return sse([`event: error\ndata: ${JSON.stringify(OVERLOADED)}\n\n`]);
      // The provider overloads after its first words: Anthropic's error event, then the end.
      if (scenario === "breaks") return sse([...TOOL_STREAM.slice(0, 3), `event: error\ndata: ${JSON.stringify(OVERLOADED)}\n\n`]);
      return sse(TOOL_STREAM);
    },
  });
  const price = `input_cost_per_token: ${PRICE.input}, output_cost_per_token: ${PRICE.output}, cache_read_input_token_cost: ${PRICE.read}, cache_creation_input_token_cost: ${PRICE.write}`;
  const config = `
model_list:
  - model_name: claude
    litellm_params: {model: anthropic/claude-upstream, api_base: "http://127.0.0.1:${anthropic.port}", api_key: sk-ant-test, ${price}, max_parallel_requests: 1}
  - model_name: claude-quiet
    litellm_params: {model: anthropic/claude-upstream, api_base: "http://127.0.0.1:${anthropic.port}", api_key: sk-ant-test, ${price}, max_parallel_requests: 1, stream_timeout: 1}
  - model_name: reasoner
    litellm_params: {model: openai/gpt-5-mini, api_base: "${upstream.url}", api_key: fake, input_cost_per_token: 0.000001, output_cost_per_token: 0.000002}
  - model_name: m
    litellm_params: {model: openai/m, api_base: "${upstream.url}", api_key: fake, input_cost_per_token: 0.000001, output_cost_per_token: 0.000002, max_parallel_requests: 1}
`;
  return config;
}, () => {
  anthropic?.stop(true);
  upstream?.stop();
});


const newKey = async (fields: Record<string, unknown> = {}) => (await newKeyOn(on.gateway.url, fields)).key;

const client = (key: string) => new Anthropic({ apiKey: key, baseURL: on.gateway.url, maxRetries: 0 });

async function rowsOf(key: string): Promise<any[]> {
  return on.sql`select status, prompt_tokens, completion_tokens, spend from spend_logs where api_key = ${hashKey(key)} order by start_time`;
}

describe("the Anthropic SDK on an Anthropic deployment", () => {
  test("messages.create: cache reads and writes priced at their own prices", async () => {
    const key = await newKey();
    const message = await client(key).messages.create({ model: "claude", max_tokens: 100, messages: [{ role: "user", content: "Hi" }] });
    expect(message.usage.cache_read_input_tokens).toBe(100);
    expect(message.model).toBe("claude");
    await until("its spend log row", async () => (await rowsOf(key)).length === 1);
    const [row] = await rowsOf(key);
    expect(row.prompt_tokens).toBe(162);
    expect(row.spend).toBeCloseTo(CACHED_COST, 12);
  });

  test("messages.stream: a tool use built from input_json_delta, charged with its cache tokens", async () => {
    const key = await newKey();
    const final = await client(key).messages.stream({ model: "claude", max_tokens: 100, messages: [{ role: "user", content: "tool" }] }).finalMessage();
    expect(final.stop_reason).toBe("tool_use");
    expect(final.model).toBe("claude");
    expect(final.content[0]).toMatchObject({ type: "tool_use", name: "weather", input: { city: "Paris" } });
    await until("its spend log row", async () => (await rowsOf(key)).length === 1);
    expect((await rowsOf(key))[0].spend).toBeCloseTo(CACHED_COST, 12);
  });

  test("provider overloaded (529): the SDK gets an error it reads, the slot is given back", async () => {
    const key = await newKey();
    const error = await client(key).messages.create({ model: "claude", max_tokens: 100, messages: [{ role: "user", content: "overloaded" }] }).catch((e) => e);
    expect(error).toBeInstanceOf(Anthropic.APIError);
    expect(error.status).toBe(529);
    const again = await client(key).messages.stream({ model: "claude", max_tokens: 100, messages: [{ role: "user", content: "tool" }] }).finalMessage();
    expect(again.stop_reason).toBe("tool_use");
  });

  test("an error Anthropic answers with a 200 gets the status its type names, as on the chat path (529 for overloaded_error)", async () => {
    const key = await newKey();
    const error = await client(key).messages.create({ model: "claude", max_tokens: 100, messages: [{ role: "user", content: "overloaded in a 200" }] }).catch((e) => e);
    expect(error).toBeInstanceOf(Anthropic.APIError);
    expect(error.status).toBe(529);
  });

  test("provider rate limit: 429 with its retry-after", async () => {
    const key = await newKey();
    const response = await fetch(`${on.gateway.url}/v1/messages`, {
      method: "POST", headers: { "x-api-key": key, "content-type": "application/json" },
      body: JSON.stringify({ model: "claude", max_tokens: 10, messages: [{ role: "user", content: "slow down" }] }),
    });
    expect(response.status).toBe(429);
    expect(response.headers.get("retry-after")).toBe("7");
  });

  test("an error event mid-stream: the SDK throws, the slot is given back", async () => {
    const key = await newKey();
    const error = await client(key).messages.stream({ model: "claude", max_tokens: 100, messages: [{ role: "user", content: "breaks" }] }).finalMessage().catch((e) => e);
    expect(error).toBeInstanceOf(Error);
    const again = await client(key).messages.stream({ model: "claude", max_tokens: 100, messages: [{ role: "user", content: "tool" }] }).finalMessage();
    expect(again.stop_reason).toBe("tool_use");
  });
});

describe("the Anthropic SDK on an OpenAI-compatible deployment", () => {
  // message_start says 0 input tokens, as LiteLLM's translation does: the provider's count comes in message_delta.
  test("messages.stream: the final message has the provider's usage", async () => {
    const key = await newKey();
    const final = await client(key).messages.stream({ model: "m", max_tokens: 100, messages: [{ role: "user", content: "Hi there, how are you today?" }] }).finalMessage();
    expect(final.content[0]).toMatchObject({ type: "text", text: "Hello from the test upstream" });
    expect(final.usage).toMatchObject({ input_tokens: 10, output_tokens: 20 });
  });
});

describe("POST /v1/messages/count_tokens", () => {
  test("the SDK's countTokens: the prompt's tokens, nothing charged; a key is required", async () => {
    const key = await newKey();
    const counted = await client(key).messages.countTokens({ model: "m", messages: [{ role: "user", content: "Hi there, how are you today?" }] });
    expect(counted.input_tokens).toBeGreaterThan(0);
    const error = await client("sk-wrong").messages.countTokens({ model: "m", messages: [{ role: "user", content: "Hi" }] }).catch((e) => e);
    expect(error.status).toBe(401);
    // The tools and system prompt count too, as they do for the budget.
    const more = await client(key).messages.countTokens({
      model: "m", system: "Be brief", messages: [{ role: "user", content: "Hi there, how are you today?" }],
      tools: [{ name: "weather", description: "The weather in a city", input_schema: { type: "object", properties: { city: { type: "string" } } } }],
    });
    expect(more.input_tokens).toBeGreaterThan(counted.input_tokens);
    expect(await rowsOf(key)).toEqual([]);
  });

  test("an Anthropic deployment counts them itself, as LiteLLM asks Anthropic; when it cannot, litegate counts them", async () => {
    const key = await newKey();
    countRequests.length = 0;
    const request = { model: "claude", system: "Be brief", messages: [{ role: "user" as const, content: "Hi there" }] };
    const own = await client(key).messages.countTokens(request, { headers: { "anthropic-beta": "token-counting-2024-11-01" } });
    expect(own.input_tokens).toBe(4242);
    expect(countRequests).toEqual([{ body: { ...request, model: "claude-upstream" }, beta: "token-counting-2024-11-01" }]);
    const local = await client(key).messages.countTokens({ ...request, messages: [{ role: "user", content: "count fails" }] });
    expect(countRequests.length).toBe(2);
    expect(local.input_tokens).toBeGreaterThan(0);
    expect(local.input_tokens).toBeLessThan(100);
    expect(await rowsOf(key)).toEqual([]);
  });

  test("a model the key may not use, an unknown model, a body without messages: refused as /v1/messages refuses them", async () => {
    const key = await newKey({ models: ["m"] });
    const denied = await client(key).messages.countTokens({ model: "claude", messages: [{ role: "user", content: "Hi" }] }).catch((e) => e);
    expect(denied.status).toBe(401);
    const unknown = await client(key).messages.countTokens({ model: "nope", messages: [{ role: "user", content: "Hi" }] }).catch((e) => e);
    expect([unknown.status, unknown.error.error.param]).toEqual([401, "model"]);
    const open = await newKey();
    const missing = await client(open).messages.countTokens({ model: "nope", messages: [{ role: "user", content: "Hi" }] }).catch((e) => e);
    expect([missing.status, missing.error.error.param]).toEqual([400, "model"]);
    const empty = await client(open).messages.countTokens({ model: "m", messages: [] }).catch((e) => e);
    expect([empty.status, empty.error.error.param]).toEqual([400, "messages"]);
  });
});

describe("bad tools", () => {
  test("tools that are not a list of tool definitions: a 400 naming the field on both deployment kinds, not a 500", async () => {
    const key = await newKey();
    for (const model of ["claude", "m"]) {
      for (const [tools, param] of [[[null], "tools[0]"], [[{ name: "a", input_schema: { type: "object" } }, 5], "tools[1]"], ["weather", "tools"]] as const) {
        const response = await fetch(`${on.gateway.url}/v1/messages`, {
          method: "POST", headers: { "x-api-key": key, "content-type": "application/json" },
          body: JSON.stringify({ model, max_tokens: 10, messages: [{ role: "user", content: "Hi" }], tools }),
        });
        expect(response.status).toBe(400);
        expect(((await response.json()) as any).error).toMatchObject({ type: "bad_request_error", param, code: "400" });
      }
    }
    expect(await rowsOf(key)).toEqual([]);
  });
});

describe("spend of a /v1/messages request", () => {
  const admin = (path: string, body?: unknown) =>
    fetch(`${on.gateway.url}${path}`, { method: body === undefined ? "GET" : "POST", headers: { authorization: "Bearer sk-1234", "content-type": "application/json" }, body: body === undefined ? undefined : JSON.stringify(body) }).then((r) => r.json() as any);

  test("charged to the key, its team, its user and the customer metadata.user_id names; the customer's budget refuses at the edge", async () => {
    await admin("/team/new", { team_id: "msg-team" });
    await admin("/user/new", { user_id: "msg-user" });
    await admin("/customer/new", { user_id: "msg-cust", max_budget: CACHED_COST * 1.5 });
    const key = await newKey({ team_id: "msg-team", user_id: "msg-user" });
    await client(key).messages.create({ model: "claude", max_tokens: 10, messages: [{ role: "user", content: "Hi" }], metadata: { user_id: "msg-cust" } });
    await client(key).messages.create({ model: "claude", max_tokens: 10, messages: [{ role: "user", content: "Hi" }], metadata: { user_id: "msg-cust" } });
    await until("both spend rows", async () => (await rowsOf(key)).length === 2);
    const refused = await client(key).messages.create({ model: "claude", max_tokens: 10, messages: [{ role: "user", content: "Hi" }], metadata: { user_id: "msg-cust" } }).catch((e) => e);
    expect(refused.status).toBe(400);
    await until("the spend on every holder", async () => (await admin("/customer/info?end_user_id=msg-cust")).spend > 0);
    expect((await admin("/customer/info?end_user_id=msg-cust")).spend).toBeCloseTo(2 * CACHED_COST, 12);
    expect((await admin(`/key/info?key=${key}`)).info.spend).toBeCloseTo(2 * CACHED_COST, 12);
    expect((await admin("/team/info?team_id=msg-team")).team_info.spend).toBeCloseTo(2 * CACHED_COST, 12);
  });

  test("an Anthropic error answer reaches the client with its words and status", async () => {
    const key = await newKey();
    const error = await client(key).messages.create({ model: "claude", max_tokens: 10, messages: [{ role: "user", content: "slow down" }] }).catch((e) => e);
    expect(error.status).toBe(429);
    expect(JSON.stringify(error.error)).toContain("Slow down");
    expect(error.headers.get("retry-after")).toBe("7");
  });
});

describe("streams that go wrong on an Anthropic deployment", () => {
  test("a provider silent past stream_timeout: the client gets Anthropic's error event, the slot comes back, what was used is charged", async () => {
    const key = await newKey();
    const started = Date.now();
    const error = await client(key).messages.stream({ model: "claude-quiet", max_tokens: 100, messages: [{ role: "user", content: "silent" }] }).finalMessage().catch((e) => e);
    expect(error).toBeInstanceOf(Error);
    expect(Date.now() - started).toBeLessThan(10_000);
    await until("its spend log row", async () => (await rowsOf(key)).length === 1);
    const [row] = await rowsOf(key);
    expect(row.prompt_tokens).toBe(162);
    const again = await client(key).messages.stream({ model: "claude-quiet", max_tokens: 100, messages: [{ role: "user", content: "tool" }] }).finalMessage();
    expect(again.stop_reason).toBe("tool_use");
  });

  test("a stream that opens with an error event: answered as that error, with its status", async () => {
    const key = await newKey();
    const error = await client(key).messages.stream({ model: "claude", max_tokens: 100, messages: [{ role: "user", content: "overloaded first" }] }).finalMessage().catch((e) => e);
    expect(error.status).toBe(529);
    const again = await client(key).messages.stream({ model: "claude", max_tokens: 100, messages: [{ role: "user", content: "tool" }] }).finalMessage();
    expect(again.stop_reason).toBe("tool_use");
  });
});

describe("a tool whose name is longer than OpenAI takes, on an OpenAI-compatible deployment", () => {
  // An MCP tool's name as Claude Code sends it: 83 characters, where OpenAI takes at most 64.
  const LONG = "mcp__github-enterprise-server__create_or_update_repository_file_contents_with_commit";
  const SHORT = `${LONG.slice(0, 55)}_${createHash("sha256").update(LONG).digest("hex").slice(0, 8)}`;
  const tools = [{ name: LONG, description: "Writes a file", input_schema: { type: "object" as const, properties: { path: { type: "string" } } } }];
  const history = [
    { role: "user" as const, content: "Write it" },
    { role: "assistant" as const, content: [{ type: "tool_use" as const, id: "toolu_1", name: LONG, input: { path: "a" } }] },
    { role: "user" as const, content: [{ type: "tool_result" as const, tool_use_id: "toolu_1", content: "done" }, { type: "text" as const, text: "Again" }] },
  ];

  test("the provider gets it cut as LiteLLM cuts it; the client gets its tool_use under the name it gave", async () => {
    const key = await newKey();
    upstream.set({ message: { role: "assistant", content: null, tool_calls: [{ id: "call_1", type: "function", function: { name: SHORT, arguments: '{"path":"b"}' } }] } });
    const message = await client(key).messages.create({ model: "m", max_tokens: 100, tools, tool_choice: { type: "tool", name: LONG }, messages: history });
    const sent = upstream.requests.at(-1)!.body;
    upstream.reset();
    expect(sent.tools[0].function.name).toBe(SHORT);
    expect(sent.tool_choice).toEqual({ type: "function", function: { name: SHORT } });
    expect(sent.messages[1].tool_calls[0].function.name).toBe(SHORT);
    expect(message.content as unknown).toEqual([{ type: "tool_use", id: "call_1", name: LONG, input: { path: "b" } }]);
  });

  test("stream: the tool_use block under the client's name", async () => {
    const key = await newKey();
    const chunk = (delta: Record<string, unknown>, finish: string | null = null) => ({ id: "c", object: "chat.completion.chunk", created: 1, model: "m", choices: [{ index: 0, delta, finish_reason: finish }] });
    upstream.set({
      events: [
        chunk({ role: "assistant", tool_calls: [{ index: 0, id: "call_2", type: "function", function: { name: SHORT, arguments: "" } }] }),
        chunk({ tool_calls: [{ index: 0, function: { arguments: '{"path":"c"}' } }] }),
        chunk({}, "tool_calls"),
        { id: "c", object: "chat.completion.chunk", created: 1, model: "m", choices: [], usage: { prompt_tokens: 30, completion_tokens: 8, total_tokens: 38 } },
        "[DONE]",
      ],
    });
    const final = await client(key).messages.stream({ model: "m", max_tokens: 100, tools, messages: history }).finalMessage();
    upstream.reset();
    expect(final.stop_reason).toBe("tool_use");
    expect(final.content as unknown).toEqual([{ type: "tool_use", id: "call_2", name: LONG, input: { path: "c" } }]);
    expect(final.usage).toMatchObject({ input_tokens: 30, output_tokens: 8 });
  });
});

describe("the SDK's beta calls (`?beta=true`, as Claude Code sends them)", () => {
  test("beta.messages.create, .stream and .countTokens on both deployment kinds", async () => {
    const key = await newKey();
    for (const model of ["claude", "m"]) {
      const message = await client(key).beta.messages.create({ model, max_tokens: 100, messages: [{ role: "user", content: "Hi" }], betas: ["interleaved-thinking-2025-05-14"] });
      expect(message.type).toBe("message");
      const final = await client(key).beta.messages.stream({ model, max_tokens: 100, messages: [{ role: "user", content: "tool" }] }).finalMessage();
      expect(final.stop_reason).not.toBeNull();
      const counted = await client(key).beta.messages.countTokens({ model, messages: [{ role: "user", content: "Hi" }] });
      expect(counted.input_tokens).toBeGreaterThan(0);
    }
  });
});

describe("an OpenAI reasoning model behind /v1/messages", () => {
  test("is sent max_completion_tokens, which it takes, not max_tokens, which it refuses", async () => {
    const key = await newKey();
    await client(key).messages.create({ model: "reasoner", max_tokens: 300, messages: [{ role: "user", content: "Hi" }] });
    const sent = upstream.requests.at(-1)!.body;
    expect(sent.max_completion_tokens).toBe(300);
    expect(sent.max_tokens).toBeUndefined();
    await client(key).messages.create({ model: "m", max_tokens: 300, messages: [{ role: "user", content: "Hi" }] });
    expect(upstream.requests.at(-1)!.body.max_tokens).toBe(300);
  });
});

describe("a client leaving with the SDK's abort()", () => {
  test("on either deployment kind, the one parallel slot comes back for the next request", async () => {
    const key = await newKey();
    for (const [model, content] of [["claude-quiet", "silent"], ["m", "Hi"]] as const) {
      upstream.set({ chunks: 10, chunkDelayMs: 200 });
      const stream = client(key).messages.stream({ model, max_tokens: 100, messages: [{ role: "user", content }] });
      await new Promise<void>((started) => stream.on("streamEvent", (e) => e.type === "content_block_start" && started()));
      stream.abort();
      await stream.done().catch(() => {});
      upstream.reset();
      await until(`${model}'s slot`, async () => {
        const next = await client(key).messages.create({ model, max_tokens: 10, messages: [{ role: "user", content: "Hi" }] }).catch((e) => e);
        return next?.type === "message";
      });
    }
  });
});

describe("an Anthropic deployment answering a stream request whole (JSON)", () => {
  test("/v1/messages: the Anthropic SDK still gets a stream, every block of the answer in it, charged as the message says", async () => {
    const key = await newKey();
    const events: string[] = [];
    const stream = client(key).messages.stream({ model: "claude", max_tokens: 100, messages: [{ role: "user", content: "answers whole" }] });
    stream.on("streamEvent", (event) => events.push(event.type));
    const final = await stream.finalMessage();
    expect(events[0]).toBe("message_start");
    expect(events.at(-1)).toBe("message_stop");
    expect(final.model).toBe("claude");
    expect(final.stop_reason).toBe("tool_use");
    expect(final.content).toEqual([
      { type: "thinking", thinking: "Paris is a city", signature: "sig" } as any,
      { type: "text", text: "Let me look.", citations: null } as any,
      { type: "tool_use", id: "toolu_9", name: "weather", input: { city: "Paris" } } as any,
    ].map((block) => expect.objectContaining(Object.fromEntries(Object.entries(block).filter(([, v]) => v !== null)))));
    expect(final.usage).toMatchObject({ input_tokens: 12, output_tokens: 7 });
    await until("its spend log row", async () => (await rowsOf(key)).length === 1);
    const [row] = await rowsOf(key);
    expect(row.status).toBe("success");
    expect(row.spend).toBeCloseTo(CACHED_COST, 12);
  });

  test("/v1/chat/completions: the OpenAI SDK still gets a stream, the text, the tool call and the usage in it", async () => {
    const key = await newKey();
    const openai = new OpenAI({ apiKey: key, baseURL: `${on.gateway.url}/v1`, maxRetries: 0 });
    const stream = await openai.chat.completions.create({
      model: "claude", max_tokens: 100, stream: true, stream_options: { include_usage: true }, messages: [{ role: "user", content: "answers whole" }],
    });
    let text = "";
    let args = "";
    let finish: string | null = null;
    let usage: OpenAI.CompletionUsage | undefined;
    for await (const chunk of stream) {
      const choice = chunk.choices[0];
      text += choice?.delta.content ?? "";
      args += choice?.delta.tool_calls?.map((call) => call.function?.arguments ?? "").join("") ?? "";
      finish = choice?.finish_reason ?? finish;
      usage = chunk.usage ?? usage;
    }
    expect(text).toBe("Let me look.");
    expect(JSON.parse(args)).toEqual({ city: "Paris" });
    expect(finish).toBe("tool_calls");
    expect(usage).toMatchObject({ completion_tokens: 7, prompt_tokens: 162 });
    await until("its spend log row", async () => (await rowsOf(key)).length === 1);
    expect((await rowsOf(key))[0].spend).toBeCloseTo(CACHED_COST, 12);
  });
});
