import { describe, expect, test } from "bun:test";
import Anthropic from "@anthropic-ai/sdk";
import OpenAI from "openai";
import { newKeyOn } from "../helpers/binary";
import { binaryOnPostgres, chatChunk as chunk, logRowsOf, usageChunk as usage } from "../helpers/raw-provider";

/**
 * Streams as some servers write them (under a content type other than text/event-stream, or with CR
 * alone as line end), through the compiled binary on Postgres: what the client reads, when, and what is
 * charged. The provider is a raw Bun server answering each upstream model with the parts its case sets:
 * the first part, then (once `hold` settles) the rest.
 */
let up: ReturnType<typeof Bun.serve> | undefined;
const encoder = new TextEncoder();
/** What each upstream model answers: its body in parts, its content type (none when null), and what the parts after the first wait for. */
const answers = new Map<string, { parts: string[]; type: string | null; hold?: Promise<unknown> }>();

const on = binaryOnPostgres(() => {
  const provider = Bun.serve({
    port: 0, hostname: "127.0.0.1", idleTimeout: 60,
    async fetch(request) {
      const model = String(((await request.json()) as { model?: unknown }).model);
      const answer = answers.get(model);
      if (!answer) return new Response("unknown model", { status: 404 });
      // A stream body gets no content type of its own: only the one the case sets.
      const body = new ReadableStream<Uint8Array>({
        async start(controller) {
          controller.enqueue(encoder.encode(answer.parts[0]!));
          await answer.hold;
          for (const part of answer.parts.slice(1)) controller.enqueue(encoder.encode(part));
          controller.close();
        },
      });
      return new Response(body, { headers: answer.type === null ? {} : { "content-type": answer.type } });
    },
  });
  up = provider;
  const priced = "api_key: sk-up, input_cost_per_token: 0.000001, output_cost_per_token: 0.000002";
  const openai = (name: string) =>
    `  - model_name: ${name}\n    litellm_params: {model: openai/${name}, api_base: "http://127.0.0.1:${provider.port}/v1", ${priced}}`;
  const anthropic = (name: string) =>
    `  - model_name: ${name}\n    litellm_params: {model: anthropic/${name}, api_base: "http://127.0.0.1:${provider.port}", ${priced}}`;
  const models = [...["untyped", "plain", "html", "whole", "failing", "cr-messages"].map(openai), ...["claude-plain", "claude-cr"].map(anthropic)];
  return `model_list:\n${models.join("\n")}\n`;
}, () => up?.stop(true));

const newKey = () => newKeyOn(on.gateway.url);

/** A key's spend log rows once `n` are written, without their spend. */
const rowsOf = async (token: string, n: number) => (await logRowsOf(on.sql, token, n)).map(({ spend: _, ...row }) => row);

const story = [chunk({ role: "assistant", content: "" }), chunk({ content: "Once upon " }), chunk({ content: "a time" }), chunk({}, "stop"), usage(9, 4), "[DONE]"];

/** Anthropic's stream events for "Once upon a time", 12 tokens in and 4 out, each line ended by `end`. */
function claudeStory(model: string, end: string): string[] {
  const event = (type: string, data: object) => `event: ${type}${end}data: ${JSON.stringify({ type, ...data })}${end}${end}`;
  const message = { id: "msg_1", type: "message", role: "assistant", model, content: [], stop_reason: null, usage: { input_tokens: 12, output_tokens: 1 } };
  const delta = (text: string) => event("content_block_delta", { index: 0, delta: { type: "text_delta", text } });
  return [
    event("message_start", { message }) + event("content_block_start", { index: 0, content_block: { type: "text", text: "" } }) + delta("Once"),
    delta(" upon a time") + event("content_block_stop", { index: 0 }) +
      event("message_delta", { delta: { stop_reason: "end_turn" }, usage: { output_tokens: 4 } }) + event("message_stop", {}),
  ];
}

describe("a provider that streams SSE under a content type other than text/event-stream", () => {
  test("the stream reaches the openai client and is charged, whatever the content type (none, text/plain, text/html)", async () => {
    const body = story.map((line) => `data: ${line}\n\n`).join("");
    answers.set("untyped", { parts: [body], type: null });
    answers.set("plain", { parts: [body], type: "text/plain; charset=utf-8" });
    answers.set("html", { parts: [body], type: "text/html" });
    for (const model of ["untyped", "plain", "html"]) {
      const k = await newKey();
      const client = new OpenAI({ apiKey: k.key, baseURL: `${on.gateway.url}/v1`, maxRetries: 0 });
      const stream = client.chat.completions.stream({ model, messages: [{ role: "user", content: "Tell me a story" }], stream: true, stream_options: { include_usage: true } });
      const completion = await stream.finalChatCompletion();
      expect(completion.choices[0]!.message.content).toBe("Once upon a time");
      expect(completion.usage).toMatchObject({ prompt_tokens: 9, completion_tokens: 4 });
      expect(await rowsOf(k.token, 1)).toEqual([{ status: "success", prompt_tokens: 9, completion_tokens: 4 }]);
    }
  });

  test("one JSON answer served as text/plain is the stream it stands for; a JSON error so served is that error, with its status", async () => {
    const message = { role: "assistant", content: "The whole answer" };
    const answer = { id: "c1", object: "chat.completion", created: 1, model: "whole", choices: [{ index: 0, message, finish_reason: "stop" }], usage: { prompt_tokens: 9, completion_tokens: 6, total_tokens: 15 } };
    answers.set("whole", { parts: [JSON.stringify(answer, null, 2)], type: "text/plain" });
    const k = await newKey();
    const client = new OpenAI({ apiKey: k.key, baseURL: `${on.gateway.url}/v1`, maxRetries: 0 });
    const completion = await client.chat.completions.stream({ model: "whole", messages: [{ role: "user", content: "Tell me" }], stream: true }).finalChatCompletion();
    expect(completion.choices[0]!.message.content).toBe("The whole answer");
    // The same answer to a request that is not a stream.
    const plain = await client.chat.completions.create({ model: "whole", messages: [{ role: "user", content: "Tell me" }] });
    expect(plain.choices[0]!.message.content).toBe("The whole answer");
    expect(await rowsOf(k.token, 2)).toEqual([
      { status: "success", prompt_tokens: 9, completion_tokens: 6 },
      { status: "success", prompt_tokens: 9, completion_tokens: 6 },
    ]);

    answers.set("failing", { parts: ['{"error": {"message": "Rate limit reached for requests", "type": "requests", "code": "rate_limit_exceeded"}}\n'], type: "text/plain" });
    const failed = await client.chat.completions.create({ model: "failing", messages: [{ role: "user", content: "Tell me" }], stream: true }).then(() => null, (error) => error);
    expect(failed?.status).toBe(429);
    expect(String(failed?.message)).toContain("Rate limit reached for requests");
  });

  test("on an Anthropic deployment, /v1/chat/completions and /v1/messages stream it too", async () => {
    answers.set("claude-plain", { parts: [claudeStory("claude-plain", "\n").join("")], type: "text/plain" });
    const k = await newKey();
    const openai = new OpenAI({ apiKey: k.key, baseURL: `${on.gateway.url}/v1`, maxRetries: 0 });
    const completion = await openai.chat.completions.stream({ model: "claude-plain", messages: [{ role: "user", content: "Tell me a story" }], stream: true }).finalChatCompletion();
    expect(completion.choices[0]!.message.content).toBe("Once upon a time");
    const anthropic = new Anthropic({ apiKey: k.key, baseURL: on.gateway.url, maxRetries: 0 });
    const message = await anthropic.messages.stream({ model: "claude-plain", max_tokens: 100, messages: [{ role: "user", content: "Tell me a story" }] }).finalMessage();
    expect(message.content).toMatchObject([{ type: "text", text: "Once upon a time" }]);
    expect(await rowsOf(k.token, 2)).toEqual([
      { status: "success", prompt_tokens: 12, completion_tokens: 4 },
      { status: "success", prompt_tokens: 12, completion_tokens: 4 },
    ]);
  });
});

/** What `work` gives, or a throw when it takes over 5 s. */
function within5s<T>(what: string, work: Promise<T>): Promise<T> {
  let timer: Timer | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: nothing within 5 s`)), 5000)));
  return Promise.race([work, late]).finally(() => clearTimeout(timer));
}

type Reader = { read(): Promise<{ done: boolean; value?: Uint8Array }> };

/** Reads on until the text read includes `what` (or the stream ends). */
async function readUntil(reader: Reader, what: string): Promise<string> {
  const utf8 = new TextDecoder();
  let text = "";
  while (!text.includes(what)) {
    const read = await reader.read();
    if (read.done) break;
    text += utf8.decode(read.value, { stream: true });
  }
  return text;
}

describe("a provider whose stream ends its lines with CR alone", () => {
  test("each translated event reaches the client as it comes, before the provider closes the stream", async () => {
    const cases = [
      { model: "claude-cr", path: "/v1/chat/completions", last: "[DONE]", parts: claudeStory("claude-cr", "\r"), rows: { prompt_tokens: 12, completion_tokens: 4 } },
      { model: "cr-messages", path: "/v1/messages", last: "message_stop", parts: [story.slice(0, 2).map((line) => `data: ${line}\r\r`).join(""), story.slice(2).map((line) => `data: ${line}\r\r`).join("")], rows: { prompt_tokens: 9, completion_tokens: 4 } },
    ];
    for (const { model, path, last, parts, rows } of cases) {
      let release!: () => void;
      answers.set(model, { parts, type: "text/event-stream", hold: new Promise<void>((resolve) => (release = resolve)) });
      const k = await newKey();
      let reader: Reader | undefined;
      try {
        // The provider holds the rest of its stream back until the client has read the first text.
        const first = await within5s(`${model} on ${path}`, (async () => {
          const response = await fetch(`${on.gateway.url}${path}`, {
            method: "POST",
            headers: { authorization: `Bearer ${k.key}`, "content-type": "application/json" },
            body: JSON.stringify({ model, max_tokens: 100, stream: true, messages: [{ role: "user", content: "Tell me a story" }] }),
          });
          expect(response.status).toBe(200);
          const opened = response.body!.getReader();
          reader = opened;
          return readUntil(opened, "Once");
        })());
        expect(first).toContain("Once");
        expect(first).not.toContain("a time");
      } finally {
        release();
      }
      expect(await readUntil(reader!, last)).toContain("a time");
      expect(await rowsOf(k.token, 1)).toEqual([{ status: "success", ...rows }]);
    }
  });
});
