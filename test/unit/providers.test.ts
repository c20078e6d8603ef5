import { describe, expect, test } from "bun:test";
import { fromAnthropic, toAnthropic, translateStream } from "../../src/providers/anthropic";
import { createProviders } from "../../src/providers";
import { upstreamBody } from "../../src/providers/openai";
import type { Deployment, UpstreamCall } from "../../src/providers/types";

const deployment = (provider: string, upstreamModel: string, params: Record<string, unknown> = {}): Deployment => ({
  id: "d#0", modelName: "public", provider, upstreamModel, params, modelInfo: {},
});

function call(body: Record<string, unknown>, d: Deployment, stream = false): UpstreamCall {
  return { route: "chat", deployment: d, body, rawBody: JSON.stringify(body), stream, signal: new AbortController().signal };
}

describe("OpenAI-compatible bodies", () => {
  test("the client's bytes go through untouched when nothing has to change", () => {
    const raw = '{"model":"m","messages":[],"weird_field":{"keep":[1,2]}}';
    expect(upstreamBody({ ...call(JSON.parse(raw), deployment("openai", "m")), rawBody: raw })).toBe(raw);
  });

  test("streams ask for usage; a renamed model is replaced", () => {
    const body = { model: "public", messages: [], stream: true, stream_options: { foo: 1 } };
    const sent = JSON.parse(upstreamBody(call(body, deployment("openai", "upstream-name"), true)));
    expect(sent.model).toBe("upstream-name");
    expect(sent.stream_options).toEqual({ foo: 1, include_usage: true });
    const same = { model: "m", messages: [], stream: true };
    expect(JSON.parse(upstreamBody(call(same, deployment("openai", "m"), true))).stream_options).toEqual({ include_usage: true });
  });

  test("unknown providers are refused with the supported list", () => {
    expect(() => createProviders().forDeployment(deployment("bogus", "x"))).toThrow(/supported/);
  });
});

describe("Anthropic translation", () => {
  test("OpenAI chat → Anthropic messages", () => {
    const translated = toAnthropic({
      model: "claude", max_tokens: 50, stop: "END", temperature: 0.2, user: "u1",
      messages: [{ role: "system", content: "be brief" }, { role: "user", content: [{ type: "text", text: "hi" }] }, { role: "assistant", content: "hello" }],
    }, "claude-3-5-sonnet-latest");
    expect(translated).toEqual({
      model: "claude-3-5-sonnet-latest", max_tokens: 50, system: "be brief", stop_sequences: ["END"], temperature: 0.2, metadata: { user_id: "u1" },
      messages: [{ role: "user", content: [{ type: "text", text: "hi" }] }, { role: "assistant", content: "hello" }],
    });
  });

  test("Anthropic message → OpenAI chat.completion with usage", () => {
    const out = fromAnthropic({ id: "msg_1", content: [{ type: "text", text: "Hi!" }], stop_reason: "max_tokens", usage: { input_tokens: 12, output_tokens: 3 } }, "public");
    expect(out.choices[0].message.content).toBe("Hi!");
    expect(out.choices[0].finish_reason).toBe("length");
    expect(out.usage).toMatchObject({ prompt_tokens: 12, completion_tokens: 3, total_tokens: 15 });
  });

  test("a stream split at awkward byte boundaries becomes OpenAI chunks, usage last", async () => {
    const events = [
      { type: "message_start", message: { id: "msg_1", usage: { input_tokens: 7, output_tokens: 1 } } },
      { type: "content_block_start", index: 0, content_block: { type: "text", text: "" } },
      { type: "content_block_delta", index: 0, delta: { type: "text_delta", text: "Hel" } },
      { type: "content_block_delta", index: 0, delta: { type: "text_delta", text: "lo ✓" } },
      { type: "content_block_stop", index: 0 },
      { type: "message_delta", delta: { stop_reason: "end_turn" }, usage: { output_tokens: 4 } },
      { type: "message_stop" },
    ];
    const transcript = new TextEncoder().encode(events.map((e) => `event: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`).join(""));
    const source = new ReadableStream<Uint8Array>({
      start(controller) {
        for (let i = 0; i < transcript.length; i += 7) controller.enqueue(transcript.slice(i, i + 7));
        controller.close();
      },
    });
    const text = await new Response(translateStream(source, "public")).text();
    const chunks = text.split("\n\n").filter(Boolean).map((line) => line.slice(6));
    expect(chunks.at(-1)).toBe("[DONE]");
    const parsed = chunks.slice(0, -1).map((c) => JSON.parse(c));
    expect(parsed.map((c) => c.choices[0]?.delta?.content ?? "").join("")).toBe("Hello ✓");
    expect(parsed.at(-1).usage).toEqual({ prompt_tokens: 7, completion_tokens: 4, total_tokens: 11 });
    expect(parsed.find((c) => c.choices[0]?.finish_reason)?.choices[0].finish_reason).toBe("stop");
  });
});

describe("mock provider", () => {
  test("answers offline with usage, streams with a usage chunk when asked", async () => {
    const mock = createProviders().forDeployment(deployment("mock", "x", { mock_response: "one two three" }));
    const json = await mock.send(call({ model: "public", messages: [{ role: "user", content: "hi" }] }, deployment("mock", "x", { mock_response: "one two three" })));
    expect(json.kind).toBe("json");
    if (json.kind === "json") expect(json.usage!.completion_tokens).toBeGreaterThan(0);
    const streamed = await mock.send(call({ model: "public", messages: [], stream: true, stream_options: { include_usage: true } }, deployment("mock", "x", { mock_response: "one two three" }), true));
    expect(streamed.kind).toBe("stream");
    if (streamed.kind === "stream") {
      const text = await new Response(streamed.stream).text();
      expect(text).toContain('"usage"');
      expect(text.trim().endsWith("data: [DONE]")).toBe(true);
    }
  });
});

describe("Azure", () => {
  test("deployment URL, api-version and api-key header", async () => {
    let seen: { url: string; key: string | null } | null = null;
    const server = Bun.serve({
      port: 0,
      fetch(request) {
        seen = { url: request.url, key: request.headers.get("api-key") };
        return Response.json({ choices: [], usage: { prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 } });
      },
    });
    const d = deployment("azure", "my-deployment", { api_base: `http://127.0.0.1:${server.port}/`, api_key: "azure-secret", api_version: "2024-02-01" });
    const result = await createProviders().forDeployment(d).send(call({ model: "public", messages: [] }, d));
    const port = server.port;
    server.stop(true);
    expect(result.kind).toBe("json");
    expect(seen!.url).toBe(`http://127.0.0.1:${port}/openai/deployments/my-deployment/chat/completions?api-version=2024-02-01`);
    expect(seen!.key).toBe("azure-secret");
  });
});
