import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { hashKey } from "../../src/auth/keys";
import { countTextTokens } from "../../src/tokens";
import { inProcessGateway, oneModelConfig } from "../helpers/gateway";
import { until } from "../helpers/until";
import { type Upstream, startUpstream } from "../helpers/upstream";

/** Streams as providers send them, and what each is charged and logged as. */

let upstream: Upstream;
let h: Awaited<ReturnType<typeof inProcessGateway>>;
beforeAll(async () => {
  upstream = await startUpstream();
  h = await inProcessGateway(oneModelConfig(upstream.url, 0.000001, 0.000002));
}, 120_000);
afterAll(async () => {
  await h.close();
  upstream.stop();
});

const chunk = (delta: Record<string, unknown>, extra: Record<string, unknown> = {}, index = 0) =>
  ({ id: "c-1", object: "chat.completion.chunk", created: 1700000000, model: "m", choices: [{ index, delta, finish_reason: null, ...extra }] });
const usageChunk = (prompt: number, completion: number) =>
  ({ id: "c-1", object: "chat.completion.chunk", created: 1700000000, model: "m", choices: [], usage: { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion } });

/** The content deltas of SSE text. */
const contentOf = (sse: string) =>
  sse.split("\n\n").filter((e) => e.startsWith("data: {")).map((e) => JSON.parse(e.slice(6)).choices?.[0]?.delta?.content ?? "").join("");

/** The spend log rows of a key, once written. */
async function logsOf(key: string): Promise<{ status: string; prompt_tokens: number; completion_tokens: number }[]> {
  await h.flush();
  return (await h.db.query("select status, prompt_tokens, completion_tokens from spend_logs where api_key = $1 order by start_time", [hashKey(key)])) as any;
}

describe("streams", () => {
  test("a stream cut short is charged at least the text passed on, even when the provider reported its usage first", async () => {
    const words = "budget words here, ".repeat(3);
    upstream.set({ chunkDelayMs: 10, events: [{ ...chunk({ role: "assistant", content: "" }), usage: { prompt_tokens: 5, completion_tokens: 0, total_tokens: 5 } }, ...Array.from({ length: 40 }, () => chunk({ content: words })), chunk({}, { finish_reason: "stop" }), "[DONE]"] });
    try {
      const key = await h.createKey();
      const response = await h.chat(key, { stream: true }, "m");
      expect(response.status).toBe(200);
      const reader = response.body!.getReader();
      let received = "";
      while (contentOf(received).length < 900) received += new TextDecoder().decode((await reader.read()).value);
      await reader.cancel();
      const passed = contentOf(received);
      await until("the spend log row", async () => (await logsOf(key)).length === 1);
      const [row] = await logsOf(key);
      expect(row!.status).toBe("client_disconnected");
      expect(row!.completion_tokens).toBeGreaterThanOrEqual(countTextTokens(passed));
      expect(row!.prompt_tokens).toBeGreaterThanOrEqual(5);
    } finally {
      upstream.reset();
    }
  });

  test("a stream cut short is charged the prompt the provider reported, not litegate's guess for its image", async () => {
    upstream.set({ chunkDelayMs: 10, events: [{ ...chunk({ role: "assistant", content: "" }), usage: { prompt_tokens: 300, completion_tokens: 0, total_tokens: 300 } }, ...Array.from({ length: 40 }, () => chunk({ content: "words " })), chunk({}, { finish_reason: "stop" }), "[DONE]"] });
    try {
      const key = await h.createKey();
      const image = { type: "image_url", image_url: { url: "data:image/png;base64,iVBORw0KGgo=" } };
      const response = await h.chat(key, { stream: true, messages: [{ role: "user", content: [{ type: "text", text: "what is it?" }, image] }] }, "m");
      const reader = response.body!.getReader();
      await reader.read();
      await reader.cancel();
      await until("the spend log row", async () => (await logsOf(key)).length === 1);
      expect((await logsOf(key))[0]!.prompt_tokens).toBe(300);
    } finally {
      upstream.reset();
    }
  });

  test("a customer id with a control character is refused before anything is made", async () => {
    const response = await h.chat(await h.createKey(), { user: "cu\u001fst" }, "m");
    expect(response.status).toBe(400);
    expect(((await response.json()) as any).error.message).toContain("control character");
    expect(await h.db.query("select 1 from end_users where user_id = $1", ["cu\u001fst"])).toEqual([]);
  });

  test("a legacy function call without usage is charged its name and arguments, streamed or not", async () => {
    const args = JSON.stringify({ city: "Paris", unit: "celsius", days: 5, detail: "hourly forecast with wind and rain" });
    const name = "get_weather_forecast";
    const expected = countTextTokens(name + args);
    const key = await h.createKey();
    try {
      upstream.set({ omitUsage: true, message: { role: "assistant", content: null, function_call: { name, arguments: args } } });
      const plain = await h.chat(key, {}, "m");
      expect(((await plain.json()) as any).choices[0].message.function_call.name).toBe(name);
      upstream.set({ events: [chunk({ role: "assistant", content: null, function_call: { name, arguments: "" } }), chunk({ function_call: { arguments: args.slice(0, 20) } }), chunk({ function_call: { arguments: args.slice(20) } }), chunk({}, { finish_reason: "function_call" }), "[DONE]"] });
      const streamed = await (await h.chat(key, { stream: true, stream_options: { include_usage: true } }, "m")).text();
      // The usage chunk litegate makes for the client that asked says what is charged.
      const made = streamed.split("\n\n").filter((e) => e.startsWith("data: {")).map((e) => JSON.parse(e.slice(6))).find((c) => c.usage);
      expect(made.usage.completion_tokens).toBe(expected);
      // A tool call's name counts too.
      upstream.set({ events: [chunk({ role: "assistant", content: null, tool_calls: [{ index: 0, id: "t1", type: "function", function: { name, arguments: "" } }] }), chunk({ tool_calls: [{ index: 0, function: { arguments: args } }] }), chunk({}, { finish_reason: "tool_calls" }), "[DONE]"] });
      await (await h.chat(key, { stream: true }, "m")).text();
    } finally {
      upstream.reset();
    }
    await until("the spend log rows", async () => (await logsOf(key)).length === 3);
    expect((await logsOf(key)).map((row) => [row.status, row.completion_tokens])).toEqual([["success", expected], ["success", expected], ["success", expected]]);
  });

  test("reasoning is charged when the provider sends no usage, under each of its names, streamed or not", async () => {
    const thought = "thinking hard about this problem ".repeat(10);
    const expected = countTextTokens(thought.repeat(20) + "ok");
    const key = await h.createKey();
    try {
      for (const name of ["reasoning_content", "reasoning"]) {
        upstream.set({ events: [...Array.from({ length: 20 }, () => chunk({ [name]: thought })), chunk({ content: "ok" }), chunk({}, { finish_reason: "stop" }), "[DONE]"] });
        await (await h.chat(key, { stream: true }, "m")).text();
      }
      // LiteLLM's spelling gives the same text twice (`reasoning_content` and `thinking_blocks`): counted once.
      upstream.set({ events: [...Array.from({ length: 20 }, () => chunk({ reasoning_content: thought, thinking_blocks: [{ type: "thinking", thinking: thought }] })), chunk({ content: "ok" }), chunk({}, { finish_reason: "stop" }), "[DONE]"] });
      await (await h.chat(key, { stream: true }, "m")).text();
      upstream.set({ omitUsage: true, message: { role: "assistant", content: "ok", thinking_blocks: [{ type: "thinking", thinking: thought.repeat(20), signature: "s" }] } });
      await (await h.chat(key, {}, "m")).text();
    } finally {
      upstream.reset();
    }
    await until("the spend log rows", async () => (await logsOf(key)).length === 4);
    const answered = countTextTokens("ok" + thought.repeat(20));
    expect((await logsOf(key)).map((row) => [row.status, row.completion_tokens])).toEqual([...Array(3).fill(["success", expected]), ["success", answered]]);
  });

  // A provider that keeps the connection open: the client's stream ends complete at [DONE], or at the
  // usage chunk after the finish_reason when no [DONE] comes; the slot is free at once, the provider's connection closed.
  for (const [name, events, body, ending] of [
    ["after [DONE]", [chunk({ role: "assistant", content: "Hi there" }), chunk({}, { finish_reason: "stop" }), usageChunk(7, 3), "[DONE]"], {}, "[DONE]"],
    ["after its usage, with neither [DONE] nor an end", [chunk({ role: "assistant", content: "Hi there" }), chunk({}, { finish_reason: "stop" }), usageChunk(7, 3)],
      { stream_options: { include_usage: true } }, "the usage chunk"],
  ] as const) {
    test(`a provider that keeps the connection open ${name}: the client's stream ends complete there, the slot is free, the request a success`, async () => {
      const key = await h.createKey({ max_parallel_requests: 1 });
      try {
        upstream.set({ holdOpen: true, events: [...events] });
        const response = await h.chat(key, { stream: true, ...body }, "m");
        const text = await Promise.race([response.text(), Bun.sleep(5000).then(() => `still open 5 s after ${ending}`)]);
        if (ending === "the usage chunk") expect(text).toContain('"completion_tokens":3');
        expect(text.endsWith("data: [DONE]\n\n")).toBe(true);
        expect(text).not.toContain("error");
        expect((await h.chat(key, {}, "m")).status).toBe(200);
        await until("the provider's connection to close", () => upstream.inFlight === 0);
      } finally {
        upstream.reset();
      }
      await until("the spend log rows", async () => (await logsOf(key)).length === 2);
      expect((await logsOf(key))[0]).toEqual({ status: "success", prompt_tokens: 7, completion_tokens: 3 });
    });
  }

  test("a provider's error event after the stream began is the one error the client gets", async () => {
    const key = await h.createKey();
    try {
      upstream.set({ events: [chunk({ role: "assistant", content: "Hi" }), { error: { message: "The server had an error while processing your request", type: "server_error" } }] });
      const text = await (await h.chat(key, { stream: true }, "m")).text();
      expect(text.match(/"error"/g)?.length).toBe(1);
      expect(text).toContain("The server had an error");
    } finally {
      upstream.reset();
    }
    await until("the spend log row", async () => (await logsOf(key)).length === 1);
    expect((await logsOf(key))[0]!.status).toBe("stream_failed");
  });

  test("a client that leaves an n=2 stream after the first choice finished, before the second began, is logged as disconnected", async () => {
    const key = await h.createKey();
    try {
      upstream.set({ chunkDelayMs: 100, events: [chunk({ role: "assistant", content: "First" }), chunk({}, { finish_reason: "stop" }), chunk({ role: "assistant", content: "Second" }, {}, 1), chunk({}, { finish_reason: "stop" }, 1), usageChunk(7, 4), "[DONE]"] });
      const reader = (await h.chat(key, { stream: true, n: 2 }, "m")).body!.getReader();
      let received = "";
      while (!received.includes('"finish_reason":"stop"')) received += new TextDecoder().decode((await reader.read()).value);
      await reader.cancel();
      expect(received).not.toContain("Second");
    } finally {
      upstream.reset();
    }
    await until("the spend log row", async () => (await logsOf(key)).length === 1);
    expect((await logsOf(key))[0]!.status).toBe("client_disconnected");
  });

  test("a client that leaves after the finish_reason, before the provider's usage came, is logged as disconnected and charged the count", async () => {
    const key = await h.createKey();
    try {
      upstream.set({ chunkDelayMs: 200, events: [chunk({ role: "assistant", content: "Hello there" }, { finish_reason: "stop" }), usageChunk(1000, 1000), "[DONE]"] });
      const reader = (await h.chat(key, { stream: true }, "m")).body!.getReader();
      let received = "";
      while (!received.includes('"finish_reason":"stop"')) received += new TextDecoder().decode((await reader.read()).value);
      await reader.cancel();
    } finally {
      upstream.reset();
    }
    await until("the spend log row", async () => (await logsOf(key)).length === 1);
    const [row] = await logsOf(key);
    expect(row!.status).toBe("client_disconnected");
    expect(row!.completion_tokens).toBe(countTextTokens("Hello there"));
  });
});
