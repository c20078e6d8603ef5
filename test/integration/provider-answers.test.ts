import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import OpenAI from "openai";
import postgres from "postgres";
import { countTextTokens } from "../../src/tokens";
import { type RunningGateway, startOnPostgres } from "../helpers/binary";

/**
 * Provider answers that are not what they seem — a 200 that carries an error, usage that leaves the
 * output out, a failure worth retrying at a model's only deployment — through the compiled binary,
 * real Postgres and the openai client. The provider is a raw Bun server each test programs, for
 * byte-level control of what it answers.
 */
type Handler = (req: Request, body: any) => Response | Promise<Response>;
const DEFAULT: Handler = () => new Response("no handler", { status: 500 });
let handler: Handler = DEFAULT;
let up: ReturnType<typeof Bun.serve>;
let gw: RunningGateway;
let dbUrl: string;
const IN = 0.000001;
const OUT = 0.000002;

const entry = (name: string, upstream = name) =>
  `  - model_name: ${name}
    litellm_params: {model: openai/${upstream}, api_base: "http://127.0.0.1:${up.port}/v1", api_key: sk-up, input_cost_per_token: ${IN}, output_cost_per_token: ${OUT}}`;

beforeAll(async () => {
  up = Bun.serve({
    port: 0, hostname: "127.0.0.1", idleTimeout: 60,
    async fetch(req) {
      const raw = await req.text();
      return handler(req, raw ? JSON.parse(raw) : null);
    },
  });
  // allowed_fails is high so that the failures of one test do not cool a deployment for the next.
  ({ gateway: gw, dbUrl } = await startOnPostgres(`
model_list:
${entry("m")}
${entry("flaky")}
${entry("polite")}
${entry("pair", "pair-a")}
${entry("pair", "pair-b")}
router_settings:
  num_retries: 2
  allowed_fails: 100`));
}, 120_000);
afterAll(async () => {
  await gw?.stop("SIGKILL");
  up?.stop(true);
});

const admin = (path: string, body?: unknown) =>
  fetch(`${gw.url}${path}`, { method: body === undefined ? "GET" : "POST", headers: { authorization: "Bearer sk-1234" }, body: body === undefined ? undefined : JSON.stringify(body) }).then((r) => r.json() as any);
const newKey = async () => (await admin("/key/generate", {})) as { key: string; token: string };
const clientFor = (key: string) => new OpenAI({ apiKey: key, baseURL: `${gw.url}/v1`, maxRetries: 0 });
const post = (key: string, path: string, body: object) =>
  fetch(`${gw.url}/v1/${path}`, { method: "POST", headers: { authorization: `Bearer ${key}` }, body: JSON.stringify(body) });

interface Row { status: string; prompt_tokens: number; completion_tokens: number; spend: number }
/** The spend log rows of a key once `n` are written (the binary writes spend every 250 ms). */
async function rowsOf(token: string, n: number): Promise<Row[]> {
  const sql = postgres(dbUrl, { onnotice: () => {} });
  try {
    const read = () => sql<Row[]>`select status, prompt_tokens, completion_tokens, spend from spend_logs where api_key = ${token} order by start_time`;
    for (let i = 0; i < 100; i++) {
      const rows = await read();
      if (rows.length >= n) return rows;
      await Bun.sleep(100);
    }
    return await read();
  } finally {
    await sql.end();
  }
}

const chunk = (delta: object, finish: string | null = null, extra: object = {}) =>
  ({ id: "c1", object: "chat.completion.chunk", created: 1, model: "m", choices: [{ index: 0, delta, finish_reason: finish }], ...extra });
const sse = (events: (string | object)[]) =>
  new Response(events.map((e) => `data: ${typeof e === "string" ? e : JSON.stringify(e)}\n\n`).join(""), { headers: { "content-type": "text/event-stream" } });
const completion = (content: string, usage: object | undefined) =>
  Response.json({ id: "x", object: "chat.completion", created: 1, model: "m", choices: [{ index: 0, message: { role: "assistant", content }, finish_reason: "stop" }], ...(usage ? { usage } : {}) });
const messages = [{ role: "user" as const, content: "Tell me a story" }];

describe("a provider's 200 answer that is an error", () => {
  test("comes back as an error in the OpenAI envelope, logged as a failure and not charged", async () => {
    const k = await newKey();
    let calls = 0;
    handler = () => {
      calls++;
      return Response.json({ error: { message: "The server had an error while processing your request", type: "server_error", param: null, code: null } });
    };
    const response = await post(k.key, "chat/completions", { model: "m", messages });
    const body = (await response.json()) as any;
    // No status of its own: the provider failed to answer, a 502, retried as other 5xx are (num_retries: 2).
    expect(response.status).toBe(502);
    expect(body.error.message).toBe("The server had an error while processing your request");
    expect(body.error.type).toBe("server_error");
    expect(body.choices).toBeUndefined();
    expect(calls).toBe(3);
    const rows = await rowsOf(k.token, 1);
    expect(rows).toHaveLength(1);
    expect(rows[0]!.status).toBe("failure");
    expect(rows[0]!.spend).toBe(0);
  });

  test("to a stream request (JSON, not SSE) takes the error's own code as its status", async () => {
    const k = await newKey();
    handler = () => Response.json({ error: { message: "model overloaded", type: "server_error", code: 503 } });
    const response = await post(k.key, "chat/completions", { model: "m", stream: true, messages });
    const body = (await response.json()) as any;
    expect(response.status).toBe(503);
    expect(body.error.message).toBe("model overloaded");
    const [row] = await rowsOf(k.token, 1);
    expect(row!.status).toBe("failure");
    expect(row!.spend).toBe(0);
  });

  test("with a client error's code is that error, not retried", async () => {
    const k = await newKey();
    let calls = 0;
    handler = () => {
      calls++;
      return Response.json({ error: { message: "Input is too long for this model", type: "invalid_request_error", param: "messages", code: "400" } });
    };
    const response = await post(k.key, "completions", { model: "m", prompt: "Tell me a story" });
    const body = (await response.json()) as any;
    expect(response.status).toBe(400);
    expect(body.error).toMatchObject({ message: "Input is too long for this model", type: "invalid_request_error", param: "messages" });
    expect(calls).toBe(1);
  });

  test("an empty error beside an answer is no error (as LiteLLM reads it)", async () => {
    const k = await newKey();
    handler = () => Response.json({ id: "x", object: "chat.completion", created: 1, model: "m", choices: [{ index: 0, message: { role: "assistant", content: "fine" }, finish_reason: "stop" }], usage: { prompt_tokens: 5, completion_tokens: 1, total_tokens: 6 }, error: { message: "", code: null } });
    const result = await clientFor(k.key).chat.completions.create({ model: "m", messages });
    expect(result.choices[0]!.message.content).toBe("fine");
    const [row] = await rowsOf(k.token, 1);
    expect(row!.status).toBe("success");
  });
});

describe("usage that does not cover the answer", () => {
  const story = "Once upon a time there was a gateway that counted every token it passed on. ";

  test("a complete stream whose provider sent its usage on the first chunk (prompt only) is charged the text it streamed", async () => {
    const k = await newKey();
    handler = () => sse([
      chunk({ role: "assistant", content: "" }, null, { usage: { prompt_tokens: 12, completion_tokens: 0, total_tokens: 12 } }),
      ...Array.from({ length: 30 }, () => chunk({ content: story })),
      chunk({}, "stop"),
      "[DONE]",
    ]);
    const stream = await clientFor(k.key).chat.completions.create({ model: "m", messages, stream: true });
    let text = "";
    for await (const c of stream) text += c.choices[0]?.delta?.content ?? "";
    expect(text).toBe(story.repeat(30));
    const [row] = await rowsOf(k.token, 1);
    expect(row!.status).toBe("success");
    // The prompt as the provider reported it; the output as counted.
    expect(row!.prompt_tokens).toBe(12);
    expect(row!.completion_tokens).toBe(countTextTokens(text));
    expect(row!.spend).toBeCloseTo(12 * IN + countTextTokens(text) * OUT, 12);
  });

  test("an answer whose usage gives no completion_tokens is charged its output", async () => {
    const k = await newKey();
    const answer = story.repeat(30);
    handler = () => completion(answer, { prompt_tokens: 12, completion_tokens: null, total_tokens: null });
    const result = await clientFor(k.key).chat.completions.create({ model: "m", messages });
    expect(result.choices[0]!.message.content).toBe(answer);
    const [row] = await rowsOf(k.token, 1);
    expect(row!.prompt_tokens).toBe(12);
    expect(row!.completion_tokens).toBe(countTextTokens(answer));
    expect(row!.spend).toBeCloseTo(12 * IN + countTextTokens(answer) * OUT, 12);
  });

  test("a text completion whose usage leaves completion_tokens out is charged its output", async () => {
    const k = await newKey();
    const answer = story.repeat(10);
    handler = () => Response.json({ id: "x", object: "text_completion", created: 1, model: "m", choices: [{ index: 0, text: answer, finish_reason: "stop" }], usage: { prompt_tokens: 4 } });
    const response = await post(k.key, "completions", { model: "m", prompt: "Tell me a story" });
    expect(response.status).toBe(200);
    const [row] = await rowsOf(k.token, 1);
    expect(row!.completion_tokens).toBe(countTextTokens(answer));
  });

  test("usage that covers the answer is charged as the provider reported it", async () => {
    const k = await newKey();
    handler = () => completion(story.repeat(30), { prompt_tokens: 12, completion_tokens: 3, total_tokens: 15 });
    await clientFor(k.key).chat.completions.create({ model: "m", messages });
    const [row] = await rowsOf(k.token, 1);
    expect(row!.completion_tokens).toBe(3);
  });
});

describe("retries", () => {
  const overloaded = () => Response.json({ error: { message: "The server is overloaded", type: "server_error" } }, { status: 503 });

  test("num_retries retries a model's only deployment, as LiteLLM's router retries within the model group", async () => {
    const k = await newKey();
    let calls = 0;
    handler = () => (++calls === 1 ? overloaded() : completion("ok", { prompt_tokens: 5, completion_tokens: 1, total_tokens: 6 }));
    const response = await post(k.key, "chat/completions", { model: "flaky", messages });
    expect(response.status).toBe(200);
    expect(await response.text()).toContain('"ok"');
    expect(calls).toBe(2);
    const [row] = await rowsOf(k.token, 1);
    expect(row!.status).toBe("success");
  });

  test("a 200 that is an error is retried as the failure it is", async () => {
    const k = await newKey();
    let calls = 0;
    handler = () => (++calls === 1 ? Response.json({ error: { message: "upstream hiccup", code: 500 } }) : completion("ok", { prompt_tokens: 5, completion_tokens: 1, total_tokens: 6 }));
    const response = await post(k.key, "chat/completions", { model: "flaky", messages });
    expect(response.status).toBe(200);
    expect(calls).toBe(2);
  });

  test("a retry goes to the deployment not tried yet first, then back to one tried", async () => {
    const k = await newKey();
    const sent: string[] = [];
    handler = (_req, body) => {
      sent.push(body.model);
      return sent.length <= 2 ? overloaded() : completion("ok", { prompt_tokens: 5, completion_tokens: 1, total_tokens: 6 });
    };
    const response = await post(k.key, "chat/completions", { model: "pair", messages });
    expect(response.status).toBe(200);
    expect(sent).toHaveLength(3);
    expect(new Set(sent.slice(0, 2))).toEqual(new Set(["pair-a", "pair-b"]));
  });

  test("a deployment that asked to be left alone (429 with retry-after) is not called again", async () => {
    const k = await newKey();
    let calls = 0;
    handler = () => {
      calls++;
      return Response.json({ error: { message: "Rate limit reached", type: "rate_limit_error" } }, { status: 429, headers: { "retry-after": "30" } });
    };
    const response = await post(k.key, "chat/completions", { model: "polite", messages });
    expect(response.status).toBe(429);
    expect(response.headers.get("retry-after")).toBe("30");
    expect(calls).toBe(1);
  });
});

describe("streams as some servers write them", () => {
  test("one JSON chunk per data line, with no blank line between, reaches the openai client whole and is charged its usage", async () => {
    const k = await newKey();
    const lines = [chunk({ role: "assistant", content: "" }), chunk({ content: "Once upon " }), chunk({ content: "a time" }), chunk({}, "stop"), { id: "c1", object: "chat.completion.chunk", created: 1, model: "m", choices: [], usage: { prompt_tokens: 9, completion_tokens: 4, total_tokens: 13 } }, "[DONE]"];
    handler = () => new Response(`${lines.map((e) => `data:${typeof e === "string" ? e : JSON.stringify(e)}\r\n`).join("")}\r\n`, { headers: { "content-type": "text/event-stream" } });
    const stream = await clientFor(k.key).chat.completions.create({ model: "m", messages, stream: true, stream_options: { include_usage: true } });
    let text = "";
    let usage: unknown = null;
    for await (const c of stream) {
      text += c.choices[0]?.delta?.content ?? "";
      usage = c.usage ?? usage;
    }
    expect(text).toBe("Once upon a time");
    expect(usage).toMatchObject({ prompt_tokens: 9, completion_tokens: 4 });
    const [row] = await rowsOf(k.token, 1);
    expect(row).toMatchObject({ status: "success", prompt_tokens: 9, completion_tokens: 4 });
  });

  test("a usage chunk with no choices list, which litegate asked for, never reaches a client that did not ask; it is charged", async () => {
    const k = await newKey();
    handler = () => sse([chunk({ role: "assistant", content: "" }), chunk({ content: "The end" }), chunk({}, "stop"), { id: "c1", object: "chat.completion.chunk", created: 1, model: "m", usage: { prompt_tokens: 9, completion_tokens: 2, total_tokens: 11 } }, "[DONE]"]);
    const stream = await clientFor(k.key).chat.completions.create({ model: "m", messages, stream: true });
    let text = "";
    // As clients commonly read a chunk: it has choices.
    for await (const c of stream) text += c.choices[0]?.delta?.content ?? "";
    expect(text).toBe("The end");
    const [row] = await rowsOf(k.token, 1);
    expect(row).toMatchObject({ status: "success", prompt_tokens: 9, completion_tokens: 2 });
  });
});
