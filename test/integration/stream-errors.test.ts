import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import OpenAI from "openai";
import postgres from "postgres";
import { newKeyOn, type RunningGateway, startOnPostgres } from "../helpers/binary";
import { inProcessGateway } from "../helpers/gateway";

/**
 * Streams a provider opens with its own error event (a 200 `text/event-stream` whose first event is
 * `{"error": …}`), through the compiled binary, real Postgres and the openai client: retried at another
 * deployment, sent to a fallback, or answered with the error's status when nothing is left, as the same
 * error answered as JSON is. The provider is a raw Bun server answering by the upstream model name.
 */
let up: ReturnType<typeof Bun.serve>;
let gw: RunningGateway;
let dbUrl: string;
const calls = new Map<string, number>();

const chunk = (delta: object, finish: string | null = null) =>
  ({ id: "c1", object: "chat.completion.chunk", created: 1, model: "m", choices: [{ index: 0, delta, finish_reason: finish }] });
const usage = { id: "c1", object: "chat.completion.chunk", created: 1, model: "m", choices: [], usage: { prompt_tokens: 10, completion_tokens: 4, total_tokens: 14 } };
const sse = (events: (string | object)[]) =>
  new Response(events.map((e) => `data: ${typeof e === "string" ? e : JSON.stringify(e)}\n\n`).join(""), { headers: { "content-type": "text/event-stream" } });

const raw = (text: string) => new Response(text, { headers: { "content-type": "text/event-stream" } });

/** What each upstream model answers. */
const ANSWERS: Record<string, () => Response> = {
  good: () => sse([chunk({ role: "assistant", content: "" }), chunk({ content: "all is well" }), chunk({}, "stop"), usage, "[DONE]"]),
  overloaded: () => sse([{ error: { message: "The server is overloaded", type: "server_error", code: 529 } }, "[DONE]"]),
  limited: () => sse([{ error: { message: "Rate limit reached for requests", type: "requests", code: "429" } }]),
  plain: () => sse([{ error: { message: "Something went wrong upstream", type: "server_error" } }]),
  garbled: () => new Response("data: Internal Server Error\n\n", { headers: { "content-type": "text/event-stream" } }),
  late: () => sse([chunk({ role: "assistant", content: "" }), chunk({ content: "half an answer" }), { error: { message: "The stream broke", type: "server_error", code: 500 } }]),
  // Errors whose code or type is a word, and events named `error` with no `error` member.
  wordlimit: () => sse([{ error: { message: "Rate limit reached for gpt-4o", type: "requests", code: "rate_limit_exceeded" } }]),
  toolong: () => sse([{ error: { message: "This model's maximum context length is 8192 tokens", type: "invalid_request_error", code: "context_length_exceeded" } }]),
  named: () => raw('event: error\ndata: {"message": "Service busy"}\n\n'),
  bare: () => raw('event: error\ndata: {"type": "overloaded_error", "message": "Overloaded"}\n\n'),
  namedlate: () => raw(`data: ${JSON.stringify(chunk({ content: "half an answer" }))}\n\nevent: error\ndata: {"message": "The stream broke off"}\n\n`),
  jsonquota: () => Response.json({ error: { message: "You exceeded your current quota", type: "insufficient_quota", code: "insufficient_quota" } }),
};

/** A stream whose first event comes after a second, then a word every 20 ms for 4 s. */
function slowly(signal: AbortSignal): Response {
  const encoder = new TextEncoder();
  return new Response(new ReadableStream({
    async start(controller) {
      await Bun.sleep(1000);
      controller.enqueue(encoder.encode(`data: ${JSON.stringify(chunk({ role: "assistant", content: "" }))}\n\n`));
      for (let i = 0; i < 200 && !signal.aborted; i++) {
        await Bun.sleep(20);
        controller.enqueue(encoder.encode(`data: ${JSON.stringify(chunk({ content: "word " }))}\n\n`));
      }
      controller.enqueue(encoder.encode(`data: ${JSON.stringify(chunk({}, "stop"))}\n\ndata: [DONE]\n\n`));
      controller.close();
    },
  }), { headers: { "content-type": "text/event-stream" } });
}

const entry = (name: string, upstream: string, price: number, extra = "") =>
  `  - model_name: ${name}
    litellm_params: {model: openai/${upstream}, api_base: "http://127.0.0.1:${up.port}/v1", api_key: sk-up, input_cost_per_token: ${price}, output_cost_per_token: ${price}${extra}}`;

beforeAll(async () => {
  up = Bun.serve({
    port: 0, hostname: "127.0.0.1", idleTimeout: 60,
    async fetch(req) {
      const model = String(((await req.json()) as { model?: unknown }).model);
      calls.set(model, (calls.get(model) ?? 0) + 1);
      if (model === "slow") return slowly(req.signal);
      return (ANSWERS[model] ?? (() => new Response("unknown model", { status: 404 })))();
    },
  });
  // The failing deployment is all but always picked first; allowed_fails is high so it is never cooled down.
  ({ gateway: gw, dbUrl } = await startOnPostgres(`
model_list:
${entry("pair", "overloaded", 0.000001, ", weight: 1000000")}
${entry("pair", "good", 0.000003)}
${entry("garbled", "garbled", 0.000001, ", weight: 1000000")}
${entry("garbled", "good", 0.000003)}
${entry("lonely", "plain", 0.000001)}
${entry("backup", "good", 0.000005)}
${entry("limited", "limited", 0.000001, ", max_parallel_requests: 1")}
${entry("plain", "plain", 0.000001)}
${entry("late", "late", 0.000001)}
${entry("slow", "slow", 0.000001, ", max_parallel_requests: 1")}
${["wordlimit", "toolong", "named", "bare", "namedlate", "jsonquota"].map((name) => entry(name, name, 0.000001)).join("\n")}
litellm_settings:
  fallbacks: [{"lonely": ["backup"]}]
  request_timeout: 5
router_settings:
  allowed_fails: 100`));
}, 120_000);
afterAll(async () => {
  await gw?.stop("SIGKILL");
  up?.stop(true);
});

const newKey = () => newKeyOn(gw.url);
const clientFor = (key: string) => new OpenAI({ apiKey: key, baseURL: `${gw.url}/v1`, maxRetries: 0 });
const messages = [{ role: "user" as const, content: "Tell me a story" }];

/** Streams a request with the openai client: the text, or the error it threw. */
async function stream(key: string, model: string): Promise<{ text: string; error?: any }> {
  let text = "";
  try {
    const answer = await clientFor(key).chat.completions.create({ model, messages, stream: true });
    for await (const c of answer) text += c.choices[0]?.delta?.content ?? "";
    return { text };
  } catch (error) {
    return { text, error };
  }
}

interface Row { status: string; model: string; prompt_tokens: number; completion_tokens: number; spend: number }
/** The spend log rows of a key once `n` are written (the binary writes spend every 250 ms), and the key's spend. */
async function spendOf(token: string, n: number): Promise<{ rows: Row[]; keySpend: number }> {
  const sql = postgres(dbUrl, { onnotice: () => {} });
  try {
    const read = () => sql<Row[]>`select status, model, prompt_tokens, completion_tokens, spend from spend_logs where api_key = ${token} order by start_time`;
    let rows = await read();
    for (let i = 0; i < 100 && rows.length < n; i++) {
      await Bun.sleep(100);
      rows = await read();
    }
    await Bun.sleep(400);
    rows = await read();
    const [key] = await sql<{ spend: number }[]>`select spend from keys where token = ${token}`;
    return { rows, keySpend: key!.spend };
  } finally {
    await sql.end();
  }
}

describe("a stream the provider opens with an error event", () => {
  test("is retried at the model's other deployment: the client gets that one's answer, charged at its price only", async () => {
    const k = await newKey();
    calls.clear();
    const { text, error } = await stream(k.key, "pair");
    expect(error).toBeUndefined();
    expect(text).toBe("all is well");
    expect(calls.get("overloaded")).toBe(1);
    expect(calls.get("good")).toBe(1);
    const { rows, keySpend } = await spendOf(k.token, 1);
    expect(rows.map((r) => [r.status, r.prompt_tokens, r.completion_tokens])).toEqual([["success", 10, 4]]);
    expect(rows[0]!.spend).toBeCloseTo(14 * 0.000003, 12);
    expect(keySpend).toBeCloseTo(14 * 0.000003, 12);
  });

  test("that is not JSON is retried at the model's other deployment, as an answer that is not JSON is", async () => {
    const k = await newKey();
    calls.clear();
    const { text, error } = await stream(k.key, "garbled");
    expect(error).toBeUndefined();
    expect(text).toBe("all is well");
    expect(calls.get("garbled")).toBe(1);
    const { rows, keySpend } = await spendOf(k.token, 1);
    expect(rows.map((r) => r.status)).toEqual(["success"]);
    expect(keySpend).toBeCloseTo(14 * 0.000003, 12);
  });

  test("goes to the model's fallback when its deployments fail so", async () => {
    const k = await newKey();
    calls.clear();
    const { text, error } = await stream(k.key, "lonely");
    expect(error).toBeUndefined();
    expect(text).toBe("all is well");
    expect(calls.get("plain")).toBe(1);
    const { rows, keySpend } = await spendOf(k.token, 1);
    expect(rows.map((r) => [r.status, r.model])).toEqual([["success", "backup"]]);
    expect(keySpend).toBeCloseTo(14 * 0.000005, 12);
  });

  test("with nothing left to try is answered in the OpenAI envelope, with the status the same error as JSON gets; it costs nothing and frees its slot", async () => {
    const k = await newKey();
    // max_parallel_requests: 1: a slot kept by a failed stream would hold the next request until request_timeout.
    for (let i = 0; i < 3; i++) {
      const started = performance.now();
      const { error } = await stream(k.key, "limited");
      expect(performance.now() - started).toBeLessThan(2000);
      expect(error).toBeInstanceOf(OpenAI.RateLimitError);
      expect(error.status).toBe(429);
      expect(error.error).toMatchObject({ message: "Rate limit reached for requests", type: "requests" });
    }
    // No status of its own: the provider failed to answer, a 502.
    const { error } = await stream(k.key, "plain");
    expect(error).toBeInstanceOf(OpenAI.APIError);
    expect(error.status).toBe(502);
    expect(error.error.message).toBe("Something went wrong upstream");
    const { rows, keySpend } = await spendOf(k.token, 4);
    expect(rows.map((r) => [r.status, r.spend])).toEqual(Array.from({ length: 4 }, () => ["failure", 0]));
    expect(keySpend).toBe(0);
  });

  test("after some content is passed on as it came, and what was streamed is charged", async () => {
    const k = await newKey();
    const { text, error } = await stream(k.key, "late");
    expect(text).toBe("half an answer");
    expect(error).toBeInstanceOf(OpenAI.APIError);
    expect(String(error.message)).toContain("The stream broke");
    const { rows, keySpend } = await spendOf(k.token, 1);
    expect(rows).toHaveLength(1);
    expect(rows[0]!.status).toBe("stream_failed");
    expect(rows[0]!.completion_tokens).toBeGreaterThan(0);
    expect(keySpend).toBeCloseTo(rows[0]!.spend, 12);
  });
});

describe("a provider error whose code or type is a word", () => {
  test("has the status the provider answers it with: at a stream's start, named `error` with no `error` member, and in a 200 JSON answer", async () => {
    const k = await newKey();
    const cases = [
      ["wordlimit", OpenAI.RateLimitError, 429, "Rate limit reached for gpt-4o"],
      ["toolong", OpenAI.BadRequestError, 400, "This model's maximum context length is 8192 tokens"],
      ["named", OpenAI.InternalServerError, 502, "Service busy"],
      ["bare", OpenAI.InternalServerError, 529, "Overloaded"],
    ] as const;
    for (const [model, kind, status, message] of cases) {
      const { error } = await stream(k.key, model);
      expect(`${model} ${error?.status}`).toBe(`${model} ${status}`);
      expect(error).toBeInstanceOf(kind);
      expect(error.error.message).toBe(message);
    }
    const error = await clientFor(k.key).chat.completions.create({ model: "jsonquota", messages }).catch((e) => e);
    expect(error).toBeInstanceOf(OpenAI.RateLimitError);
    expect(error.error).toMatchObject({ message: "You exceeded your current quota", type: "insufficient_quota" });
    const { rows, keySpend } = await spendOf(k.token, 5);
    expect(rows.map((r) => [r.status, r.spend])).toEqual(Array.from({ length: 5 }, () => ["failure", 0]));
    expect(keySpend).toBe(0);
  });

  test("an event named `error` after some content fails the stream with the provider's words, and what was streamed is charged", async () => {
    const k = await newKey();
    const { text, error } = await stream(k.key, "namedlate");
    expect(text).toBe("half an answer");
    expect(error).toBeInstanceOf(OpenAI.APIError);
    expect(String(error.message)).toContain("The stream broke off");
    const { rows, keySpend } = await spendOf(k.token, 1);
    expect(rows.map((r) => r.status)).toEqual(["stream_failed"]);
    expect(rows[0]!.completion_tokens).toBeGreaterThan(0);
    expect(keySpend).toBeCloseTo(rows[0]!.spend, 12);
  });
});

describe("a client that leaves a stream", () => {
  test("while litegate waits for its first event, or after some of it, frees its slot and is charged its prompt and what was streamed", async () => {
    const k = await newKey();
    let received = "";
    for (const leaveAfter of [0, 10]) {
      const leave = new AbortController();
      const started = performance.now();
      if (leaveAfter === 0) setTimeout(() => leave.abort(), 300);
      try {
        const answer = await clientFor(k.key).chat.completions.create({ model: "slow", messages, stream: true }, { signal: leave.signal });
        let n = 0;
        for await (const c of answer) {
          received += c.choices[0]?.delta?.content ?? "";
          if (++n > leaveAfter) leave.abort();
        }
      } catch (error) {
        expect(error).toBeInstanceOf(OpenAI.APIUserAbortError);
      }
      // Its slot (max_parallel_requests: 1) is free at once: the next request starts within the second the provider takes.
      expect(performance.now() - started).toBeLessThan(2500);
    }
    expect(received).toBe("word ".repeat(10));
    const { rows, keySpend } = await spendOf(k.token, 2);
    expect(rows.map((r) => r.status)).toEqual(["client_disconnected", "client_disconnected"]);
    expect(rows[0]!.prompt_tokens).toBeGreaterThan(0);
    expect(rows[0]!.completion_tokens).toBe(0);
    expect(rows[1]!.completion_tokens).toBeGreaterThanOrEqual(10);
    expect(keySpend).toBeCloseTo(rows[0]!.spend + rows[1]!.spend, 12);
  });
});

describe("a deployment whose streams open with an error event", () => {
  test("counts those failures towards allowed_fails and is cooled down, as one answering the error as JSON is", async () => {
    const h = await inProcessGateway(`
model_list:
  - model_name: pair
    litellm_params: {model: openai/overloaded, api_base: "http://127.0.0.1:${up.port}/v1", weight: 1000000, input_cost_per_token: 0.000001, output_cost_per_token: 0.000001}
    model_info: {id: failing}
  - model_name: pair
    litellm_params: {model: openai/good, api_base: "http://127.0.0.1:${up.port}/v1", input_cost_per_token: 0.000001, output_cost_per_token: 0.000001}
general_settings:
  master_key: sk-1234
router_settings:
  allowed_fails: 2
  cooldown_time: 30
`);
    try {
      const router = h.gateway.runtime().router;
      const failing = router.deploymentsOf("pair").find((d) => d.id === "failing")!;
      calls.clear();
      for (let i = 0; i < 3; i++) {
        const response = await h.chat("sk-1234", { stream: true }, "pair");
        expect(response.status).toBe(200);
        expect(await response.text()).toContain("all is well");
      }
      expect(router.cooledDown(failing)).toBe(true);
      // Tried until its second failure cooled it down, then no more.
      expect(calls.get("overloaded")).toBe(2);
      expect(calls.get("good")).toBe(3);
    } finally {
      await h.close();
    }
  });
});
