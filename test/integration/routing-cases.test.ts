import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { type RunningGateway, startOnPostgres } from "../helpers/binary";

/**
 * Routing across a model's deployments as LiteLLM's router does it, through the compiled binary and
 * real Postgres: which deployment a retry goes to, and which provider failures are the deployment's
 * (worth another one) rather than the request's. The provider is one raw Bun server; each deployment
 * is a path of its own (`/<id>/v1`), so a test sees which deployments were called, in order.
 */
type Handler = (deployment: string, body: any) => Response | Promise<Response>;
const answer = (model: string) => Response.json({
  id: "x", object: "chat.completion", created: 1, model,
  choices: [{ index: 0, message: { role: "assistant", content: "hi" }, finish_reason: "stop" }],
  usage: { prompt_tokens: 10, completion_tokens: 10, total_tokens: 20 },
});
const failing = (status: number, message: string, code: string | null = null) =>
  Response.json({ error: { message, type: "upstream_test_error", code } }, { status });
const OPENAI_PARAMS = new Set(["model", "messages", "max_tokens", "temperature", "stream", "stream_options", "user", "metadata", "store"]);
let handler: Handler = (_d, body) => answer(body.model);
const called: string[] = [];
let up: ReturnType<typeof Bun.serve>;
let gw: RunningGateway;

const entry = (name: string, id: string) => `  - model_name: ${name}
    litellm_params: {model: openai/${id}, api_base: "http://127.0.0.1:${up.port}/${id}/v1", api_key: sk-up, input_cost_per_token: 0.000001, output_cost_per_token: 0.000001}
    model_info: {id: ${id}}`;

beforeAll(async () => {
  up = Bun.serve({
    port: 0, hostname: "127.0.0.1",
    async fetch(req) {
      const deployment = new URL(req.url).pathname.split("/")[1]!;
      called.push(deployment);
      const body = (await req.json()) as Record<string, unknown>;
      // As OpenAI answers a parameter it does not know (LiteLLM's own request parameters are not for it).
      const unknown = Object.keys(body).find((name) => !OPENAI_PARAMS.has(name));
      if (unknown) return failing(400, `Unrecognized request argument supplied: ${unknown}`);
      if (body.metadata !== undefined && body.store !== true) return failing(400, "The 'metadata' parameter is only allowed when 'store' is enabled.");
      return handler(deployment, body);
    },
  });
  ({ gateway: gw } = await startOnPostgres(`
model_list:
${entry("duo", "duo-1")}
${entry("duo", "duo-2")}
${entry("keyed", "keyed-bad")}
${entry("keyed", "keyed-good")}
${entry("mixed", "mixed-half")}
${entry("mixed", "mixed-good")}
${entry("down", "down-1")}
${entry("spare", "spare-1")}
${entry("again", "again-1")}
${entry("lone", "lone-1")}
${entry("twice", "twice-1")}
${entry("small", "small-1")}
${entry("wide", "wide-1")}
litellm_settings:
  fallbacks: [{"lone": ["spare"]}]
  context_window_fallbacks: [{"small": ["wide"]}]
router_settings:
  allowed_fails: 2
  cooldown_time: 60`));
}, 120_000);
afterAll(async () => {
  await gw?.stop("SIGKILL");
  up?.stop(true);
});

const chat = (model: string, extra: Record<string, unknown> = {}, key = "sk-1234") => fetch(`${gw.url}/v1/chat/completions`, {
  method: "POST", headers: { authorization: `Bearer ${key}` }, body: JSON.stringify({ model, messages: [{ role: "user", content: "hello" }], ...extra }),
});

describe("retries across a model's deployments", () => {
  test("a retry never goes to a deployment cooling down: the failure of the one left comes back", async () => {
    handler = (d, body) => (d === "duo-1" ? failing(500, "duo-1 is down") : answer(body.model));
    // Until duo-1 has failed twice (allowed_fails: 2): it cools down; each request is answered by duo-2.
    for (let i = 0; i < 100 && called.filter((d) => d === "duo-1").length < 2; i++) expect((await chat("duo")).status).toBe(200);
    expect(called.filter((d) => d === "duo-1").length).toBe(2);
    handler = (d, body) => (d === "duo-2" ? failing(503, "duo-2 is overloaded") : answer(body.model));
    called.length = 0;
    const response = await chat("duo");
    expect(called).toEqual(["duo-2"]);
    expect(response.status).toBe(503);
    expect(((await response.json()) as any).error.message).toBe("duo-2 is overloaded");
  });

  test("a deployment whose provider key is refused (401) is the deployment's failure: the request goes to another, and it cools down", async () => {
    handler = (d, body) => (d === "keyed-bad" ? failing(401, "Incorrect API key provided: sk-up", "invalid_api_key") : answer(body.model));
    called.length = 0;
    const statuses: number[] = [];
    for (let i = 0; i < 12; i++) statuses.push((await chat("keyed")).status);
    expect(statuses).toEqual(Array(12).fill(200));
    // allowed_fails: 2, so the refused deployment is called twice at most, then left alone for cooldown_time.
    expect(called.filter((d) => d === "keyed-bad").length).toBeLessThanOrEqual(2);
  });

  test("allowed_fails counts the failures within a minute, answers between them included", async () => {
    let calls = 0;
    // Every other call fails: its second failure within the minute cools it down.
    handler = (d, body) => (d === "mixed-half" && ++calls % 2 === 1 ? failing(500, "mixed-half hiccup") : answer(body.model));
    called.length = 0;
    for (let i = 0; i < 30; i++) expect((await chat("mixed")).status).toBe(200);
    expect(called.filter((d) => d === "mixed-half").length).toBeLessThanOrEqual(3);
  });
});

describe("cooldowns and fallbacks", () => {
  test("a model whose every deployment cools down goes straight to its fallback until the cooldown ends", async () => {
    handler = (d, body) => (d === "lone-1" ? failing(500, "lone-1 is down") : answer(body.model));
    called.length = 0;
    for (let i = 0; i < 5; i++) expect((await chat("lone")).status).toBe(200);
    // allowed_fails: 2 — its second failure cools it down, and the fallback answers the rest at once.
    expect(called.filter((d) => d === "lone-1").length).toBe(2);
    expect(called.filter((d) => d === "spare-1").length).toBe(5);

    // The fallback is governed before it is tried: refused there (its per-key budget spent), the model cooling down is called after all.
    const key = ((await (await fetch(`${gw.url}/key/generate`, {
      method: "POST", headers: { authorization: "Bearer sk-1234" }, body: JSON.stringify({ model_max_budget: { spare: { budget_limit: 0.000001, time_period: "1d" } } }),
    })).json()) as any).key;
    expect((await chat("spare", {}, key)).status).toBe(200);
    called.length = 0;
    const response = await chat("lone", {}, key);
    expect(called).toEqual(["lone-1"]);
    expect(response.status).toBe(500);
  });
});

describe("context_window_fallbacks", () => {
  test("a prompt longer than the model takes goes to its context window fallback; any other client error comes back as it is", async () => {
    handler = (d, body) => (d === "small-1"
      ? failing(400, body.max_tokens === 1 ? "temperature: must be at most 2" : "This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens.", "context_length_exceeded")
      : answer(body.model));
    called.length = 0;
    const response = await chat("small");
    expect(response.status).toBe(200);
    expect(called).toEqual(["small-1", "wide-1"]);
    called.length = 0;
    const other = await chat("small", { max_tokens: 1 });
    expect(other.status).toBe(400);
    expect(called).toEqual(["small-1"]);
  });
});

describe("LiteLLM's request parameters for the router", () => {
  test("num_retries in the body retries the model that many times, and is not sent to the provider", async () => {
    let calls = 0;
    handler = (d, body) => (d === "again-1" && ++calls === 1 ? failing(503, "again-1 hiccup") : answer(body.model));
    called.length = 0;
    const response = await chat("again", { num_retries: 1 });
    expect(response.status).toBe(200);
    expect(called).toEqual(["again-1", "again-1"]);
    const refused = await chat("again", { num_retries: "many" });
    expect(refused.status).toBe(400);
    expect(((await refused.json()) as any).error.param).toBe("num_retries");
  });

  test("client-side fallbacks (`fallbacks` in the body) are tried as config.yaml's are, and are not sent to the provider", async () => {
    handler = (d, body) => (d === "down-1" ? failing(500, "down-1 is down") : answer(body.model));
    called.length = 0;
    const response = await chat("down", { fallbacks: ["spare"] });
    expect(response.status).toBe(200);
    expect(called).toEqual(["down-1", "spare-1"]);
    // A fallback the key may not use is skipped, as one of config.yaml's is.
    const key = ((await (await fetch(`${gw.url}/key/generate`, { method: "POST", headers: { authorization: "Bearer sk-1234" }, body: JSON.stringify({ models: ["down"] }) })).json()) as any).key;
    called.length = 0;
    const refused = await chat("down", { fallbacks: ["spare"] }, key);
    expect(refused.status).toBe(500);
    expect(called).toEqual(["down-1"]);
    const bad = await chat("down", { fallbacks: "spare" });
    expect(bad.status).toBe(400);
    const error = ((await bad.json()) as any).error;
    expect(error.param).toBe("fallbacks");
    expect(error.type).toBe("bad_request_error");
  });
});

describe("LiteLLM's own members of a body", () => {
  test("litellm_metadata names the customer and is not sent to an OpenAI-compatible provider, which would refuse it", async () => {
    handler = (_d, body) => answer(body.model);
    const response = await chat("spare", { litellm_metadata: { user: "acme-routing" } });
    expect(response.status).toBe(200);
    const id = response.headers.get("x-litellm-call-id");
    let rows: any[] = [];
    for (let i = 0; i < 50 && rows.length === 0; i++, await Bun.sleep(100)) {
      rows = (await (await fetch(`${gw.url}/spend/logs?request_id=${id}`, { headers: { authorization: "Bearer sk-1234" } })).json()) as any[];
    }
    expect(rows.map((row) => row.end_user)).toEqual(["acme-routing"]);
  });

  test("metadata (tags, a customer's user_id) is LiteLLM's too: not sent to OpenAI, which refuses it without store; with store: true it is sent as written", async () => {
    const seen: unknown[] = [];
    handler = (_d, body) => {
      seen.push(body.metadata);
      return answer(body.model);
    };
    const plain = await chat("spare", { metadata: { user_id: "acme-meta", tags: ["a"] } });
    expect(plain.status).toBe(200);
    const streamed = await chat("spare", { stream: true, metadata: { user_id: "acme-meta" } });
    expect(streamed.status).toBe(200);
    await streamed.text();
    const stored = await chat("spare", { store: true, metadata: { purpose: "eval" } });
    expect(stored.status).toBe(200);
    expect(seen).toEqual([undefined, undefined, { purpose: "eval" }]);
    const id = plain.headers.get("x-litellm-call-id");
    let rows: any[] = [];
    for (let i = 0; i < 50 && rows.length === 0; i++, await Bun.sleep(100)) {
      rows = (await (await fetch(`${gw.url}/spend/logs?request_id=${id}`, { headers: { authorization: "Bearer sk-1234" } })).json()) as any[];
    }
    expect(rows.map((row) => row.end_user)).toEqual(["acme-meta"]);
  });
});

describe("LiteLLM's routing headers", () => {
  test("an answer names the deployment that gave it and what the router tried first (x-litellm-model-id, -model-api-base, -attempted-retries, -attempted-fallbacks)", async () => {
    handler = (d, body) => (d === "down-1" ? failing(500, "down-1 is down") : answer(body.model));
    const direct = await chat("spare");
    expect(direct.status).toBe(200);
    expect(direct.headers.get("x-litellm-model-id")).toBe("spare-1");
    expect(direct.headers.get("x-litellm-model-api-base")).toBe(`http://127.0.0.1:${up.port}/spare-1/v1`);
    expect(direct.headers.get("x-litellm-attempted-fallbacks")).toBe("0");
    const fellBack = await chat("down", { fallbacks: ["spare"] });
    expect(fellBack.status).toBe(200);
    expect(fellBack.headers.get("x-litellm-model-id")).toBe("spare-1");
    expect(fellBack.headers.get("x-litellm-attempted-fallbacks")).toBe("1");
    let calls = 0;
    handler = (d, body) => (d === "twice-1" && ++calls === 1 ? failing(503, "twice-1 hiccup") : answer(body.model));
    const retried = await chat("twice", { num_retries: 1 });
    expect(retried.status).toBe(200);
    expect(retried.headers.get("x-litellm-attempted-retries")).toBe("1");
    expect(retried.headers.get("x-litellm-attempted-fallbacks")).toBe("0");
  });
});

describe("default_fallbacks", () => {
  let other: RunningGateway;
  beforeAll(async () => {
    ({ gateway: other } = await startOnPostgres(`
model_list:
${entry("down", "down-1")}
${entry("spare", "spare-1")}
router_settings:
  default_fallbacks: ["spare"]`));
  }, 120_000);
  afterAll(async () => {
    await other?.stop("SIGKILL");
  });

  test("LiteLLM's default_fallbacks serve every model without fallbacks of its own, as `*` does", async () => {
    expect(other.output()).not.toContain("default_fallbacks");
    handler = (d, body) => (d === "down-1" ? failing(500, "down-1 is down") : answer(body.model));
    called.length = 0;
    const response = await fetch(`${other.url}/v1/chat/completions`, {
      method: "POST", headers: { authorization: "Bearer sk-1234" }, body: JSON.stringify({ model: "down", messages: [{ role: "user", content: "hello" }] }),
    });
    expect(response.status).toBe(200);
    expect(called).toEqual(["down-1", "spare-1"]);
  });
});
