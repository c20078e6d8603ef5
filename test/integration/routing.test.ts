import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { hashKey } from "../../src/auth/keys";
import { resetDueBudgets } from "../../src/scheduler";
import { inProcessGateway } from "../helpers/gateway";
import { freePort } from "../helpers/services";
import { until } from "../helpers/until";
import { type Upstream, startUpstream } from "../helpers/upstream";

type Harness = Awaited<ReturnType<typeof inProcessGateway>>;
let healthy: Upstream;
let failing: Upstream;
let late: Upstream;
let h: Harness;

beforeAll(async () => {
  healthy = await startUpstream();
  failing = await startUpstream({ status: 500, errorMessage: "deployment broken" });
  late = await startUpstream({ firstByteDelayMs: 400 });
  const deadPort = await freePort();
  h = await inProcessGateway(`
model_list:
  - model_name: spread
    litellm_params: {model: openai/m, api_base: "http://127.0.0.1:${deadPort}/v1", input_cost_per_token: 0.000001, output_cost_per_token: 0.000001}
  - model_name: spread
    litellm_params: {model: openai/m, api_base: "${healthy.url}", input_cost_per_token: 0.000003, output_cost_per_token: 0.000003}
  - model_name: broken
    litellm_params: {model: openai/m, api_base: "${failing.url}", input_cost_per_token: 0.000001, output_cost_per_token: 0.000001}
  - model_name: backup
    litellm_params: {model: openai/m, api_base: "${healthy.url}", api_key: sk-provider-secret-1, input_cost_per_token: 0.000005, output_cost_per_token: 0.000005}
  - model_name: wild/*
    litellm_params: {model: openai/*, api_base: "${healthy.url}", input_cost_per_token: 0.000001, output_cost_per_token: 0.000002}
    model_info: {access_groups: [wild-group]}
  - model_name: table/*
    litellm_params: {model: openai/*, api_base: "${healthy.url}"}
  - model_name: always-broken
    litellm_params: {model: openai/m, api_base: "${failing.url}", input_cost_per_token: 0.000001, output_cost_per_token: 0.000001}
  - model_name: late
    litellm_params: {model: openai/m, api_base: "${late.url}", input_cost_per_token: 0.000001, output_cost_per_token: 0.000001}
  - model_name: late-timeout
    litellm_params: {model: openai/m, api_base: "${late.url}", timeout: 0.1, input_cost_per_token: 0.000001, output_cost_per_token: 0.000001}
  - model_name: flaky
    litellm_params: {model: openai/m, api_base: "${failing.url}", weight: 1000}
    model_info: {id: flaky-failing}
  - model_name: flaky
    litellm_params: {model: openai/m, api_base: "${healthy.url}"}
    model_info: {id: flaky-healthy}
  - model_name: weighted
    litellm_params: {model: openai/a, api_base: "${healthy.url}", weight: 9}
  - model_name: weighted
    litellm_params: {model: openai/b, api_base: "${healthy.url}", weight: 1}
general_settings:
  master_key: sk-1234
litellm_settings:
  fallbacks: [{"broken": ["backup"]}]
router_settings:
  allowed_fails: 2
  cooldown_time: 30
`);
}, 120_000);
afterAll(async () => {
  await h.close();
  healthy.stop();
  failing.stop();
  late.stop();
});

const logsOf = (key: string) => h.db.query(
  "select status, spend::float8 as spend, prompt_tokens, completion_tokens from spend_logs where api_key = (select token from keys where key_name = $1)",
  [`sk-...${key.slice(-4)}`]) as Promise<Array<{ status: string; spend: number; prompt_tokens: number; completion_tokens: number }>>;

describe("routing across deployments", () => {
  test("a dead deployment never shows: every request is answered, charged at the price of the one that answered", async () => {
    const statuses = await Promise.all(Array.from({ length: 20 }, () => h.chat("sk-1234", {}, "spread")));
    expect(statuses.map((r) => r.status).every((s) => s === 200)).toBe(true);
    for (const response of statuses) expect(Number(response.headers.get("x-litellm-response-cost"))).toBeCloseTo(30 * 0.000003, 12);
  });

  test("after allowed_fails the dead deployment is cooled down and no longer tried", async () => {
    const router = h.gateway.runtime().router;
    const dead = router.deploymentsOf("spread")[0]!;
    expect(router.cooledDown(dead)).toBe(true);
    h.clock.advance(31_000);
    expect(router.cooledDown(dead)).toBe(false);
  });

  test("fallbacks: a model whose deployments fail is answered by its fallback", async () => {
    failing.reset();
    const response = await h.chat("sk-1234", {}, "broken");
    expect(response.status).toBe(200);
    expect(failing.requests.length).toBe(1);
    expect(Number(response.headers.get("x-litellm-response-cost"))).toBeCloseTo(30 * 0.000005, 12);
  });

  test("a fallback the key may not use is skipped: the model's own error comes back, nothing is charged at the fallback's price", async () => {
    const json = async (path: string, body: unknown) => (await (await h.call(path, body)).json()) as any;
    const only = (await json("/key/generate", { models: ["broken"] })).key;
    const both = (await json("/key/generate", { models: ["broken", "backup"] })).key;
    failing.reset();
    healthy.reset();
    const refused = await h.chat(only, {}, "broken");
    expect(refused.status).toBe(500);
    // A provider's error carries the request's id too, as its log row does.
    const id = refused.headers.get("x-litellm-call-id");
    expect(id).toMatch(/^[0-9a-f-]{36}$/);
    expect(healthy.requests.length).toBe(0);
    await h.flush();
    expect((await logsOf(only)).map((l) => `${l.status} ${l.spend}`)).toEqual(["failure 0"]);
    expect((await h.db.query("select 1 from spend_logs where request_id = $1", [id])).length).toBe(1);
    expect((await h.chat(both, {}, "broken")).status).toBe(200);
    expect(healthy.requests.length).toBe(1);
  });

  test("a fallback is governed as the model that answers: its price on the budgets, its own per-key budget and limits", async () => {
    const json = async (path: string, body: unknown) => (await (await h.call(path, body)).json()) as any;
    // Room for three answers at the fallback's price (1.5e-4 each); the failing model costs a fifth of it.
    const key = (await json("/key/generate", { max_budget: 0.00045 })).key;
    // The tests above cooled `broken` down (which sends a request straight to its fallback): past that, each request fails there first.
    h.clock.advance(31_000);
    const answers = await Promise.all(Array.from({ length: 20 }, () => h.chat(key, { max_tokens: 20 }, "broken")));
    expect(answers.filter((r) => r.status === 200).length).toBeGreaterThan(0);
    await h.flush();
    const info = (await json(`/key/info?key=${key}`, undefined)).info;
    expect(info.spend).toBeLessThanOrEqual(0.00045 + 0.00015 + 1e-12);
    // The answer's spend is the answering model's, in model_spend too.
    expect(info.model_spend.backup).toBeCloseTo(info.spend, 12);
    expect(info.model_spend.broken ?? 0).toBe(0);

    // The fallback's own per-key budget: spent directly, it refuses the fallback too.
    const limited = (await json("/key/generate", { model_max_budget: { backup: { budget_limit: 0.0001, time_period: "1d" } } })).key;
    expect((await h.chat(limited, {}, "backup")).status).toBe(200);
    expect((await h.chat(limited, {}, "backup")).status).toBe(400);
    healthy.reset();
    expect((await h.chat(limited, {}, "broken")).status).toBe(500);
    expect(healthy.requests.length).toBe(0);
    // And its per-key rpm limit.
    const paced = (await json("/key/generate", { model_rpm_limit: { backup: 1 } })).key;
    expect((await h.chat(paced, {}, "broken")).status).toBe(200);
    expect((await h.chat(paced, {}, "backup")).status).toBe(429);
    expect((await h.chat(paced, {}, "broken")).status).toBe(500);
  });

  test("access groups on a wildcard entry grant the models it serves; all-team-models means the team's models", async () => {
    const json = async (path: string, body: unknown) => (await (await h.call(path, body)).json()) as any;
    const grouped = (await json("/key/generate", { models: ["wild-group"] })).key;
    expect((await h.chat(grouped, {}, "wild/gpt-4o")).status).toBe(200);
    expect((await h.chat(grouped, {}, "backup")).status).toBe(401);
    await json("/team/new", { team_id: "routing-team", models: ["backup"] });
    const teamKey = (await json("/key/generate", { team_id: "routing-team", models: ["all-team-models"] })).key;
    expect((await h.chat(teamKey, {}, "backup")).status).toBe(200);
    const other = await h.chat(teamKey, {}, "spread");
    expect(other.status).toBe(401);
    expect(((await other.json()) as any).error.type).toBe("team_model_access_denied");
  });

  test("killing one of two deployments mid-traffic produces no client-visible failure", async () => {
    const second = await startUpstream();
    const pair = await inProcessGateway(`
model_list:
  - model_name: pair
    litellm_params: {model: openai/m, api_base: "${healthy.url}"}
  - model_name: pair
    litellm_params: {model: openai/m, api_base: "${second.url}"}
general_settings:
  master_key: sk-1234
`);
    const statuses: number[] = [];
    const until = Date.now() + 1500;
    const traffic = Promise.all(Array.from({ length: 6 }, async () => {
      while (Date.now() < until) statuses.push((await pair.chat("sk-1234", {}, "pair")).status);
    }));
    await Bun.sleep(500);
    second.stop();
    await traffic;
    await pair.close();
    expect(statuses.length).toBeGreaterThan(100);
    expect(statuses.filter((s) => s !== 200)).toEqual([]);
  });

  test("metrics: a deployment whose failures are retried away still counts them; latency is the answering call's", async () => {
    failing.reset();
    for (let i = 0; i < 5; i++) expect((await h.chat("sk-1234", {}, "flaky")).status).toBe(200);
    expect(failing.requests.length).toBeGreaterThanOrEqual(1);
    const scrape = await (await h.call("/metrics")).text();
    const value = (pattern: string) => Number(new RegExp(`^${pattern} (\\S+)$`, "m").exec(scrape)?.[1] ?? 0);
    expect(value('litegate_upstream_errors_total\\{deployment="flaky-failing",status="500"\\}')).toBe(failing.requests.length);
    // Each request is answered by the healthy deployment: the failed calls before it are not its latency.
    expect(value('litegate_upstream_duration_seconds_count\\{deployment="flaky-healthy"\\}')).toBe(5);
    expect(scrape).not.toContain('litegate_upstream_duration_seconds_count{deployment="flaky-failing"}');
  });

  test("weights share the traffic", async () => {
    healthy.reset();
    await Promise.all(Array.from({ length: 200 }, () => h.chat("sk-1234", {}, "weighted")));
    const toA = healthy.requests.filter((r) => r.body.model === "a").length;
    expect(toA).toBeGreaterThan(150);
    expect(toA).toBeLessThan(200);
  });

  test("requests the provider fails cost nothing but count against rpm, and are logged as failures", async () => {
    failing.reset();
    const key = await h.createKey({ rpm_limit: 2, max_budget: 1 });
    const statuses: number[] = [];
    for (let i = 0; i < 3; i++) {
      const response = await h.chat(key, {}, "always-broken");
      statuses.push(response.status);
      await response.text();
    }
    // As LiteLLM counts them: the two sent reached the provider and used the minute's requests; the third never left.
    expect(statuses).toEqual([500, 500, 429]);
    expect(failing.requests.length).toBe(2);
    await h.flush();
    const logs = await h.db.query(
      "select status, spend::float8 as spend, deployment is null as refused from spend_logs where api_key = (select token from keys where key_name = $1) order by deployment nulls last",
      [`sk-...${key.slice(-4)}`]);
    // The third, refused before the provider, is logged as a failure too, sent to no deployment.
    expect(logs).toEqual([{ status: "failure", spend: 0, refused: false }, { status: "failure", spend: 0, refused: false }, { status: "failure", spend: 0, refused: true }]);
    const [row] = await h.db.query("select spend::float8 as spend from keys where key_name = $1", [`sk-...${key.slice(-4)}`]);
    expect(row!.spend).toBe(0);
  });

  test("a request the client leaves, or a deadline cuts, before the provider answers is charged its prompt", async () => {
    const key = await h.createKey({ max_budget: 1 });
    const prompt = "word ".repeat(2000);
    const leave = async (stream: boolean) => {
      const client = new AbortController();
      const response = h.call("/v1/chat/completions", { model: "late", stream, messages: [{ role: "user", content: prompt }] }, key, { signal: client.signal });
      await Bun.sleep(150);
      client.abort();
      await response.catch(() => undefined);
    };
    await leave(false);
    await leave(true);
    const timedOut = await h.chat(key, { messages: [{ role: "user", content: prompt }] }, "late-timeout");
    expect(timedOut.status).toBe(504);
    // The provider got all three prompts.
    await until("the provider to get three prompts", () => late.requests.length === 3);
    await until("three log rows", async () => (await h.flush(), (await logsOf(key)).length === 3));
    const logs = await logsOf(key);
    expect(logs.map((r) => r.status).sort()).toEqual(["client_disconnected", "client_disconnected", "failure"]);
    for (const row of logs) {
      expect(row.prompt_tokens).toBeGreaterThan(2000);
      expect(row.completion_tokens).toBe(0);
      expect(row.spend).toBeCloseTo(row.prompt_tokens * 0.000001, 12);
    }
    const [stored] = await h.db.query("select spend::float8 as spend from keys where key_name = $1", [`sk-...${key.slice(-4)}`]);
    expect(stored!.spend).toBeCloseTo(logs.reduce((sum, r) => sum + r.spend, 0), 12);
  });

  test("a budget_duration changed while a request is in flight: the request's spend counts and the new reset stays", async () => {
    // Shortened (also to a period that ends before the request does), lengthened, and taken away.
    for (const [from, to, advance] of [["1d", "30s", 0], ["1d", "30s", 31_000], ["1h", "1d", 0], ["1d", null, 0]] as const) {
      const key = (await (await h.call("/key/generate", { max_budget: 1, budget_duration: from })).json()) as any;
      expect((await h.chat(key.key, {}, "spread")).status).toBe(200);
      const inFlight = h.chat(key.key, {}, "late");
      await until("the provider to get the request", () => late.requests.some((r) => r.body.messages?.[0]?.content === "Hello there"));
      late.reset();
      const updated = (await (await h.call("/key/update", { key: key.key, budget_duration: to })).json()) as any;
      h.clock.advance(advance);
      expect((await inFlight).status).toBe(200);
      await h.flush();
      // As stored (info shows a period whose reset has passed as over).
      const [info] = await h.db.query("select spend, budget_reset_at from keys where token = $1", [hashKey(key.key)]);
      const logs = await logsOf(key.key);
      expect(logs.length).toBe(2);
      expect(`${from}→${to} ${info!.budget_reset_at?.toISOString() ?? null}`).toBe(`${from}→${to} ${updated.budget_reset_at}`);
      expect(info!.spend).toBeCloseTo(logs.reduce((sum, r) => sum + r.spend, 0), 12);
    }
  });

  test("a fallback tried after the key's budget period turned over counts in the period the request began in, where its log row is", async () => {
    const key = (await (await h.call("/key/generate", { max_budget: 1, budget_duration: "1d" })).json()) as any;
    h.clock.advance(31_000); // `broken` is not cooled down: the request fails there first
    failing.reset();
    failing.set({ firstByteDelayMs: 300 });
    const periodEnd = Date.parse(key.budget_reset_at);
    const begun = h.chat(key.key, {}, "broken");
    await until("the broken deployment to get the request", () => failing.requests.length === 1);
    // The key's day ends while `broken` is failing; a request of the new day is answered by `backup`
    // (the key's plan there is now the new day's), then the first request's fallback is tried.
    h.clock.set(periodEnd + 1_000);
    const newDay = await h.chat(key.key, {}, "backup");
    expect(newDay.status).toBe(200);
    const response = await begun;
    failing.reset();
    expect(response.status).toBe(200);
    const cost = Number(response.headers.get("x-litellm-response-cost"));
    expect(cost).toBeCloseTo(30 * 0.000005, 12);
    await h.flush();
    const [log] = await h.db.query("select start_time, spend::float8 as spend from spend_logs where request_id = $1", [response.headers.get("x-litellm-call-id")]);
    expect(log!.spend).toBeCloseTo(cost, 12);
    expect(new Date(log!.start_time).getTime()).toBeLessThan(periodEnd);
    // Counted in the day that ended: the new day holds the one request made in it, in the gateway and in the database.
    const next = await h.chat(key.key, {}, "backup");
    expect(Number(next.headers.get("x-litellm-key-spend"))).toBeCloseTo(2 * cost, 12);
    await h.flush();
    await resetDueBudgets(h.db, new Date(h.clock.now()), {});
    const [stored] = await h.db.query("select spend::float8 as spend, budget_reset_at from keys where token = $1", [hashKey(key.key)]);
    expect(`${stored!.spend.toFixed(6)} ${stored!.budget_reset_at.toISOString()}`).toBe(`${(2 * cost).toFixed(6)} ${new Date(periodEnd + 86_400_000).toISOString()}`);
  });

  test("request_timeout is elapsed time: the gateway's clock stepped a day on while a request waits for its provider does not cut it", async () => {
    late.reset();
    late.set({ firstByteDelayMs: 1_500 }); // longer than the deadlines' one-second sweep
    try {
      const begun = h.chat("sk-1234", {}, "late");
      await until("the provider to get the request", () => late.requests.length === 1);
      h.clock.advance(86_400_000);
      const response = await begun;
      expect(response.status).toBe(200);
      await response.text();
    } finally {
      late.reset();
    }
  });

  test("wildcard entries serve every name they match, with the matched part sent upstream and priced", async () => {
    healthy.reset();
    const key = await h.createKey({});
    const answered = await h.chat(key, {}, "wild/some-model-7");
    expect(answered.status).toBe(200);
    expect(healthy.requests.at(-1)!.body.model).toBe("some-model-7");
    // The test upstream reports 10 prompt and 20 completion tokens: priced as the entry says.
    expect(Number(answered.headers.get("x-litellm-response-cost"))).toBeCloseTo(10 * 0.000001 + 20 * 0.000002, 12);
    const fromTable = await h.chat(key, {}, "table/gpt-4o");
    expect(fromTable.status).toBe(200);
    expect(healthy.requests.at(-1)!.body.model).toBe("gpt-4o");
    expect(Number(fromTable.headers.get("x-litellm-response-cost"))).toBeGreaterThan(0);
    // A key's models may name a wildcard too; a `*` stands for something.
    const wildOnly = await h.createKey({ models: ["wild/*"] });
    expect((await h.chat(wildOnly, {}, "wild/other-model")).status).toBe(200);
    expect((await h.chat(wildOnly, {}, "table/gpt-4o")).status).toBe(401);
    expect((await h.chat(key, {}, "wild/")).status).toBe(400);
    // A key naming a model a wildcard entry serves sees it in /v1/models, and can read it.
    const named = await h.createKey({ models: ["wild/named-model", "not-served"] });
    const listed = ((await (await h.call("/v1/models", undefined, named)).json()) as any).data.map((m: any) => m.id);
    expect(listed).toEqual(["wild/named-model"]);
    expect((await h.call("/v1/models/wild/named-model", undefined, named)).status).toBe(200);
    expect((await h.call("/v1/models/wild/other", undefined, named)).status).toBe(404);
    // A wildcard entry's own name is a pattern no request may ask for: not listed as a model.
    const all = ((await (await h.call("/v1/models", undefined, "sk-1234")).json()) as any).data.map((m: any) => m.id);
    expect(all.filter((id: string) => id.includes("*"))).toEqual([]);
    expect(all).toContain("spread");
    expect((await h.call("/v1/models/wild/*", undefined, "sk-1234")).status).toBe(404);
    const unknown = await h.chat(key, {}, "wilder/some-model");
    expect(unknown.status).toBe(400);
    expect(((await unknown.json()) as any).error.message).toContain("Invalid model name passed in model=wilder/some-model");
    // The entry's own name is a pattern, not a model: nothing goes upstream for it.
    healthy.reset();
    const pattern = await h.chat("sk-1234", {}, "wild/*");
    expect(pattern.status).toBe(400);
    expect(healthy.requests.length).toBe(0);
  });
});

describe("model info", () => {
  test("/model/info lists the deployments a key may use, with their prices and without provider keys", async () => {
    const all = (await (await h.call("/model/info")).json()) as any;
    const backup = all.data.find((d: any) => d.model_name === "backup");
    expect(backup.litellm_params).toEqual({ model: "openai/m", api_base: healthy.url, input_cost_per_token: 0.000005, output_cost_per_token: 0.000005 });
    expect(backup.model_info).toMatchObject({ litellm_provider: "openai", input_cost_per_token: 0.000005, output_cost_per_token: 0.000005 });
    expect(JSON.stringify(all)).not.toContain("sk-provider-secret");
    expect(all.data.find((d: any) => d.model_name === "wild/*").model_info.access_groups).toEqual(["wild-group"]);
    const key = await h.createKey({ models: ["spread"] });
    const mine = (await (await h.call("/v1/model/info", undefined, key)).json()) as any;
    expect(mine.data.map((d: any) => d.model_name)).toEqual(["spread", "spread"]);
    const id = mine.data[1].model_info.id;
    const one = (await (await h.call(`/model/info?litellm_model_id=${encodeURIComponent(id)}`, undefined, key)).json()) as any;
    expect(one.data.map((d: any) => d.model_info.id)).toEqual([id]);
    const notMine = await h.call(`/model/info?litellm_model_id=${encodeURIComponent(backup.model_info.id)}`, undefined, key);
    expect(notMine.status).toBe(404);
    expect((await h.call("/model/info", undefined, "sk-nobody")).status).toBe(401);
  });
});
