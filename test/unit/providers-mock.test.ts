import { describe, expect, test } from "bun:test";
import { createProviders } from "../../src/providers";
import type { Deployment, Route, UpstreamResult } from "../../src/providers/types";
import { countTextTokens } from "../../src/tokens";

function deployment(params: Record<string, unknown> = {}): Deployment {
  return { id: "mock#0", modelName: "fake", provider: "mock", upstreamModel: "anything", params, modelInfo: {} };
}

function send(body: Record<string, unknown>, route: Route = "chat", params: Record<string, unknown> = {}, signal = new AbortController().signal): Promise<UpstreamResult> {
  const d = deployment(params);
  const stream = body.stream === true && route !== "embeddings";
  return createProviders({}).forDeployment(d).send({ route, deployment: d, body, rawBody: JSON.stringify(body), stream, signal });
}

function events(sse: string): any[] {
  return sse.split("\n\n").filter(Boolean).map((e) => (e === "data: [DONE]" ? "[DONE]" : JSON.parse(e.slice(6))));
}

const question = { model: "fake", messages: [{ role: "user", content: "What is the capital of France?" }] };

describe("mock provider", () => {
  test("chat answers with the configured text, under the client's model name, with counted usage", async () => {
    const result = await send(question, "chat", { mock_response: "Paris is the capital." });
    expect(result.kind).toBe("json");
    if (result.kind !== "json") return;
    const body = JSON.parse(result.body);
    expect(body).toMatchObject({ object: "chat.completion", model: "fake", choices: [{ message: { role: "assistant", content: "Paris is the capital." }, finish_reason: "stop" }] });
    expect(body.id).toStartWith("chatcmpl-");
    expect(result.usage!.completion_tokens).toBe(countTextTokens("Paris is the capital."));
    expect(result.usage!.prompt_tokens).toBeGreaterThan(countTextTokens("What is the capital of France?"));
    expect(body.usage).toEqual(result.usage);
  });

  test("a longer prompt costs more prompt tokens", async () => {
    const short = await send(question);
    const long = await send({ model: "fake", messages: [{ role: "user", content: "What is the capital of France? ".repeat(20) }] });
    if (short.kind !== "json" || long.kind !== "json") throw new Error("expected answers");
    expect(long.usage!.prompt_tokens).toBeGreaterThan(short.usage!.prompt_tokens + 100);
  });

  test("completions answer text_completion with the default text", async () => {
    const result = await send({ model: "fake", prompt: "Say something" }, "completions");
    if (result.kind !== "json") throw new Error("expected an answer");
    expect(JSON.parse(result.body)).toMatchObject({ object: "text_completion", choices: [{ text: "This is a mock response from litegate.", finish_reason: "stop" }] });
  });

  test("embeddings: one deterministic 8-number vector per input", async () => {
    const one = await send({ model: "fake", input: "hello" }, "embeddings");
    const batch = await send({ model: "fake", input: ["hello", "world"] }, "embeddings");
    if (one.kind !== "json" || batch.kind !== "json") throw new Error("expected answers");
    const a = JSON.parse(one.body);
    const b = JSON.parse(batch.body);
    expect(a.object).toBe("list");
    expect(a.data).toHaveLength(1);
    expect(a.data[0].embedding).toHaveLength(8);
    expect(b.data.map((d: any) => d.index)).toEqual([0, 1]);
    expect(b.data[0].embedding).toEqual(a.data[0].embedding);
    expect(b.data[1].embedding).not.toEqual(a.data[0].embedding);
    expect(batch.usage).toEqual({ prompt_tokens: 2, completion_tokens: 0, total_tokens: 2 });
  });

  test("streams word by word, with a usage chunk only when asked for, then [DONE]", async () => {
    const params = { mock_response: "one two three" };
    const withUsage = await send({ ...question, stream: true, stream_options: { include_usage: true } }, "chat", params);
    if (withUsage.kind !== "stream") throw new Error("expected a stream");
    const chunks = events(await new Response(withUsage.stream).text());
    expect(chunks.at(-1)).toBe("[DONE]");
    expect(chunks.slice(0, -1).map((c) => c.choices[0]?.delta?.content ?? "")).toEqual(["", "one ", "two ", "three", "", ""]);
    expect(chunks.at(-3).choices[0].finish_reason).toBe("stop");
    expect(chunks.at(-2)).toMatchObject({ object: "chat.completion.chunk", choices: [], usage: { completion_tokens: countTextTokens("one two three") } });

    const without = await send({ ...question, stream: true }, "chat", params);
    if (without.kind !== "stream") throw new Error("expected a stream");
    expect(await new Response(without.stream).text()).not.toContain('"usage"');
  });

  test("streamed completions are text_completion chunks", async () => {
    const result = await send({ model: "fake", prompt: "x", stream: true, stream_options: { include_usage: true } }, "completions", { mock_response: "a b" });
    if (result.kind !== "stream") throw new Error("expected a stream");
    const chunks = events(await new Response(result.stream).text()).slice(0, -1);
    for (const c of chunks) expect(c.object).toBe("text_completion");
    expect(chunks.map((c) => c.choices[0]?.text ?? "").join("")).toBe("a b");
    expect(chunks.at(-1).usage.total_tokens).toBeGreaterThan(0);
  });

  test("mock_delay_ms paces answers and chunks; a client leaving stops the wait", async () => {
    const params = { mock_response: "a b c", mock_delay_ms: 60 };
    let started = performance.now();
    await send(question, "chat", params);
    expect(performance.now() - started).toBeGreaterThanOrEqual(55);
    started = performance.now();
    const result = await send({ ...question, stream: true }, "chat", params);
    if (result.kind !== "stream") throw new Error("expected a stream");
    await new Response(result.stream).text();
    expect(performance.now() - started).toBeGreaterThanOrEqual(4 * 55);
    const client = new AbortController();
    setTimeout(() => client.abort(), 20);
    started = performance.now();
    expect(await send(question, "chat", { mock_delay_ms: 5000 }, client.signal)).toMatchObject({ kind: "error", status: 499 });
    expect(performance.now() - started).toBeLessThan(1000);
    // The gateway's own deadline is a timeout, not a client leaving.
    const deadline = new AbortController();
    setTimeout(() => deadline.abort(new DOMException("The request took longer than request_timeout", "TimeoutError")), 20);
    expect(await send(question, "chat", { mock_delay_ms: 5000 }, deadline.signal)).toMatchObject({ kind: "error", status: 504, type: "timeout" });
  });

  test("an error mock_response answers that error", async () => {
    expect(await send(question, "chat", { mock_response: { error: { status: 429, message: "slow down", retry_after: 3 } } }))
      .toMatchObject({ kind: "error", status: 429, message: "slow down", retryAfter: 3 });
    expect(await send(question, "chat", { mock_response: { status: 503, message: "down" } })).toMatchObject({ kind: "error", status: 503, message: "down" });
  });
});
