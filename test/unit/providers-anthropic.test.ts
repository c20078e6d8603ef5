import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createProviders } from "../../src/providers";
import { fromAnthropic, toAnthropic, translateStream } from "../../src/providers/anthropic";
import type { Deployment, Route, UpstreamResult } from "../../src/providers/types";

const KEY = "sk-ant-test-secret-99";
const encoder = new TextEncoder();

let server: ReturnType<typeof Bun.serve>;
let seen: { url: string; headers: Headers; body: any } | null = null;
let answer: () => Response = () => Response.json({});

beforeAll(() => {
  server = Bun.serve({
    port: 0,
    async fetch(request) {
      seen = { url: request.url, headers: request.headers, body: await request.json() };
      return answer();
    },
  });
});
afterAll(() => server.stop(true));

function deployment(params: Record<string, unknown> = {}): Deployment {
  return { id: "claude#0", modelName: "claude", provider: "anthropic", upstreamModel: "claude-sonnet-4-5", params: { api_base: `http://127.0.0.1:${server.port}/v1/`, api_key: KEY, ...params }, modelInfo: {} };
}

function send(body: Record<string, unknown>, route: Route = "chat", d = deployment()): Promise<UpstreamResult> {
  seen = null;
  return createProviders({}).forDeployment(d).send({ route, deployment: d, body, rawBody: JSON.stringify(body), stream: body.stream === true, signal: new AbortController().signal });
}

/** A realistic Messages stream: a text block, a tool call, and running usage totals. */
function transcript(): string {
  const events: Record<string, unknown>[] = [
    { type: "message_start", message: { id: "msg_01", type: "message", role: "assistant", model: "claude-sonnet-4-5", content: [], stop_reason: null, usage: { input_tokens: 25, cache_read_input_tokens: 5, output_tokens: 1 } } },
    { type: "content_block_start", index: 0, content_block: { type: "text", text: "" } },
    { type: "ping" },
    { type: "content_block_delta", index: 0, delta: { type: "text_delta", text: "Héllo" } },
    { type: "content_block_delta", index: 0, delta: { type: "text_delta", text: " wörld ✓" } },
    { type: "content_block_stop", index: 0 },
    { type: "content_block_start", index: 1, content_block: { type: "tool_use", id: "toolu_1", name: "get_weather", input: {} } },
    { type: "content_block_delta", index: 1, delta: { type: "input_json_delta", partial_json: '{"city":' } },
    { type: "content_block_delta", index: 1, delta: { type: "input_json_delta", partial_json: '"Paris"}' } },
    { type: "content_block_stop", index: 1 },
    { type: "message_delta", delta: { stop_reason: "tool_use", stop_sequence: null }, usage: { output_tokens: 17 } },
    { type: "message_stop" },
  ];
  return events.map((e) => `event: ${e.type}\r\ndata: ${JSON.stringify(e)}\r\n\r\n`).join("");
}

/** The bytes in pieces of `size`, cutting through lines, JSON and multi-byte characters alike. */
function pieces(bytes: Uint8Array, size: number): ReadableStream<Uint8Array> {
  return new ReadableStream({
    start(controller) {
      for (let i = 0; i < bytes.length; i += size) controller.enqueue(bytes.slice(i, i + size));
      controller.close();
    },
  });
}

function chunksOf(sse: string): any[] {
  return sse.split("\n\n").filter(Boolean).map((event) => {
    expect(event.startsWith("data: ")).toBe(true);
    const data = event.slice(6);
    return data === "[DONE]" ? data : JSON.parse(data);
  });
}

describe("request translation", () => {
  test("system, stop, sampling, user, images, tools and tool results", () => {
    const out = toAnthropic({
      model: "claude", max_completion_tokens: 300, stop: ["END"], temperature: 0.3, top_p: 0.9, user: "cust-1", stream: true,
      tools: [{ type: "function", function: { name: "get_weather", description: "Weather", parameters: { type: "object", properties: { city: { type: "string" } } } } }],
      tool_choice: "required", parallel_tool_calls: false,
      messages: [
        { role: "system", content: "Be brief." },
        { role: "developer", content: [{ type: "text", text: "Use metric." }] },
        { role: "user", content: [{ type: "text", text: "Look:" }, { type: "image_url", image_url: { url: "data:image/png;base64,iVBORw0KGgo=" } }, { type: "image_url", image_url: { url: "https://x.test/a.jpg" } }] },
        { role: "assistant", content: null, tool_calls: [{ id: "call_1", type: "function", function: { name: "get_weather", arguments: '{"city":"Paris"}' } }] },
        { role: "tool", tool_call_id: "call_1", content: "21C" },
        { role: "user", content: "Thanks" },
      ],
    }, "claude-sonnet-4-5");
    expect(out).toEqual({
      model: "claude-sonnet-4-5", max_tokens: 300, system: "Be brief.\n\nUse metric.", stop_sequences: ["END"], temperature: 0.3, top_p: 0.9, stream: true,
      metadata: { user_id: "cust-1" },
      tools: [{ name: "get_weather", description: "Weather", input_schema: { type: "object", properties: { city: { type: "string" } } } }],
      tool_choice: { type: "any", disable_parallel_tool_use: true },
      messages: [
        { role: "user", content: [{ type: "text", text: "Look:" }, { type: "image", source: { type: "base64", media_type: "image/png", data: "iVBORw0KGgo=" } }, { type: "image", source: { type: "url", url: "https://x.test/a.jpg" } }] },
        { role: "assistant", content: [{ type: "tool_use", id: "call_1", name: "get_weather", input: { city: "Paris" } }] },
        // A tool result and the next user message are one user turn, as Anthropic requires.
        { role: "user", content: [{ type: "tool_result", tool_use_id: "call_1", content: "21C" }, { type: "text", text: "Thanks" }] },
      ],
    });
  });

  test("max_tokens defaults to 4096; a single stop string becomes a list; a named tool choice", () => {
    const out = toAnthropic({ messages: [{ role: "user", content: "hi" }], stop: "###", tools: [{ type: "function", function: { name: "f" } }], tool_choice: { type: "function", function: { name: "f" } } }, "m");
    expect(out.max_tokens).toBe(4096);
    expect(out.stop_sequences).toEqual(["###"]);
    expect(out.tool_choice).toEqual({ type: "tool", name: "f" });
    expect(out.tools).toEqual([{ name: "f", input_schema: { type: "object", properties: {} } }]);
  });
  test("prompt-cache markers stay where the client put them: parts, whole messages, system blocks and tools", () => {
    const cache = { type: "ephemeral" };
    const out = toAnthropic({
      tools: [{ type: "function", function: { name: "f" }, cache_control: cache }],
      messages: [
        { role: "system", content: [{ type: "text", text: "Long rules.", cache_control: cache }, { type: "text", text: "Be brief." }] },
        { role: "user", content: [{ type: "text", text: "Doc", cache_control: cache }, { type: "text", text: "Q1" }] },
        { role: "assistant", content: "A1" },
        { role: "user", content: "Q2", cache_control: cache },
      ],
    }, "m");
    expect(out.system).toEqual([{ type: "text", text: "Long rules.", cache_control: cache }, { type: "text", text: "Be brief." }]);
    expect(out.tools).toEqual([{ name: "f", input_schema: { type: "object", properties: {} }, cache_control: cache }]);
    expect(out.messages).toEqual([
      { role: "user", content: [{ type: "text", text: "Doc", cache_control: cache }, { type: "text", text: "Q1" }] },
      { role: "assistant", content: [{ type: "text", text: "A1" }] },
      { role: "user", content: [{ type: "text", text: "Q2", cache_control: cache }] },
    ]);
    // Without a marker the system prompt stays one string.
    expect(toAnthropic({ messages: [{ role: "system", content: [{ type: "text", text: "a" }] }, { role: "user", content: "b" }] }, "m").system).toBe("a");
  });

  test("reasoning_effort becomes a thinking budget, with room left for the answer; thinking blocks go back first", () => {
    const out = toAnthropic({ reasoning_effort: "medium", messages: [{ role: "user", content: "hi" }] }, "m");
    expect(out.thinking).toEqual({ type: "enabled", budget_tokens: 2048 });
    expect(out.max_tokens).toBe(2048 + 4096);
    expect(toAnthropic({ reasoning_effort: "high", max_tokens: 9000, messages: [] }, "m")).toMatchObject({ thinking: { budget_tokens: 4096 }, max_tokens: 9000 });
    expect(toAnthropic({ thinking: { type: "enabled", budget_tokens: 5000 }, messages: [] }, "m").thinking).toEqual({ type: "enabled", budget_tokens: 5000 });
    expect(toAnthropic({ reasoning_effort: "none", messages: [] }, "m").thinking).toBeUndefined();
    const block = { type: "thinking", thinking: "Let me see", signature: "sig" };
    const turn = toAnthropic({ messages: [{ role: "assistant", content: "ok", thinking_blocks: [block] }] }, "m").messages[0];
    expect(turn.content).toEqual([block, { type: "text", text: "ok" }]);
  });

  test("response_format becomes one forced answer tool (not forced when thinking)", () => {
    const schema = { type: "object", properties: { city: { type: "string" } }, required: ["city"] };
    const out = toAnthropic({ response_format: { type: "json_schema", json_schema: { name: "place", schema } }, messages: [{ role: "user", content: "where?" }] }, "m");
    expect(out.tools).toEqual([{ name: "json_tool_call", description: expect.any(String), input_schema: schema }]);
    expect(out.tool_choice).toEqual({ type: "tool", name: "json_tool_call" });
    expect(toAnthropic({ response_format: { type: "json_object" }, reasoning_effort: "low", messages: [] }, "m")).toMatchObject({ tools: [{ input_schema: { type: "object" } }], tool_choice: { type: "auto" } });
    expect(toAnthropic({ response_format: { type: "text" }, messages: [] }, "m").tools).toBeUndefined();
  });
});

describe("response translation", () => {
  test("text and tool calls, finish reasons, usage with cache tokens", () => {
    const out = fromAnthropic({
      id: "msg_1", content: [{ type: "text", text: "Let me check." }, { type: "tool_use", id: "toolu_1", name: "get_weather", input: { city: "Paris" } }],
      stop_reason: "tool_use", usage: { input_tokens: 10, cache_read_input_tokens: 4, cache_creation_input_tokens: 2, output_tokens: 7 },
    }, "claude", 1700000000);
    expect(out).toEqual({
      id: "msg_1", object: "chat.completion", created: 1700000000, model: "claude",
      choices: [{ index: 0, finish_reason: "tool_calls", message: { role: "assistant", content: "Let me check.", tool_calls: [{ id: "toolu_1", type: "function", function: { name: "get_weather", arguments: '{"city":"Paris"}' } }] } }],
      usage: { prompt_tokens: 16, completion_tokens: 7, total_tokens: 23, prompt_tokens_details: { cached_tokens: 4 }, cache_creation_input_tokens: 2, cache_read_input_tokens: 4 },
    });
    for (const [reason, finish] of [["end_turn", "stop"], ["stop_sequence", "stop"], ["max_tokens", "length"]]) {
      expect(fromAnthropic({ content: [], stop_reason: reason }, "m").choices[0].finish_reason).toBe(finish);
    }
  });

  test("thinking as reasoning_content and thinking_blocks; an answer tool's input as the content", () => {
    const thought = { type: "thinking", thinking: "Paris is the capital.", signature: "sig1" };
    const out = fromAnthropic({ content: [thought, { type: "text", text: "Paris" }], stop_reason: "end_turn" }, "m");
    expect(out.choices[0].message).toEqual({ role: "assistant", content: "Paris", reasoning_content: "Paris is the capital.", thinking_blocks: [thought] });
    const json = fromAnthropic({ content: [{ type: "tool_use", id: "t", name: "json_tool_call", input: { city: "Paris" } }], stop_reason: "tool_use" }, "m", 1, true);
    expect(json.choices[0]).toEqual({ index: 0, finish_reason: "stop", message: { role: "assistant", content: '{"city":"Paris"}' } });
    // Without a response_format a tool of that name is an ordinary tool call.
    expect(fromAnthropic({ content: [{ type: "tool_use", id: "t", name: "json_tool_call", input: {} }], stop_reason: "tool_use" }, "m").choices[0].finish_reason).toBe("tool_calls");
  });
});

describe("stream translation", () => {
  test("thinking deltas and an answer tool's input stream as reasoning_content and content", async () => {
    const events = [
      { type: "message_start", message: { id: "m", usage: { input_tokens: 3 } } },
      { type: "content_block_start", index: 0, content_block: { type: "thinking", thinking: "" } },
      { type: "content_block_delta", index: 0, delta: { type: "thinking_delta", thinking: "Hmm." } },
      { type: "content_block_delta", index: 0, delta: { type: "signature_delta", signature: "sig" } },
      { type: "content_block_start", index: 1, content_block: { type: "tool_use", id: "t", name: "json_tool_call", input: {} } },
      { type: "content_block_delta", index: 1, delta: { type: "input_json_delta", partial_json: '{"city":' } },
      { type: "content_block_delta", index: 1, delta: { type: "input_json_delta", partial_json: '"Paris"}' } },
      { type: "message_delta", delta: { stop_reason: "tool_use" }, usage: { output_tokens: 9 } },
      { type: "message_stop" },
    ];
    const sse = encoder.encode(events.map((e) => `data: ${JSON.stringify(e)}\n\n`).join(""));
    const data = chunksOf(await new Response(translateStream(pieces(sse, 5), "claude", true)).text()).slice(0, -1);
    const deltas = data.map((c) => c.choices[0]?.delta ?? {});
    expect(deltas.map((d) => d.reasoning_content ?? "").join("")).toBe("Hmm.");
    expect(deltas.flatMap((d) => d.thinking_blocks ?? []).find((b) => b.signature)?.signature).toBe("sig");
    expect(deltas.map((d) => d.content ?? "").join("")).toBe('{"city":"Paris"}');
    expect(deltas.some((d) => d.tool_calls)).toBe(false);
    expect(data.at(-2).choices[0].finish_reason).toBe("stop");
  });

  test("a transcript cut at every awkward boundary gives the same OpenAI chunks, usage and [DONE] last", async () => {
    const bytes = encoder.encode(transcript());
    const reference = await new Response(translateStream(pieces(bytes, bytes.length), "claude")).text();
    // The transcript's CRLF line ends (which a piece boundary may separate), and the same events with LF, and with CR.
    const lf = encoder.encode(transcript().replaceAll("\r\n", "\n"));
    const cr = encoder.encode(transcript().replaceAll("\r\n", "\r"));
    for (const size of [1, 2, 3, 7, 64]) {
      for (const source of [bytes, lf, cr]) {
        const text = await new Response(translateStream(pieces(source, size), "claude")).text();
        expect(text.replace(/"created":\d+/g, "")).toBe(reference.replace(/"created":\d+/g, ""));
      }
    }
    const chunks = chunksOf(reference);
    expect(chunks.at(-1)).toBe("[DONE]");
    const data = chunks.slice(0, -1);
    for (const c of data) expect(c).toMatchObject({ id: "msg_01", object: "chat.completion.chunk", model: "claude" });
    expect(data[0].choices[0].delta).toEqual({ role: "assistant", content: "" });
    expect(data.map((c) => c.choices[0]?.delta?.content ?? "").join("")).toBe("Héllo wörld ✓");
    const toolDeltas = data.flatMap((c) => c.choices[0]?.delta?.tool_calls ?? []);
    expect(toolDeltas[0]).toEqual({ index: 0, id: "toolu_1", type: "function", function: { name: "get_weather", arguments: "" } });
    expect(toolDeltas.map((t) => t.function.arguments).join("")).toBe('{"city":"Paris"}');
    expect(data.at(-2).choices[0].finish_reason).toBe("tool_calls");
    expect(data.at(-1)).toMatchObject({ choices: [], usage: { prompt_tokens: 30, completion_tokens: 17, total_tokens: 47, prompt_tokens_details: { cached_tokens: 5 } } });
  });

  test("a last event the provider did not end with its blank line still ends the answer", async () => {
    const unended = encoder.encode(transcript().replace(/[\r\n]+$/, ""));
    const reference = await new Response(translateStream(pieces(encoder.encode(transcript()), 64), "claude")).text();
    const text = await new Response(translateStream(pieces(unended, 7), "claude")).text();
    expect(text.replace(/"created":\d+/g, "")).toBe(reference.replace(/"created":\d+/g, ""));
  });

  test("message_delta counts are running totals: a null or a zero there leaves the prompt message_start counted", async () => {
    for (const usage of [{ input_tokens: null, cache_read_input_tokens: null, output_tokens: 17 }, { input_tokens: 0, cache_read_input_tokens: 0, output_tokens: 17 }]) {
      const text = transcript().replace('"usage":{"output_tokens":17}', `"usage":${JSON.stringify(usage)}`);
      expect(text).toContain(JSON.stringify(usage));
      const chunks = chunksOf(await new Response(translateStream(pieces(encoder.encode(text), 64), "claude")).text());
      expect(chunks.at(-2)).toMatchObject({ usage: { prompt_tokens: 30, completion_tokens: 17, total_tokens: 47, prompt_tokens_details: { cached_tokens: 5 } } });
    }
  });

  test("each chunk is handed over as soon as its event arrives", async () => {
    let feed!: ReadableStreamDefaultController<Uint8Array>;
    const source = new ReadableStream<Uint8Array>({ start: (c) => void (feed = c) });
    const reader = translateStream(source, "claude").getReader();
    const decoder = new TextDecoder();
    feed.enqueue(encoder.encode('event: message_start\ndata: {"type":"message_start","message":{"id":"m","usage":{"input_tokens":3}}}\n\n'));
    expect(decoder.decode((await reader.read()).value)).toContain('"role":"assistant"');
    feed.enqueue(encoder.encode('data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"first"}}\n\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_del'));
    expect(decoder.decode((await reader.read()).value)).toContain('"content":"first"');
    await reader.cancel();
  });

  test("an event that grows past 16 MB without ending fails the stream, and no more is read", async () => {
    const piece = encoder.encode("x".repeat(1024 * 1024));
    let sent = 0;
    let cancelled = false;
    const endless = new ReadableStream<Uint8Array>({
      pull(c) {
        c.enqueue(sent++ === 0 ? encoder.encode('event: message_start\ndata: {"type":"message_start","message":{"id":"m","usage":{"input_tokens":3}}}\n\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"') : piece);
        if (sent > 40) c.close();
      },
      cancel() {
        cancelled = true;
      },
    }, { highWaterMark: 0 });
    const reader = translateStream(endless, "claude").getReader();
    expect(new TextDecoder().decode((await reader.read()).value)).toContain('"role":"assistant"');
    await expect(reader.read()).rejects.toThrow("provider sent a stream event over 16 MB without ending it");
    // The opening piece and 16 of 1 MB: read no further.
    expect(sent).toBe(17);
    expect(cancelled).toBe(true);
  });

  test("an error event or a stream cut before message_stop fails the stream", async () => {
    const error = 'event: message_start\ndata: {"type":"message_start","message":{"id":"m","usage":{"input_tokens":3}}}\n\nevent: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n';
    await expect(new Response(translateStream(pieces(encoder.encode(error), 10), "claude")).text()).rejects.toThrow("provider error (overloaded_error): Overloaded");
    const cut = 'event: message_start\ndata: {"type":"message_start","message":{"id":"m","usage":{"input_tokens":3}}}\n\n';
    await expect(new Response(translateStream(pieces(encoder.encode(cut), 10), "claude")).text()).rejects.toThrow("ended before message_stop");
  });
});

describe("over HTTP", () => {
  test("URL, headers and a translated answer named after the client's model", async () => {
    answer = () => Response.json({ id: "msg_9", type: "message", role: "assistant", content: [{ type: "text", text: "Bonjour" }], stop_reason: "end_turn", usage: { input_tokens: 9, output_tokens: 2 } });
    const result = await send({ model: "claude", messages: [{ role: "user", content: "hi" }], max_tokens: 20 });
    expect(seen!.url).toBe(`http://127.0.0.1:${server.port}/v1/messages`);
    expect(seen!.headers.get("x-api-key")).toBe(KEY);
    expect(seen!.headers.get("anthropic-version")).toBe("2023-06-01");
    expect(seen!.body).toEqual({ model: "claude-sonnet-4-5", max_tokens: 20, messages: [{ role: "user", content: [{ type: "text", text: "hi" }] }] });
    expect(result).toMatchObject({ kind: "json", status: 200, usage: { prompt_tokens: 9, completion_tokens: 2, total_tokens: 11, cached_tokens: 0 } });
    if (result.kind === "json") expect(JSON.parse(result.body)).toMatchObject({ object: "chat.completion", model: "claude", choices: [{ message: { content: "Bonjour" }, finish_reason: "stop" }] });
  });

  test("a response_format request is answered with the answer tool's input as content", async () => {
    answer = () => Response.json({ id: "msg_j", type: "message", content: [{ type: "tool_use", id: "t", name: "json_tool_call", input: { ok: true } }], stop_reason: "tool_use", usage: { input_tokens: 5, output_tokens: 4 } });
    const result = await send({ model: "claude", response_format: { type: "json_object" }, messages: [{ role: "user", content: "json please" }] });
    expect(seen!.body.tool_choice).toEqual({ type: "tool", name: "json_tool_call" });
    expect(result.kind).toBe("json");
    if (result.kind === "json") expect(JSON.parse(result.body).choices[0]).toMatchObject({ message: { content: '{"ok":true}' }, finish_reason: "stop" });
  });

  test("a streamed answer comes back as OpenAI SSE", async () => {
    answer = () => new Response(transcript(), { headers: { "content-type": "text/event-stream" } });
    const result = await send({ model: "claude", stream: true, messages: [{ role: "user", content: "hi" }] });
    expect(seen!.body.stream).toBe(true);
    expect(result.kind).toBe("stream");
    if (result.kind === "stream") {
      const chunks = chunksOf(await new Response(result.stream).text());
      expect(chunks.at(-1)).toBe("[DONE]");
      expect(chunks.at(-2).usage.total_tokens).toBe(47);
    }
  });

  test("a stream Anthropic opens with an error event is that error, as its error body would be, so it can be retried", async () => {
    answer = () => new Response(`event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded, ${KEY}"}}\n\n`, { headers: { "content-type": "text/event-stream" } });
    const result = await send({ model: "claude", stream: true, messages: [{ role: "user", content: "hi" }] });
    // Anthropic answers overloaded_error 529 as a body: the stream's is the same status, retried as it is.
    expect(result).toMatchObject({ kind: "error", status: 529, message: "Overloaded, [redacted]", type: "overloaded_error" });
    answer = () => new Response(`event: error\ndata: {"type":"error","error":{"type":"rate_limit_error","message":"Slow down"}}\n\n`, { headers: { "content-type": "text/event-stream" } });
    expect(await send({ model: "claude", stream: true, messages: [{ role: "user", content: "hi" }] })).toMatchObject({ kind: "error", status: 429, type: "rate_limit_error" });
  });

  test("an error Anthropic answers 200 with has the status its type names, as the same error with its own status", async () => {
    for (const [type, status] of [["invalid_request_error", 400], ["authentication_error", 401], ["permission_error", 403], ["not_found_error", 404], ["request_too_large", 413], ["rate_limit_error", 429], ["overloaded_error", 529], ["api_error", 502]] as const) {
      answer = () => Response.json({ type: "error", error: { type, message: "no" } });
      expect(await send({ model: "claude", messages: [{ role: "user", content: "hi" }] })).toMatchObject({ kind: "error", status, type, message: "no" });
    }
  });

  test("Anthropic error bodies become error results with their message; completions and embeddings are refused", async () => {
    answer = () => Response.json({ type: "error", error: { type: "overloaded_error", message: "Overloaded" } }, { status: 529 });
    expect(await send({ model: "claude", messages: [{ role: "user", content: "hi" }] })).toMatchObject({ kind: "error", status: 529, message: "Overloaded", type: "overloaded_error" });
    answer = () => Response.json({ type: "error", error: { type: "authentication_error", message: `invalid x-api-key ${KEY}` } }, { status: 401 });
    expect(JSON.stringify(await send({ model: "claude", messages: [] }))).not.toContain(KEY);
    for (const route of ["completions", "embeddings"] as const) {
      expect(await send({ model: "claude", prompt: "x", input: "x" }, route)).toMatchObject({ kind: "error", status: 400, message: expect.stringContaining("not supported by provider anthropic") });
    }
    // More than one choice is refused, not answered with one.
    expect(await send({ model: "claude", n: 2, messages: [{ role: "user", content: "hi" }] })).toMatchObject({ kind: "error", status: 400, param: "n" });
    expect(seen).toBeNull();
  });
});
