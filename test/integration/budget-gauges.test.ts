import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import OpenAI from "openai";
import { hashKey } from "../../src/auth/keys";
import { type RunningGateway, startBinary, startOnPostgres } from "../helpers/binary";
import { MOCK_CONFIG, inProcessGateway } from "../helpers/gateway";
import { type RedisServer, startRedis, tempDir } from "../helpers/services";
import { until, windowLeft } from "../helpers/until";
import { PRICED_COST, type Upstream, pricedModels, startUpstream } from "../helpers/upstream";

/**
 * Budget and limit gauges on /metrics under LiteLLM's names and labels, read when scraped from the keys,
 * teams, users and customers the gateway holds: on the compiled binary with the `openai` client, on the
 * embedded database, and on two instances sharing Postgres and Redis (each shows the shared figures).
 */
let up: Upstream;
let redis: RedisServer;
let solo: RunningGateway;
let shared: RunningGateway[] = [];
/** The test upstream's usage per answer: 10 prompt + 20 completion tokens. */
const TOKENS = 30;

beforeAll(async () => {
  up = await startUpstream();
  redis = await startRedis();
  solo = await startBinary({
    config: `${pricedModels(up.url)}\nlitellm_settings:\n  max_budget: 100\ngeneral_settings:\n  master_key: sk-1234\n  data_dir: ${tempDir("gauges")}\n`,
  });
  const { gateway, dbUrl } = await startOnPostgres(`${pricedModels(up.url)}\nrouter_settings:\n  redis_url: ${redis.url}\n`);
  const second = await startBinary({
    config: `${pricedModels(up.url)}\nrouter_settings:\n  redis_url: ${redis.url}\ngeneral_settings:\n  master_key: sk-1234\n  database_url: ${dbUrl}\n`,
  });
  shared = [gateway, second];
}, 120_000);
afterAll(async () => {
  for (const gateway of [solo, ...shared]) await gateway?.stop();
  up?.stop();
  await redis?.stop();
});

const admin = async (gw: RunningGateway, path: string, body?: unknown) => {
  const response = await fetch(gw.url + path, {
    method: body === undefined ? "GET" : "POST",
    headers: { authorization: "Bearer sk-1234", "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const answer = { status: response.status, body: (await response.json()) as any };
  expect(answer.status).toBe(200);
  return answer.body;
};
const ask = (gw: RunningGateway, key: string, user?: string) =>
  new OpenAI({ apiKey: key, baseURL: `${gw.url}/v1`, maxRetries: 0 }).chat.completions.create({ model: "m", messages: [{ role: "user", content: "hi" }], user });

type Sample = { labels: Record<string, string>; value: number };
/** Every sample of /metrics, by metric name. */
async function scrape(gw: RunningGateway): Promise<Map<string, Sample[]>> {
  const response = await fetch(`${gw.url}/metrics`, { headers: { authorization: "Bearer sk-1234" } });
  expect(response.status).toBe(200);
  return samplesOf(response);
}
async function samplesOf(response: Response): Promise<Map<string, Sample[]>> {
  const samples = new Map<string, Sample[]>();
  for (const line of (await response.text()).split("\n")) {
    const match = /^(\w+)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match) continue;
    const labels: Record<string, string> = {};
    for (const [, name, value] of match[2]?.matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g) ?? []) labels[name!] = value!;
    const value = match[3] === "+Inf" ? Infinity : Number(match[3]);
    samples.set(match[1]!, [...(samples.get(match[1]!) ?? []), { labels, value }]);
  }
  return samples;
}
/** The value of `name` for the sample with `labels`, or undefined when there is none. */
const valueOf = (samples: Map<string, Sample[]>, name: string, labels: Record<string, string>) =>
  samples.get(name)?.find((s) => Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;

/** Requests of a test must fall in one rate window (60 s). */
async function sameMinute(): Promise<void> {
  await windowLeft(15_000);
}

describe("budget and limit gauges (embedded database)", () => {
  test("key, team, per-model limits and the gateway's budget move by each request's cost and counts", async () => {
    await sameMinute();
    const team = await admin(solo, "/team/new", { team_alias: "qa", max_budget: 1 });
    const { key } = await admin(solo, "/key/generate", {
      team_id: team.team_id, key_alias: "k1", max_budget: 0.01, budget_duration: "1h", rpm_limit: 10,
      model_rpm_limit: { m: 5 }, model_tpm_limit: { m: 1000 },
    });
    const keyLabels = { hashed_api_key: hashKey(key), api_key_alias: "k1" };
    const teamLabels = { team: team.team_id, team_alias: "qa" };
    await ask(solo, key);
    let m = await scrape(solo);
    expect(valueOf(m, "litellm_remaining_api_key_budget_metric", keyLabels)).toBeCloseTo(0.01 - PRICED_COST, 12);
    expect(valueOf(m, "litellm_api_key_max_budget_metric", keyLabels)).toBe(0.01);
    const hours = valueOf(m, "litellm_api_key_budget_remaining_hours_metric", keyLabels)!;
    expect(hours).toBeGreaterThan(0.9);
    expect(hours).toBeLessThanOrEqual(1);
    expect(valueOf(m, "litellm_remaining_team_budget_metric", teamLabels)).toBeCloseTo(1 - PRICED_COST, 12);
    expect(valueOf(m, "litellm_team_max_budget_metric", teamLabels)).toBe(1);
    // The team's budget never resets: no hours.
    expect(valueOf(m, "litellm_team_budget_remaining_hours_metric", teamLabels)).toBeUndefined();
    const before = valueOf(m, "litegate_remaining_proxy_budget", {})!;
    expect(valueOf(m, "litegate_proxy_max_budget", {})).toBe(100);

    await ask(solo, key);
    await ask(solo, key);
    m = await scrape(solo);
    expect(valueOf(m, "litellm_remaining_api_key_budget_metric", keyLabels)).toBeCloseTo(0.01 - 3 * PRICED_COST, 12);
    expect(valueOf(m, "litellm_remaining_team_budget_metric", teamLabels)).toBeCloseTo(1 - 3 * PRICED_COST, 12);
    expect(valueOf(m, "litegate_remaining_proxy_budget", {})).toBeCloseTo(before - 2 * PRICED_COST, 12);
    expect(valueOf(m, "litellm_remaining_api_key_requests_for_model", { ...keyLabels, model: "m" })).toBe(2);
    expect(valueOf(m, "litellm_remaining_api_key_tokens_for_model", { ...keyLabels, model: "m" })).toBe(1000 - 3 * TOKENS);
    expect(valueOf(m, "litegate_remaining_api_key_requests", keyLabels)).toBe(7);
    // A limit the key does not set has no sample.
    expect(valueOf(m, "litegate_remaining_api_key_tokens", keyLabels)).toBeUndefined();
  });

  test("a key without a budget reads +Inf remaining and has no max; a personal key's user and a customer have theirs", async () => {
    const { key } = await admin(solo, "/key/generate", { key_alias: "free" });
    const user = await admin(solo, "/user/new", { user_id: "gauge-user", max_budget: 2 });
    await admin(solo, "/customer/new", { user_id: "acme", max_budget: 0.5 });
    await ask(solo, key, "acme");
    await ask(solo, user.key);
    const m = await scrape(solo);
    const free = { hashed_api_key: hashKey(key), api_key_alias: "free" };
    expect(valueOf(m, "litellm_remaining_api_key_budget_metric", free)).toBe(Infinity);
    expect(valueOf(m, "litellm_api_key_max_budget_metric", free)).toBeUndefined();
    expect(valueOf(m, "litellm_api_key_budget_remaining_hours_metric", free)).toBeUndefined();
    expect(valueOf(m, "litellm_remaining_user_budget_metric", { user: "gauge-user" })).toBeCloseTo(2 - PRICED_COST, 12);
    expect(valueOf(m, "litellm_user_max_budget_metric", { user: "gauge-user" })).toBe(2);
    expect(valueOf(m, "litegate_remaining_end_user_budget", { end_user: "acme" })).toBeCloseTo(0.5 - PRICED_COST, 12);
    expect(valueOf(m, "litegate_end_user_max_budget", { end_user: "acme" })).toBe(0.5);
  });

  test("after a max_budget change and after the budget's period turns, the gauges follow", async () => {
    const { key } = await admin(solo, "/key/generate", { key_alias: "short", max_budget: 0.01, budget_duration: "3s" });
    const labels = { hashed_api_key: hashKey(key), api_key_alias: "short" };
    await ask(solo, key);
    await ask(solo, key);
    expect(valueOf(await scrape(solo), "litellm_remaining_api_key_budget_metric", labels)).toBeCloseTo(0.01 - 2 * PRICED_COST, 12);
    await admin(solo, "/key/update", { key, max_budget: 0.02 });
    await ask(solo, key);
    const m = await scrape(solo);
    expect(valueOf(m, "litellm_api_key_max_budget_metric", labels)).toBe(0.02);
    // Or fewer, had the period turned meanwhile: never more than spent.
    expect(valueOf(m, "litellm_remaining_api_key_budget_metric", labels)!).toBeGreaterThanOrEqual(0.02 - 3 * PRICED_COST - 1e-12);
    expect(valueOf(m, "litellm_api_key_budget_remaining_hours_metric", labels)!).toBeLessThanOrEqual(3 / 3600);
    // With no request, the period turns: the whole budget is there again.
    await until("the key's budget period turned", async () => valueOf(await scrape(solo), "litellm_remaining_api_key_budget_metric", labels) === 0.02, 8000, 200);
  }, 20_000);
});

describe("team member, per-model and holder rate-limit gauges (embedded database)", () => {
  test("a member's budget in its team, model budgets of key, user, team and customer, and team, user and customer rpm/tpm move by each request", async () => {
    await sameMinute();
    const perModel = (budget: number) => ({ m: { budget_limit: budget, time_period: "1d" } });
    const team = await admin(solo, "/team/new", {
      team_alias: "ops", rpm_limit: 20, tpm_limit: 5000, model_max_budget: perModel(0.4), metadata: { model_rpm_limit: { m: 8 }, model_tpm_limit: { m: 3000 } },
    });
    await admin(solo, "/user/new", { user_id: "member-1", rpm_limit: 30, model_max_budget: perModel(0.3) });
    await admin(solo, "/team/member_add", { team_id: team.team_id, member: { user_id: "member-1", role: "user" }, max_budget_in_team: 0.5 });
    await admin(solo, "/customer/new", { user_id: "globex", rpm_limit: 6, tpm_limit: 900, model_max_budget: perModel(0.2) });
    const { key } = await admin(solo, "/key/generate", { team_id: team.team_id, user_id: "member-1", key_alias: "mk", model_max_budget: perModel(0.1) });
    const teamLabels = { team: team.team_id, team_alias: "ops" };
    const memberLabels = { team: team.team_id, user: "member-1" };
    const figures = (m: Map<string, Sample[]>) => ({
      member: valueOf(m, "litegate_remaining_team_member_budget", memberLabels),
      keyModel: valueOf(m, "litegate_remaining_api_key_model_budget", { hashed_api_key: hashKey(key), api_key_alias: "mk", model: "m" }),
      userModel: valueOf(m, "litegate_remaining_user_model_budget", { user: "member-1", model: "m" }),
      customerModel: valueOf(m, "litegate_remaining_end_user_model_budget", { end_user: "globex", model: "m" }),
      teamRequests: valueOf(m, "litegate_remaining_team_requests", teamLabels),
      teamTokens: valueOf(m, "litegate_remaining_team_tokens", teamLabels),
      teamModelRequests: valueOf(m, "litegate_remaining_team_requests_for_model", { ...teamLabels, model: "m" }),
      teamModelTokens: valueOf(m, "litegate_remaining_team_tokens_for_model", { ...teamLabels, model: "m" }),
      userRequests: valueOf(m, "litegate_remaining_user_requests", { user: "member-1" }),
      customerRequests: valueOf(m, "litegate_remaining_end_user_requests", { end_user: "globex" }),
      customerTokens: valueOf(m, "litegate_remaining_end_user_tokens", { end_user: "globex" }),
    });
    await ask(solo, key, "globex");
    let m = await scrape(solo);
    expect(valueOf(m, "litegate_team_member_max_budget", memberLabels)).toBe(0.5);
    expect(valueOf(m, "litegate_team_member_budget_remaining_hours", memberLabels)).toBeUndefined();
    expect(valueOf(m, "litegate_api_key_model_max_budget", { hashed_api_key: hashKey(key), model: "m" })).toBe(0.1);
    expect(valueOf(m, "litegate_user_model_max_budget", { user: "member-1", model: "m" })).toBe(0.3);
    expect(valueOf(m, "litegate_end_user_model_max_budget", { end_user: "globex", model: "m" })).toBe(0.2);
    const hours = valueOf(m, "litegate_end_user_model_budget_remaining_hours", { end_user: "globex", model: "m" })!;
    expect(hours).toBeGreaterThan(0);
    expect(hours).toBeLessThanOrEqual(24);
    // The key's own budget for the model takes the team's place (as in LiteLLM): the team's shows through no key of it yet.
    expect(valueOf(m, "litegate_remaining_team_model_budget", { ...teamLabels, model: "m" })).toBeUndefined();
    const first = figures(m);
    expect(first).toEqual({
      member: expect.closeTo(0.5 - PRICED_COST, 12), keyModel: expect.closeTo(0.1 - PRICED_COST, 12), userModel: expect.closeTo(0.3 - PRICED_COST, 12),
      customerModel: expect.closeTo(0.2 - PRICED_COST, 12), teamRequests: 19, teamTokens: 5000 - TOKENS, teamModelRequests: 7, teamModelTokens: 3000 - TOKENS,
      userRequests: 29, customerRequests: 5, customerTokens: 900 - TOKENS,
    });

    await ask(solo, key, "globex");
    await ask(solo, key, "globex");
    m = await scrape(solo);
    expect(figures(m)).toEqual({
      member: expect.closeTo(0.5 - 3 * PRICED_COST, 12), keyModel: expect.closeTo(0.1 - 3 * PRICED_COST, 12), userModel: expect.closeTo(0.3 - 3 * PRICED_COST, 12),
      customerModel: expect.closeTo(0.2 - 3 * PRICED_COST, 12), teamRequests: 17, teamTokens: 5000 - 3 * TOKENS, teamModelRequests: 5,
      teamModelTokens: 3000 - 3 * TOKENS, userRequests: 27, customerRequests: 3, customerTokens: 900 - 3 * TOKENS,
    });

    // A team key without a budget of its own for the model spends the team's.
    const { key: plain } = await admin(solo, "/key/generate", { team_id: team.team_id, key_alias: "plain" });
    await ask(solo, plain);
    m = await scrape(solo);
    expect(valueOf(m, "litegate_remaining_team_model_budget", { ...teamLabels, model: "m" })).toBeCloseTo(0.4 - PRICED_COST, 12);
    expect(valueOf(m, "litegate_team_model_max_budget", { ...teamLabels, model: "m" })).toBe(0.4);
    expect(valueOf(m, "litegate_remaining_team_requests", teamLabels)).toBe(16);
  });
});

test("a customer held to max_end_user_budget_id's budget shows that budget, once it is read", async () => {
  const h = await inProcessGateway(`${MOCK_CONFIG}litellm_settings:\n  max_end_user_budget_id: free-tier\n`);
  try {
    expect((await h.call("/budget/new", { budget_id: "free-tier", max_budget: 0.3 })).status).toBe(200);
    const answer = await h.chat("sk-1234", { user: "walk-in" });
    expect(answer.status).toBe(200);
    const cost = Number(answer.headers.get("x-litellm-response-cost"));
    const m = await samplesOf(await h.call("/metrics"));
    expect(valueOf(m, "litegate_remaining_end_user_budget", { end_user: "walk-in" })).toBeCloseTo(0.3 - cost, 12);
    expect(valueOf(m, "litegate_end_user_max_budget", { end_user: "walk-in" })).toBe(0.3);
  } finally {
    await h.close();
  }
});

describe("budget and limit gauges (two instances sharing Postgres and Redis)", () => {
  test("an instance shows the shared spend and counts it synced, not its own share", async () => {
    await sameMinute();
    const [a, b] = shared as [RunningGateway, RunningGateway];
    // Budgets and limits near enough their edge that each instance pushes what it settles at once.
    const team = await admin(a, "/team/new", { team_alias: "shared", max_budget: 0.01 });
    const { key } = await admin(a, "/key/generate", { team_id: team.team_id, key_alias: "both", max_budget: 0.01, model_rpm_limit: { m: 10 } });
    const keyLabels = { hashed_api_key: hashKey(key), api_key_alias: "both" };
    const teamLabels = { team: team.team_id, team_alias: "shared" };
    await ask(a, key);
    await ask(a, key);
    // A's settled requests reach Redis; B's first request there reads them, and its gauges count them.
    await Bun.sleep(500);
    await ask(b, key);
    let m = await scrape(b);
    expect(valueOf(m, "litellm_remaining_api_key_budget_metric", keyLabels)).toBeCloseTo(0.01 - 3 * PRICED_COST, 12);
    expect(valueOf(m, "litellm_remaining_team_budget_metric", teamLabels)).toBeCloseTo(0.01 - 3 * PRICED_COST, 12);
    expect(valueOf(m, "litellm_remaining_api_key_requests_for_model", { ...keyLabels, model: "m" })).toBe(7);
    // A counts at least its own two.
    m = await scrape(a);
    expect(valueOf(m, "litellm_remaining_api_key_budget_metric", keyLabels)!).toBeLessThanOrEqual(0.01 - 2 * PRICED_COST + 1e-12);
    expect(valueOf(m, "litellm_remaining_api_key_requests_for_model", { ...keyLabels, model: "m" })!).toBeLessThanOrEqual(8);
  });

  test("team member budgets, model budgets and team limits show the shared figures", async () => {
    await sameMinute();
    const [a, b] = shared as [RunningGateway, RunningGateway];
    // Near enough their edge that each instance pushes what it settles at once.
    const team = await admin(a, "/team/new", { team_alias: "pair", rpm_limit: 5, metadata: { model_rpm_limit: { m: 4 } } });
    await admin(a, "/user/new", { user_id: "pair-user" });
    await admin(a, "/team/member_add", { team_id: team.team_id, member: { user_id: "pair-user", role: "user" }, max_budget_in_team: 0.01 });
    const { key } = await admin(a, "/key/generate", { team_id: team.team_id, user_id: "pair-user", model_max_budget: { m: { budget_limit: 0.01, time_period: "1d" } } });
    const teamLabels = { team: team.team_id, team_alias: "pair" };
    await ask(a, key);
    await ask(a, key);
    await Bun.sleep(500);
    await ask(b, key);
    const m = await scrape(b);
    expect(valueOf(m, "litegate_remaining_team_member_budget", { team: team.team_id, user: "pair-user" })).toBeCloseTo(0.01 - 3 * PRICED_COST, 12);
    expect(valueOf(m, "litegate_remaining_api_key_model_budget", { hashed_api_key: hashKey(key), model: "m" })).toBeCloseTo(0.01 - 3 * PRICED_COST, 12);
    expect(valueOf(m, "litegate_remaining_team_requests", teamLabels)).toBe(2);
    expect(valueOf(m, "litegate_remaining_team_requests_for_model", { ...teamLabels, model: "m" })).toBe(1);
  });
});

describe("bounded by metrics_budget_gauges_limit", () => {
  test("only the keys nearest their edge get gauges, and 0 turns them off (a reload changes it)", async () => {
    const config = (limit: number) =>
      `${pricedModels(up.url)}\ngeneral_settings:\n  master_key: sk-1234\n  data_dir: ${dir}\n  metrics_budget_gauges_limit: ${limit}\n`;
    const dir = tempDir("gauges-limit");
    const gw = await startBinary({ config: config(2) });
    try {
      // After one request each: a third, three quarters, nine tenths and all of the budget left (and one key with none).
      const shares = [1.5, 4, 10];
      const keys: string[] = [];
      for (const times of [...shares, null]) {
        const made = await admin(gw, "/key/generate", times === null ? {} : { max_budget: PRICED_COST * times });
        keys.push(made.key);
        await ask(gw, made.key);
      }
      const hashes = keys.map(hashKey);
      const shown = (await scrape(gw)).get("litellm_remaining_api_key_budget_metric")!.map((s) => s.labels.hashed_api_key);
      expect(shown.sort()).toEqual([hashes[0]!, hashes[1]!].sort());
      await sameMinute();
      // Customers' rate limits the same way: a half, three quarters and nine tenths of their minute left.
      for (const [i, rpm] of [2, 4, 10].entries()) {
        await admin(gw, "/customer/new", { user_id: `bounded-${i}`, rpm_limit: rpm });
        await ask(gw, keys[3]!, `bounded-${i}`);
      }
      const rooms = (await scrape(gw)).get("litegate_remaining_end_user_requests")!.map((s) => s.labels.end_user);
      expect(rooms.sort()).toEqual(["bounded-0", "bounded-1"]);

      await Bun.write(gw.configPath, config(0));
      gw.proc.kill("SIGHUP");
      await gw.waitForOutput(/config reloaded/);
      expect((await scrape(gw)).get("litellm_remaining_api_key_budget_metric")).toBeUndefined();
    } finally {
      await gw.stop();
    }
  }, 60_000);
});
