import { describe, expect, test } from "bun:test";
import Anthropic from "@anthropic-ai/sdk";
import OpenAI from "openai";
import { newKeyOn } from "../helpers/binary";
import { binaryOnPostgres, chatChunk as chunk, logRowsOf, usageChunk as usage } from "../helpers/raw-provider";

/**
 * Streams as providers write them, through the compiled binary on Postgres: what the client reads, and
 * what is charged and logged. The provider is a raw Bun server answering each upstream model with the
 * bytes that model's case sets.
 */
let up: ReturnType<typeof Bun.serve> | undefined;
/** What each upstream model answers: a body and its content type. */
const answers = new Map<string, { body: string; type: string }>();

const on = binaryOnPostgres(() => {
  const provider = Bun.serve({
    port: 0, hostname: "127.0.0.1",
    async fetch(request) {
      const model = String(((await request.json()) as { model?: unknown }).model);
      const answer = answers.get(model);
      if (!answer) return new Response("unknown model", { status: 404 });
      return new Response(answer.body, { headers: { "content-type": answer.type } });
    },
  });
  up = provider;
  const entry = (name: string) =>
    `  - model_name: ${name}
    litellm_params: {model: openai/${name}, api_base: "http://127.0.0.1:${provider.port}/v1", api_key: sk-up, input_cost_per_token: 0.000001, output_cost_per_token: 0.000002}`;
  const anthropic = `  - model_name: leaky
    litellm_params: {model: anthropic/leaky, api_base: "http://127.0.0.1:${provider.port}", api_key: sk-ant-up, input_cost_per_token: 0.000001, output_cost_per_token: 0.000002}`;
  return `model_list:\n${["lines", "broke", "named", "whole"].map(entry).join("\n")}\n${anthropic}`;
}, () => up?.stop(true));

const newKey = () => newKeyOn(on.gateway.url);

/** The spend log rows of a key once `n` are written, and the key's spend. */
async function spendOf(token: string, n: number) {
  const rows = await logRowsOf(on.sql, token, n);
  const [key] = await on.sql<{ spend: number }[]>`select spend from keys where token = ${token}`;
  return { rows, keySpend: key!.spend };
}

describe("/v1/messages on an OpenAI-compatible deployment", () => {
  test("a provider writing one JSON chunk per data line (no blank line between) streams the answer, as /v1/chat/completions does", async () => {
    const lines = [chunk({ role: "assistant", content: "" }), chunk({ content: "Once upon " }), chunk({ content: "a time" }), chunk({}, "stop"), usage(9, 4), "[DONE]"];
    answers.set("lines", { body: `${lines.map((line) => `data:${line}\r\n`).join("")}\r\n`, type: "text/event-stream" });
    const k = await newKey();
    const client = new Anthropic({ apiKey: k.key, baseURL: on.gateway.url, maxRetries: 0 });
    const stream = client.messages.stream({ model: "lines", max_tokens: 100, messages: [{ role: "user", content: "Tell me a story" }] });
    const message = await stream.finalMessage();
    expect(message.content.map((block) => (block.type === "text" ? block.text : block.type))).toEqual(["Once upon a time"]);
    expect(message.usage).toMatchObject({ input_tokens: 9, output_tokens: 4 });
    const { rows, keySpend } = await spendOf(k.token, 1);
    expect(rows).toMatchObject([{ status: "success", prompt_tokens: 9, completion_tokens: 4 }]);
    expect(rows[0]!.spend).toBeCloseTo(9 * 0.000001 + 4 * 0.000002, 12);
    expect(keySpend).toBeCloseTo(rows[0]!.spend, 12);
  });

  test("a provider's error event after the stream began reaches the client with the provider's words; before any text it costs nothing, as on /v1/chat/completions", async () => {
    const start = `data: ${chunk({ role: "assistant", content: "" })}\n\n`;
    answers.set("broke", { body: `${start}data: {"error": {"message": "The server broke down", "type": "server_error", "code": 500}}\n\n`, type: "text/event-stream" });
    answers.set("named", { body: `${start}event: error\ndata: {"message": "Service busy"}\n\n`, type: "text/event-stream" });
    for (const [model, words] of [["broke", "The server broke down"], ["named", "Service busy"]]) {
      const k = await newKey();
      const client = new Anthropic({ apiKey: k.key, baseURL: on.gateway.url, maxRetries: 0 });
      const failed = await client.messages.stream({ model, max_tokens: 100, messages: [{ role: "user", content: "Tell me a story" }] }).finalMessage().then(() => null, (error) => error);
      expect(String(failed?.message)).toContain(words);
      const { rows, keySpend } = await spendOf(k.token, 1);
      expect(rows).toMatchObject([{ status: "failure", prompt_tokens: 0, completion_tokens: 0, spend: 0 }]);
      expect(keySpend).toBe(0);
    }
  });
});

describe("a provider that answers a stream request with one JSON answer (it does not stream)", () => {
  test("gives the client the stream it asked for, made of that answer, its tool calls and its usage; it is charged that usage", async () => {
    const message = { role: "assistant", content: "The whole answer", tool_calls: [{ id: "call_1", type: "function", function: { name: "lookup", arguments: '{"q":"x"}' } }] };
    const answer = { id: "c1", object: "chat.completion", created: 1, model: "whole", choices: [{ index: 0, message, finish_reason: "tool_calls" }], usage: { prompt_tokens: 9, completion_tokens: 6, total_tokens: 15 } };
    answers.set("whole", { body: JSON.stringify(answer), type: "application/json" });
    for (const include_usage of [true, false]) {
      const k = await newKey();
      const client = new OpenAI({ apiKey: k.key, baseURL: `${on.gateway.url}/v1`, maxRetries: 0 });
      const stream = client.chat.completions.stream({ model: "whole", messages: [{ role: "user", content: "Tell me" }], stream: true, stream_options: { include_usage } });
      const completion = await stream.finalChatCompletion();
      expect(completion.choices[0]!.message.content).toBe("The whole answer");
      expect(completion.choices[0]!.message.tool_calls).toMatchObject([{ id: "call_1", function: { name: "lookup", arguments: '{"q":"x"}' } }]);
      expect(completion.choices[0]!.finish_reason).toBe("tool_calls");
      if (include_usage) expect(completion.usage).toMatchObject({ prompt_tokens: 9, completion_tokens: 6 });
      else expect(completion.usage ?? undefined).toBeUndefined();
      const { rows } = await spendOf(k.token, 1);
      expect(rows).toMatchObject([{ status: "success", prompt_tokens: 9, completion_tokens: 6 }]);
    }
  });
});

describe("/v1/messages on an Anthropic deployment", () => {
  test("an error event mid-stream that names the provider key reaches the Anthropic SDK as an error event, the key blanked out", async () => {
    const event = (type: string, data: object) => `event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`;
    const message = { id: "msg_1", type: "message", role: "assistant", model: "leaky", content: [], stop_reason: null, usage: { input_tokens: 12, output_tokens: 1 } };
    answers.set("leaky", {
      body: event("message_start", { message }) + event("content_block_start", { index: 0, content_block: { type: "text", text: "" } }) +
        event("content_block_delta", { index: 0, delta: { type: "text_delta", text: "Hello" } }) +
        event("error", { error: { type: "overloaded_error", message: "Overloaded (key sk-ant-up)" } }),
      type: "text/event-stream",
    });
    const k = await newKey();
    const client = new Anthropic({ apiKey: k.key, baseURL: on.gateway.url, maxRetries: 0 });
    const failed = await client.messages.stream({ model: "leaky", max_tokens: 100, messages: [{ role: "user", content: "Hi" }] }).finalMessage().then(() => null, (error) => error);
    expect(String(failed?.message)).toContain("Overloaded (key [redacted])");
    expect(String(failed?.message)).not.toContain("sk-ant-up");
    const { rows } = await spendOf(k.token, 1);
    expect(rows).toMatchObject([{ status: "stream_failed", prompt_tokens: 12 }]);
  });
});
