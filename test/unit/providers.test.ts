import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createProviders, SUPPORTED_PROVIDERS } from "../../src/providers";
import { usageOf } from "../../src/providers/http";
import type { Deployment, Route, UpstreamCall, UpstreamResult } from "../../src/providers/types";

const KEY = "sk-upstream-secret-4242";

interface Seen {
  method: string;
  url: string;
  headers: Headers;
  body: string;
}

/** A local OpenAI-compatible server; each test says how it answers. */
let server: ReturnType<typeof Bun.serve>;
let seen: Seen[] = [];
let answer: (request: Request, body: string) => Response | Promise<Response> = () => Response.json({});

beforeAll(() => {
  server = Bun.serve({
    port: 0,
    async fetch(request) {
      const body = await request.text();
      seen.push({ method: request.method, url: request.url, headers: request.headers, body });
      return answer(request, body);
    },
  });
});
afterAll(() => server.stop(true));

const base = () => `http://127.0.0.1:${server.port}`;

/** All a stream result carries: the first bytes the adapter read, then the rest. */
async function streamText(result: Extract<UpstreamResult, { kind: "stream" }>): Promise<string> {
  const decoder = new TextDecoder();
  let text = result.head ? decoder.decode(result.head, { stream: true }) : "";
  for await (const chunk of result.stream) text += decoder.decode(chunk, { stream: true });
  return text + decoder.decode();
}

function deployment(provider: string, upstreamModel: string, params: Record<string, unknown> = {}): Deployment {
  return { id: `${provider}#0`, modelName: "public", provider, upstreamModel, params, modelInfo: {} };
}

function callOf(d: Deployment, raw: string, options: { route?: Route; signal?: AbortSignal } = {}): UpstreamCall {
  const body = JSON.parse(raw);
  return { route: options.route ?? "chat", deployment: d, body, rawBody: raw, stream: body.stream === true, signal: options.signal ?? new AbortController().signal };
}

async function send(d: Deployment, raw: string, options: { route?: Route; signal?: AbortSignal } = {}): Promise<UpstreamResult> {
  seen = [];
  return createProviders({}).forDeployment(d).send(callOf(d, raw, options));
}

const completion = { id: "chatcmpl-1", object: "chat.completion", choices: [{ index: 0, message: { role: "assistant", content: "hi" } }], usage: { prompt_tokens: 11, completion_tokens: 5, total_tokens: 16, prompt_tokens_details: { cached_tokens: 3 } } };

describe("registry", () => {
  test("OpenAI-compatible prefixes, azure, anthropic and mock are known; anything else is refused by name", () => {
    for (const name of ["openai", "text-completion-openai", "hosted_vllm", "azure", "anthropic", "mock"]) expect(SUPPORTED_PROVIDERS).toContain(name);
    expect(() => createProviders({}).forDeployment(deployment("bogus", "x"))).toThrow(/unknown provider "bogus".*supported: openai/);
  });

  test("one adapter per deployment; a deployment with a broken api_base or an azure one without it fails at creation", () => {
    const providers = createProviders({});
    const d = deployment("openai", "m", { api_base: base() });
    expect(providers.forDeployment(d)).toBe(providers.forDeployment(d));
    expect(() => providers.forDeployment(deployment("openai", "m", { api_base: "localhost:8000" }))).toThrow(/api_base must be an http/);
    expect(() => providers.forDeployment(deployment("azure", "m"))).toThrow(/azure needs litellm_params.api_base/);
  });
});

describe("OpenAI-compatible request", () => {
  test("the client's bytes go upstream untouched when the model name already matches", async () => {
    answer = () => Response.json(completion);
    const raw = '{ "model" : "gpt-4o",\n "messages":[{"role":"user","content":"h\\u00e9llo"}], "x_unknown": {"keep": [1, 2.50]} }';
    const result = await send(deployment("openai", "gpt-4o", { api_base: `${base()}/v1/`, api_key: KEY, organization: "org-7" }), raw);
    expect(result.kind).toBe("json");
    expect(seen[0].body).toBe(raw);
    expect(seen[0].url).toBe(`${base()}/v1/chat/completions`);
    expect(seen[0].headers.get("authorization")).toBe(`Bearer ${KEY}`);
    expect(seen[0].headers.get("openai-organization")).toBe("org-7");
    expect(seen[0].headers.get("content-type")).toBe("application/json");
  });

  test("without api_key no Authorization header is sent (local servers)", async () => {
    answer = () => Response.json(completion);
    await send(deployment("hosted_vllm", "llama", { api_base: base() }), '{"model":"llama","messages":[]}');
    expect(seen[0].headers.get("authorization")).toBeNull();
  });

  test("a public model name is replaced by the upstream one, and nothing else changes", async () => {
    answer = () => Response.json(completion);
    const raw = '{"model": "public","messages":[{"role":"user","content":"a \\"model\\": \\"public\\" lookalike"}],"n":1}';
    await send(deployment("openai", "gpt-4o-mini", { api_base: base() }), raw);
    expect(seen[0].body).toBe('{"model": "gpt-4o-mini","messages":[{"role":"user","content":"a \\"model\\": \\"public\\" lookalike"}],"n":1}');
  });

  test("model names with regular-expression characters are swapped as plain text", async () => {
    answer = () => Response.json(completion);
    for (const name of ["llama3.1:8b", "a+b(c)$1", "q\\"]) {
      const raw = `{"model":${JSON.stringify(name)},"messages":[]}`;
      await send(deployment("openai", "up$&", { api_base: base() }), raw);
      expect(seen[0].body).toBe('{"model":"up$&","messages":[]}');
    }
  });

  test("an ambiguous model spot (a nested model key with the same name) still sends a correct body", async () => {
    answer = () => Response.json(completion);
    const raw = '{"prediction":{"model":"public"},"model":"public","messages":[]}';
    await send(deployment("openai", "real", { api_base: base() }), raw);
    expect(JSON.parse(seen[0].body)).toEqual({ prediction: { model: "public" }, model: "real", messages: [] });
  });

  test("streams ask for usage, keeping the client's other stream options", async () => {
    answer = () => new Response("data: [DONE]\n\n", { headers: { "content-type": "text/event-stream" } });
    const plain = '{"model":"m","stream":true,"messages":[]}\n';
    await send(deployment("openai", "m", { api_base: base() }), plain);
    expect(seen[0].body).toBe('{"model":"m","stream":true,"messages":[],"stream_options":{"include_usage":true}}\n');

    await send(deployment("openai", "up", { api_base: base() }), '{"model":"m","stream":true,"messages":[],"stream_options":{"foo":1,"include_usage":false}}');
    const sent = JSON.parse(seen[0].body);
    expect(sent.model).toBe("up");
    expect(sent.stream_options).toEqual({ foo: 1, include_usage: true });

    const already = '{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[]}';
    await send(deployment("openai", "m", { api_base: base() }), already);
    expect(seen[0].body).toBe(already);
  });

  test("a body that must change is changed in place: big numbers, spacing and nested look-alikes stay as sent", async () => {
    answer = () => new Response("data: [DONE]\n\n", { headers: { "content-type": "text/event-stream" } });
    const raw = '{ "prediction": {"model": "public", "note": "a \\"quoted\\" }"}, "seed": 12345678901234567890, "extra": 1.50,\n'
      + '  "model" : "public", "stream": true, "stream_options": {"include_usage": false, "x": [1, {"y": "}"}]}, "messages": [] }';
    await send(deployment("openai", "real", { api_base: base() }), raw);
    expect(seen[0].body).toBe(raw.replace('"model" : "public"', '"model" : "real"').replace('{"include_usage": false, "x": [1, {"y": "}"}]}', '{"include_usage":true,"x":[1,{"y":"}"}]}'));
    const withNull = '{"model":"m","seed":12345678901234567890,"stream":true,"stream_options":null,"messages":[]}';
    await send(deployment("openai", "m", { api_base: base() }), withNull);
    expect(seen[0].body).toBe(withNull.replace('"stream_options":null', '"stream_options":{"include_usage":true}'));
  });

  test("a body naming model twice reaches the provider with the one litegate checked and priced (the last) only", async () => {
    answer = () => Response.json({ choices: [], usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 } });
    for (const [upstream, raw] of [["same", '{"model":"o1-pro","model":"same","messages":[]}'], ["real", '{"model":"o1-pro","model":"public","messages":[]}']] as const) {
      seen = [];
      await send(deployment("openai", upstream, { api_base: base() }), raw);
      expect(JSON.parse(seen[0]!.body)).toEqual({ model: upstream, messages: [] });
      expect(seen[0]!.body.match(/"model"/g)!.length).toBe(1);
    }
    // A nested member of that name is not a second one: the bytes go as sent.
    const nested = '{"model":"same","prediction":{"model":"x"},"messages":[]}';
    seen = [];
    await send(deployment("openai", "same", { api_base: base() }), nested);
    expect(seen[0]!.body).toBe(nested);
  });

  test("LiteLLM's litellm_metadata, and metadata without store, are cut out of the text; nothing else changes", async () => {
    answer = () => Response.json(completion);
    const cases: Array<[string, string]> = [
      ['{"metadata":{"user_id":"c"}, "model":"m","seed":12345678901234567890,"messages":[]}', '{"model":"m","seed":12345678901234567890,"messages":[]}'],
      ['{"model":"m", "seed":12345678901234567890,"metadata":{"a":"}"} ,"litellm_metadata":{"user":"c"}}', '{"model":"m", "seed":12345678901234567890 }'],
      ['{"litellm_metadata":{},"metadata":{},"model":"m","n":1.50}', '{"model":"m","n":1.50}'],
      ['{"model":"m","metadata":null,"n":1.50}', '{"model":"m","n":1.50}'],
      ['{"model":"m","store":true,"metadata":{"purpose":"eval"},"litellm_metadata":{"user":"c"},"n":1.50}', '{"model":"m","store":true,"metadata":{"purpose":"eval"},"n":1.50}'],
    ];
    for (const [raw, sent] of cases) {
      await send(deployment("openai", "m", { api_base: base() }), raw);
      expect(seen[0].body).toBe(sent);
    }
    // With the model swapped and usage asked for too.
    await send(deployment("openai", "real", { api_base: base() }), '{"model":"m","stream":true,"messages":[],"metadata":{"tags":["x"]}}');
    expect(seen[0].body).toBe('{"model":"real","stream":true,"messages":[],"stream_options":{"include_usage":true}}');
  });

  test("completions and embeddings go to their own paths; embeddings never get stream options", async () => {
    answer = () => Response.json({ object: "list", data: [], usage: { prompt_tokens: 4, total_tokens: 4 } });
    const result = await send(deployment("openai", "emb", { api_base: base() }), '{"model":"emb","input":"x"}', { route: "embeddings" });
    expect(seen[0].url).toBe(`${base()}/embeddings`);
    expect(result).toMatchObject({ kind: "json", usage: { prompt_tokens: 4, completion_tokens: 0, total_tokens: 4 } });
    await send(deployment("text-completion-openai", "inst", { api_base: base() }), '{"model":"inst","prompt":"x"}', { route: "completions" });
    expect(seen[0].url).toBe(`${base()}/completions`);
  });
});

describe("OpenAI-compatible answers", () => {
  test("JSON answers are returned byte for byte, with usage read from them", async () => {
    const text = `${JSON.stringify(completion, null, 2)}\n`;
    answer = () => new Response(text, { status: 200, headers: { "content-type": "application/json" } });
    const result = await send(deployment("openai", "m", { api_base: base() }), '{"model":"m","messages":[]}');
    expect(result).toEqual({ kind: "json", status: 200, body: text, usage: { prompt_tokens: 11, completion_tokens: 5, total_tokens: 16, cached_tokens: 3 } });
  });

  test("an event stream is handed over as the provider sent it", async () => {
    const transcript = 'data: {"choices":[{"delta":{"content":"a"}}]}\n\ndata: {"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}\n\ndata: [DONE]\n\n';
    answer = () => new Response(transcript, { headers: { "content-type": "text/event-stream; charset=utf-8" } });
    const result = await send(deployment("openai", "m", { api_base: base() }), '{"model":"m","stream":true,"messages":[]}');
    expect(result.kind).toBe("stream");
    if (result.kind === "stream") expect(await streamText(result)).toBe(transcript);
  });

  /** A stream answer sending these pieces, `gapMs` apart (the first at once). */
  const piecewise = (pieces: string[], gapMs = 0) => () => {
    const encoder = new TextEncoder();
    let next = 0;
    return new Response(new ReadableStream({
      async pull(controller) {
        if (next > 0 && gapMs) await Bun.sleep(gapMs);
        if (next === pieces.length) return controller.close();
        controller.enqueue(encoder.encode(pieces[next++]!));
      },
    }), { headers: { "content-type": "text/event-stream" } });
  };
  const streamed = '{"model":"m","stream":true,"messages":[]}';

  test("a stream the provider opens with an error event is that error, as if answered as JSON: its code as status, else 502", async () => {
    const overloaded = JSON.stringify({ error: { message: `Overloaded, key ${KEY}`, type: "server_error", code: 529 } });
    // Pings first, the event split across pieces, its lines ended with CRLF.
    answer = piecewise([": ping\r\n\r\n", `data: ${overloaded.slice(0, 20)}`, `${overloaded.slice(20)}\r`, "\n\r\n", "data: [DONE]\n\n"]);
    const result = await send(deployment("openai", "m", { api_base: base(), api_key: KEY }), streamed);
    expect(result).toMatchObject({ kind: "error", status: 529, type: "server_error" });
    expect(result.kind === "error" && result.message).toBe("Overloaded, key [redacted]");
    expect(result.kind === "error" && result.abandoned).toBeFalsy();
    answer = piecewise(['data: {"error": {"message": "no capacity"}}\n\n']);
    expect(await send(deployment("openai", "m", { api_base: base() }), streamed)).toMatchObject({ kind: "error", status: 502, message: "no capacity" });
  });

  test("an error whose code or type is a word has the status the provider answers it with, in a stream's first event and in a 200 JSON answer", async () => {
    const cases = [
      [{ message: "Rate limit reached", type: "requests", code: "rate_limit_exceeded" }, 429],
      [{ message: "You exceeded your current quota", type: "insufficient_quota", code: "insufficient_quota" }, 429],
      [{ message: "maximum context length is 8192 tokens", type: "invalid_request_error", code: "context_length_exceeded" }, 400],
      [{ message: "Incorrect API key provided", type: "invalid_request_error", code: "invalid_api_key" }, 401],
      [{ message: "The model does not exist", type: "invalid_request_error", code: "model_not_found" }, 404],
      [{ message: "Slow down", type: "rate_limit_error" }, 429],
      [{ message: "Overloaded", type: "overloaded_error" }, 529],
      [{ message: "Something broke", type: "server_error", code: "something_new" }, 502],
    ] as const;
    for (const [error, status] of cases) {
      answer = piecewise([`data: ${JSON.stringify({ error })}\n\n`]);
      expect(await send(deployment("openai", "m", { api_base: base() }), streamed)).toMatchObject({ kind: "error", status, message: error.message });
      answer = () => Response.json({ error });
      expect(await send(deployment("openai", "m", { api_base: base() }), '{"model":"m","messages":[]}')).toMatchObject({ kind: "error", status, message: error.message });
    }
  });

  test("a stream whose first event is named `error` is that error whatever its data: a bare message, or a bare type", async () => {
    answer = piecewise(['event: error\ndata: {"message": "Service busy"}\n\n']);
    expect(await send(deployment("openai", "m", { api_base: base() }), streamed)).toMatchObject({ kind: "error", status: 502, message: "Service busy" });
    answer = piecewise([": ping\n\nevent: error\r\n", 'data: {"type": "overloaded_error", "message": "Overloaded"}\r\n\r\n']);
    expect(await send(deployment("openai", "m", { api_base: base() }), streamed)).toMatchObject({ kind: "error", status: 529, message: "Overloaded" });
    // A name goes with its own event only: an answer after a nameless ping is an answer.
    answer = piecewise(["event: error\n\n", `data: ${JSON.stringify({ id: "c", choices: [{ index: 0, delta: { content: "hi" }, finish_reason: "stop" }] })}\n\ndata: [DONE]\n\n`]);
    expect((await send(deployment("openai", "m", { api_base: base() }), streamed)).kind).toBe("stream");
  });

  test("a stream whose first event is not JSON is a 502, as an answer that is not JSON is; one chunk per data line is JSON", async () => {
    answer = piecewise(["data: Internal Server Error\n\n"]);
    const result = await send(deployment("openai", "m", { api_base: base() }), streamed);
    expect(result).toMatchObject({ kind: "error", status: 502, type: "upstream_error" });
    expect(result.kind === "error" && result.abandoned).toBeFalsy();
    answer = piecewise(['data: {"error": {"message": "busy", "code": 503}}\ndata: [DONE]\n\n']);
    expect(await send(deployment("openai", "m", { api_base: base() }), streamed)).toMatchObject({ kind: "error", status: 503, message: "busy" });
    answer = piecewise(['data: {"choices": []}\ndata: {"choices": []}\n\n', "data:\n\n"]);
    expect((await send(deployment("openai", "m", { api_base: base() }), streamed)).kind).toBe("stream");
    answer = piecewise(["data:\n\n", "data: [DONE]\n\n"]);
    expect((await send(deployment("openai", "m", { api_base: base() }), streamed)).kind).toBe("stream");
  });

  test("a stream whose first event is an answer is handed over whole, an error after it included; only the first event is waited for", async () => {
    const content = 'data: {"choices":[{"index":0,"delta":{"content":"a"}}]}\n\n';
    const error = 'data: {"error": {"message": "broke", "code": 500}}\n\n';
    answer = piecewise([content.slice(0, 10), content.slice(10) + error]);
    const result = await send(deployment("openai", "m", { api_base: base() }), streamed);
    expect(result.kind).toBe("stream");
    if (result.kind === "stream") expect(await streamText(result)).toBe(content + error);
    // The answer comes back when its first event has: the rest, 400 ms later, is not waited for.
    answer = piecewise([content, "data: [DONE]\n\n"], 400);
    const started = performance.now();
    const later = await send(deployment("openai", "m", { api_base: base() }), streamed);
    expect(performance.now() - started).toBeLessThan(300);
    if (later.kind === "stream") expect(await streamText(later)).toBe(`${content}data: [DONE]\n\n`);
  });

  test("a stream the provider closes or breaks off before its first event is a 502 that bills the prompt; pings keep stream_timeout from cutting it", async () => {
    answer = piecewise([": ping\n\n"]);
    expect(await send(deployment("openai", "m", { api_base: base() }), streamed)).toMatchObject({ kind: "error", status: 502, abandoned: true });
    answer = () => new Response(new ReadableStream({
      start(controller) {
        controller.enqueue(new TextEncoder().encode(": ping\n\n"));
        setTimeout(() => controller.error(new Error("gone")), 20);
      },
    }), { headers: { "content-type": "text/event-stream" } });
    expect(await send(deployment("openai", "m", { api_base: base() }), streamed)).toMatchObject({ kind: "error", status: 502, abandoned: true });
    answer = piecewise([": ping\n\n", ": ping\n\n", ": ping\n\n", 'data: {"choices":[]}\n\n'], 80);
    expect((await send(deployment("openai", "m", { api_base: base(), stream_timeout: 0.15 }), streamed)).kind).toBe("stream");
    answer = piecewise([": ping\n\n", 'data: {"choices":[]}\n\n'], 400);
    expect(await send(deployment("openai", "m", { api_base: base(), stream_timeout: 0.15 }), streamed)).toMatchObject({ kind: "error", status: 504 });
  });
});

describe("Azure", () => {
  test("deployment URL with api-version, api-key header, same body handling", async () => {
    answer = () => Response.json(completion);
    const raw = '{"model":"public","messages":[]}';
    const result = await send(deployment("azure", "my deployment", { api_base: `${base()}/`, api_key: KEY, api_version: "2024-02-01" }), raw);
    expect(result.kind).toBe("json");
    expect(seen[0].url).toBe(`${base()}/openai/deployments/my%20deployment/chat/completions?api-version=2024-02-01`);
    expect(seen[0].headers.get("api-key")).toBe(KEY);
    expect(seen[0].headers.get("authorization")).toBeNull();
    expect(JSON.parse(seen[0].body).model).toBe("my deployment");
  });

  test("a stream asks for usage only on api-versions that take stream_options (2024-09-01-preview on); older ones are sent the body as is", async () => {
    answer = () => new Response("data: [DONE]\n\n", { headers: { "content-type": "text/event-stream" } });
    const raw = '{"model":"public","stream":true,"messages":[]}';
    const asked: Record<string, unknown> = {};
    for (const version of ["2024-06-01", "2024-02-15-preview", "2023-05-15", "2024-09-01-preview", "2024-10-21", "2025-04-01-preview", "preview", " 2024-06-01 ", "20240601"]) {
      const result = await send(deployment("azure", "dep", { api_base: base(), api_key: KEY, api_version: version }), raw);
      if (result.kind === "stream") await streamText(result);
      asked[version] = JSON.parse(seen[0].body).stream_options ?? null;
    }
    expect(asked).toEqual({
      "2024-06-01": null, "2024-02-15-preview": null, "2023-05-15": null,
      "2024-09-01-preview": { include_usage: true }, "2024-10-21": { include_usage: true }, "2025-04-01-preview": { include_usage: true }, preview: { include_usage: true },
      " 2024-06-01 ": null, "20240601": null,
    });
    // Sent as written, without the spaces around it.
    expect(seen[0].url).toEndWith("?api-version=20240601");
  });

  test("api-version defaults to 2024-10-21 (the first GA version taking stream_options); key and base may come from the environment", async () => {
    answer = () => Response.json({ data: [] });
    const d = deployment("azure", "emb");
    seen = [];
    await createProviders({ AZURE_API_BASE: base(), AZURE_API_KEY: "env-key-123" }).forDeployment(d).send(callOf(d, '{"model":"emb","input":"x"}', { route: "embeddings" }));
    expect(seen[0].url).toBe(`${base()}/openai/deployments/emb/embeddings?api-version=2024-10-21`);
    expect(seen[0].headers.get("api-key")).toBe("env-key-123");
  });
});

describe("errors", () => {
  const d = () => deployment("openai", "m", { api_base: base(), api_key: KEY });
  const raw = '{"model":"m","messages":[]}';

  test("an api_key naming an unset environment variable sends nothing: the provider's default key never goes out", async () => {
    const { parseConfig, deploymentsOf } = await import("../../src/config");
    const env = { OPENAI_API_KEY: "sk-default-must-not-leak", AZURE_API_KEY: "sk-azure-default", ANTHROPIC_API_KEY: "sk-ant-default" };
    const { config, warnings } = parseConfig(`
model_list:
  - model_name: team-b
    litellm_params: {model: openai/m, api_base: "${base()}", api_key: os.environ/TEAM_B_KEY}
  - model_name: team-b-azure
    litellm_params: {model: azure/m, api_base: "${base()}", api_key: os.environ/TEAM_B_KEY}
  - model_name: team-b-claude
    litellm_params: {model: anthropic/m, api_base: "${base()}", api_key: os.environ/TEAM_B_KEY}
`, env);
    expect(warnings).toContain("model_list[0].litellm_params.api_key: environment variable TEAM_B_KEY is not set; requests to this deployment will fail until it is set");
    seen = [];
    for (const d of deploymentsOf(config)) {
      const result = await createProviders(env).forDeployment(d).send(callOf(d, raw));
      expect(result).toEqual({
        kind: "error", status: 500, type: "internal_server_error",
        message: `deployment ${d.modelName}: its api_key is os.environ/TEAM_B_KEY, and TEAM_B_KEY is not set in the gateway's environment; nothing was sent to the provider`,
      });
    }
    expect(seen).toEqual([]);
  });

  test("a provider error keeps its status, message and type", async () => {
    answer = () => Response.json({ error: { message: "The server had an error", type: "server_error" } }, { status: 500 });
    expect(await send(d(), raw)).toEqual({ kind: "error", status: 500, message: "The server had an error", type: "server_error", param: undefined, retryAfter: undefined });
    answer = () => Response.json({ error: { message: "too long", type: "invalid_request_error", param: "messages", code: "context_length_exceeded" } }, { status: 400 });
    expect(await send(d(), raw)).toMatchObject({ kind: "error", status: 400, type: "invalid_request_error", param: "messages" });
  });

  test("429 carries retry-after in seconds", async () => {
    answer = () => Response.json({ error: { message: "Rate limit reached", type: "rate_limit_error" } }, { status: 429, headers: { "retry-after": "7" } });
    expect(await send(d(), raw)).toMatchObject({ kind: "error", status: 429, message: "Rate limit reached", type: "rate_limit_error", retryAfter: 7 });
  });

  test("a non-JSON error body is the message, trimmed to 1000 characters", async () => {
    answer = () => new Response(`  ${"x".repeat(5000)}  `, { status: 503 });
    const result = await send(d(), raw);
    expect(result).toMatchObject({ kind: "error", status: 503 });
    if (result.kind === "error") expect(result.message).toBe("x".repeat(1000));
  });

  test("a provider echoing the key never puts it in a message: as sent, in another case, or masked with its ends showing", async () => {
    answer = (request) => Response.json({ error: { message: `Incorrect API key provided: ${request.headers.get("authorization")}` } }, { status: 401 });
    const result = await send(d(), raw);
    expect(result).toMatchObject({ kind: "error", status: 401 });
    expect(JSON.stringify(result)).not.toContain(KEY);
    answer = () => Response.json({ error: { message: `Bad key ${KEY.toUpperCase()}; Incorrect API key provided: sk-upst************4242. See docs.` } }, { status: 401 });
    const masked = await send(d(), raw);
    expect(masked).toMatchObject({ kind: "error", message: "Bad key [redacted]; Incorrect API key provided: [redacted]. See docs." });
    // A stream takes the key along, for the tap to blank out of the provider's error events.
    answer = () => new Response("data: [DONE]\n\n", { headers: { "content-type": "text/event-stream" } });
    expect(await send(d(), '{"model":"m","stream":true,"messages":[]}')).toMatchObject({ kind: "stream", secret: KEY });
  });

  test("a 2xx that is not JSON is a 502", async () => {
    answer = () => new Response("<html>gateway page</html>", { status: 200 });
    expect(await send(d(), raw)).toMatchObject({ kind: "error", status: 502, message: expect.stringContaining("invalid JSON") });
  });

  test("a redirect is not followed (the provider key would go with it): a 502 saying so", async () => {
    const elsewhere: string[] = [];
    const other = Bun.serve({ port: 0, fetch: (request) => (elsewhere.push(request.headers.get("authorization") ?? ""), Response.json({ choices: [] })) });
    try {
      for (const status of [301, 302, 307, 308]) {
        answer = () => new Response(null, { status, headers: { location: `http://127.0.0.1:${other.port}/v1/chat/completions` } });
        const result = await send(d(), raw);
        expect(result).toMatchObject({ kind: "error", status: 502, message: expect.stringContaining(`answered ${status} (a redirect)`) });
        expect(JSON.stringify(result)).not.toContain(KEY);
      }
      expect(elsewhere).toEqual([]);
    } finally {
      other.stop(true);
    }
  });

  test("a closed port is a 502 connection error", async () => {
    const closed = Bun.serve({ port: 0, fetch: () => new Response() });
    const port = closed.port;
    closed.stop(true);
    const result = await send(deployment("openai", "m", { api_base: `http://127.0.0.1:${port}`, api_key: KEY }), raw);
    expect(result).toMatchObject({ kind: "error", status: 502, connectionError: true, message: expect.stringMatching(/^Upstream connection failed: 127\.0\.0\.1:\d+ \(connection refused/) });
    expect(JSON.stringify(result)).not.toContain(KEY);
  });

  test("a deployment timeout is a 504; a stream's own timeout covers the wait for the answer", async () => {
    answer = async () => {
      await Bun.sleep(1500);
      return Response.json(completion);
    };
    const started = performance.now();
    const result = await send(deployment("openai", "m", { api_base: base(), api_key: KEY, timeout: 0.15 }), raw);
    expect(result).toMatchObject({ kind: "error", status: 504, message: expect.stringContaining("within 0.15s") });
    expect(performance.now() - started).toBeLessThan(1000);
    const streamed = await send(deployment("openai", "m", { api_base: base(), timeout: 60, stream_timeout: 0.15 }), '{"model":"m","stream":true,"messages":[]}');
    expect(streamed).toMatchObject({ kind: "error", status: 504 });
  });

  test("a stream that has started is not cut by stream_timeout", async () => {
    const encoder = new TextEncoder();
    answer = () => new Response(new ReadableStream({
      start(controller) {
        controller.enqueue(encoder.encode(": first\n\ndata: {}\n\n"));
      },
      async pull(controller) {
        await Bun.sleep(300);
        controller.enqueue(encoder.encode("data: [DONE]\n\n"));
        controller.close();
      },
    }), { headers: { "content-type": "text/event-stream" } });
    const result = await send(deployment("openai", "m", { api_base: base(), stream_timeout: 0.1 }), '{"model":"m","stream":true,"messages":[]}');
    expect(result.kind).toBe("stream");
    if (result.kind === "stream") expect(await streamText(result)).toBe(": first\n\ndata: {}\n\ndata: [DONE]\n\n");
  });

  test("the gateway's own timeout is a 504 too; a client leaving is not a connection error", async () => {
    answer = async () => {
      await Bun.sleep(1500);
      return Response.json(completion);
    };
    const gateway = new AbortController();
    setTimeout(() => gateway.abort(new DOMException("request_timeout", "TimeoutError")), 100);
    expect(await send(d(), raw, { signal: gateway.signal })).toMatchObject({ kind: "error", status: 504 });
    const client = new AbortController();
    setTimeout(() => client.abort(), 100);
    const left = await send(d(), raw, { signal: client.signal });
    expect(left).toMatchObject({ kind: "error", status: 499 });
    expect(left.kind === "error" && left.connectionError).toBeFalsy();
  });
});

describe("reported usage", () => {
  test("counts are trusted only as whole numbers within bounds; anything else means counting from the text", () => {
    expect(usageOf({ prompt_tokens: 10, completion_tokens: 20, total_tokens: 30, prompt_tokens_details: { cached_tokens: 4 } }))
      .toEqual({ prompt_tokens: 10, completion_tokens: 20, total_tokens: 30, cached_tokens: 4 });
    // Embeddings send no completion; a total below the parts is raised to them; cached tokens are part of the prompt.
    expect(usageOf({ prompt_tokens: 7 })).toEqual({ prompt_tokens: 7, completion_tokens: 0, total_tokens: 7 });
    expect(usageOf({ prompt_tokens: 10, completion_tokens: 5, total_tokens: 0, prompt_tokens_details: { cached_tokens: 99 } }))
      .toEqual({ prompt_tokens: 10, completion_tokens: 5, total_tokens: 15, cached_tokens: 10 });
    expect(usageOf({ prompt_tokens: 2.6, completion_tokens: 1.2 })).toEqual({ prompt_tokens: 3, completion_tokens: 1, total_tokens: 4 });
    // A total above the parts (reasoning left out of completion_tokens by some bridges): the rest is output.
    expect(usageOf({ prompt_tokens: 21, completion_tokens: 0, total_tokens: 81, completion_tokens_details: { reasoning_tokens: 60 } }))
      .toEqual({ prompt_tokens: 21, completion_tokens: 60, total_tokens: 81 });
    for (const bad of [
      undefined, null, {}, { prompt_tokens: -1 }, { prompt_tokens: "12" }, { prompt_tokens: 1e30 }, { prompt_tokens: Number.NaN },
      { prompt_tokens: Number.POSITIVE_INFINITY }, { prompt_tokens: 5, completion_tokens: -2 }, { prompt_tokens: 5, completion_tokens: "3" },
    ]) expect(`${JSON.stringify(bad)} → ${JSON.stringify(usageOf(bad))}`).toBe(`${JSON.stringify(bad)} → null`);
  });
});
