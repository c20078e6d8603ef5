import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { type RunningGateway, startOn } from "../helpers/binary";
import { type Harness, MOCK_CONFIG, gatewayFor } from "../helpers/gateway";
import { sharedPostgres } from "../helpers/services";
import { sharedRedis } from "../helpers/shared-redis";
import { PRICED_COST, type Upstream, pricedModels, startUpstream } from "../helpers/upstream";

/**
 * A user's and a team's model_max_budget: held across all their keys (a user's on its team keys too),
 * one model at a time, with the entry's own period, as LiteLLM holds them. A budget of 1e-9 lets the
 * first request through (its own estimate need not fit) and refuses every later one on the model.
 */
const TINY = (period = "1d") => ({ mock: { budget_limit: 1e-9, time_period: period } });

for (const kind of ["pglite", "postgres"] as const) describe(`per-model budgets of users and teams (${kind})`, () => {
  const gateway = gatewayFor(kind);
  const ok = async (path: string, body: unknown) => {
    const answer = await gateway.json(path, body);
    expect(`${path} ${answer.status}`).toBe(`${path} 200`);
    return answer.body;
  };
  const keyOf = async (fields: Record<string, unknown>): Promise<string> => (await ok("/key/generate", fields)).key;
  const refusal = async (h: Harness, key: string, model = "mock") => {
    const response = await h.chat(key, {}, model);
    return { status: response.status, message: ((await response.json()) as any).error?.message as string | undefined };
  };

  test("a user's: spend on the model by any of its keys counts, a team key of the user's too; another model is not held", async () => {
    const { h, json } = gateway;
    await ok("/user/new", { user_id: "mb-user", auto_create_key: false, model_max_budget: TINY() });
    await ok("/team/new", { team_id: "mb-user-team" });
    const [first, second, ofTeam] = [await keyOf({ user_id: "mb-user" }), await keyOf({ user_id: "mb-user" }), await keyOf({ user_id: "mb-user", team_id: "mb-user-team" })];
    expect((await h.chat(first)).status).toBe(200);
    for (const key of [second, ofTeam, first]) {
      const refused = await refusal(h, key);
      expect(refused.status).toBe(400);
      expect(refused.message).toStartWith("ExceededBudget: User=mb-user exceeded budget for model=mock. Spend=");
    }
    expect((await h.chat(second, {}, "slow")).status).toBe(200);
    await h.flush();
    const info = (await json("/user/info?user_id=mb-user")).body.user_info;
    expect(info.model_max_budget).toEqual(TINY());
    // Kept for the model it budgets only.
    expect(Object.keys(info.model_spend)).toEqual(["mock"]);
    expect(info.model_spend.mock).toBeGreaterThan(0);
  });

  test("a team's: spend on the model by any of its keys counts; a key with its own budget for the model is held to that instead", async () => {
    const { h, json } = gateway;
    await ok("/team/new", { team_id: "mb-team", model_max_budget: TINY() });
    const [first, second] = [await keyOf({ team_id: "mb-team" }), await keyOf({ team_id: "mb-team", user_id: "mb-team-member" })];
    const own = await keyOf({ team_id: "mb-team", model_max_budget: { mock: { budget_limit: 100, time_period: "1d" } } });
    expect((await h.chat(first)).status).toBe(200);
    const refused = await refusal(h, second);
    expect(refused.status).toBe(400);
    expect(refused.message).toStartWith("ExceededBudget: Team=mb-team exceeded budget for model=mock. Spend=");
    expect((await h.chat(first, {}, "slow")).status).toBe(200);
    expect((await h.chat(own)).status).toBe(200);
    await h.flush();
    const info = (await json("/team/info?team_id=mb-team")).body.team_info;
    expect(info.model_max_budget).toEqual(TINY());
    expect(Object.keys(info.model_spend)).toEqual(["mock"]);
    expect(info.model_spend.mock).toBeGreaterThan(0);
  });

  test("the period is the entry's time_period: spend in the one ended no longer counts", async () => {
    const { h } = gateway;
    await ok("/user/new", { user_id: "mb-period", auto_create_key: false, model_max_budget: TINY("10s") });
    await ok("/team/new", { team_id: "mb-period-team", model_max_budget: TINY("10s") });
    const keys = [await keyOf({ user_id: "mb-period" }), await keyOf({ team_id: "mb-period-team" })];
    for (const key of keys) expect((await h.chat(key)).status).toBe(200);
    for (const key of keys) expect((await h.chat(key)).status).toBe(400);
    await h.flush();
    // Past the first period, which starts when the user or team was made (by the database's clock).
    h.clock.advance(15_000);
    for (const key of keys) expect((await h.chat(key)).status).toBe(200);
    for (const key of keys) expect((await h.chat(key)).status).toBe(400);
  });

  test("another time_period by /user/update or /team/update starts a new period, in which what was spent counts", async () => {
    const { h, json } = gateway;
    await ok("/user/new", { user_id: "mb-new-period", auto_create_key: false, model_max_budget: TINY("1d") });
    await ok("/team/new", { team_id: "mb-new-period-team", model_max_budget: TINY("1d") });
    const keys = [await keyOf({ user_id: "mb-new-period" }), await keyOf({ team_id: "mb-new-period-team" })];
    for (const key of keys) expect((await h.chat(key)).status).toBe(200);
    for (const key of keys) expect((await h.chat(key)).status).toBe(400);
    await ok("/user/update", { user_id: "mb-new-period", model_max_budget: TINY("10s") });
    await ok("/team/update", { team_id: "mb-new-period-team", model_max_budget: TINY("10s") });
    for (const key of keys) expect((await h.chat(key)).status).toBe(400);
    h.clock.advance(10_000);
    for (const key of keys) expect((await h.chat(key)).status).toBe(200);
    await h.flush();
    expect((await json("/user/info?user_id=mb-new-period")).body.user_info.model_spend.mock).toBeGreaterThan(0);
  });

  test("taken away by /user/update (unset) or /team/update (null), the budget is gone and its spend per model with it", async () => {
    const { h, json } = gateway;
    await ok("/user/new", { user_id: "mb-null", auto_create_key: false, model_max_budget: TINY() });
    await ok("/team/new", { team_id: "mb-null-team", model_max_budget: TINY() });
    const keys = [await keyOf({ user_id: "mb-null" }), await keyOf({ team_id: "mb-null-team" })];
    for (const key of keys) expect((await h.chat(key)).status).toBe(200);
    for (const key of keys) expect((await h.chat(key)).status).toBe(400);
    await ok("/user/update", { user_id: "mb-null", unset: ["model_max_budget"] });
    await ok("/team/update", { team_id: "mb-null-team", model_max_budget: null });
    for (const key of keys) expect((await h.chat(key)).status).toBe(200);
    await h.flush();
    const user = (await json("/user/info?user_id=mb-null")).body.user_info;
    expect([user.model_max_budget, user.model_spend]).toEqual([{}, {}]);
    const team = (await json("/team/info?team_id=mb-null-team")).body.team_info;
    expect([team.model_max_budget, team.model_spend]).toEqual([{}, {}]);
    // Set again, it starts from nothing.
    await ok("/user/update", { user_id: "mb-null", model_max_budget: TINY() });
    expect((await h.chat(keys[0]!)).status).toBe(200);
    expect((await h.chat(keys[0]!)).status).toBe(400);
  });

  test("a user or team deleted takes its spend per model along: made again, it starts from nothing", async () => {
    const { h, json } = gateway;
    await ok("/user/new", { user_id: "mb-gone", auto_create_key: false, model_max_budget: TINY() });
    const key = await keyOf({ user_id: "mb-gone" });
    expect((await h.chat(key)).status).toBe(200);
    await ok("/user/delete", { user_ids: ["mb-gone"] });
    await ok("/user/new", { user_id: "mb-gone", auto_create_key: false, model_max_budget: TINY() });
    await h.flush();
    expect((await json("/user/info?user_id=mb-gone")).body.user_info.model_spend).toEqual({});
    expect((await h.chat(await keyOf({ user_id: "mb-gone" }))).status).toBe(200);
  });

  test("bad entries are 400s naming the field, and write nothing", async () => {
    const { json } = gateway;
    await ok("/user/new", { user_id: "mb-bad", auto_create_key: false });
    await ok("/team/new", { team_id: "mb-bad-team" });
    for (const [path, id] of [["/user/new", { user_id: "mb-bad-2", auto_create_key: false }], ["/user/update", { user_id: "mb-bad" }],
      ["/team/new", { team_id: "mb-bad-team-2" }], ["/team/update", { team_id: "mb-bad-team" }]] as const) {
      for (const [entry, param] of [[{ budget_limit: -1 }, "model_max_budget.mock.budget_limit"], [{ budget_limit: 1, time_period: "1 fortnight" }, "model_max_budget.mock.time_period"],
        [{ max_budget: "x" }, "model_max_budget.mock.max_budget"], [5, "model_max_budget.mock"]] as const) {
        const refused = await json(path, { ...id, model_max_budget: { mock: entry } });
        expect(`${path} ${JSON.stringify(entry)} ${refused.status} ${refused.body.error?.param}`).toBe(`${path} ${JSON.stringify(entry)} 400 ${param}`);
      }
    }
    expect((await json("/user/info?user_id=mb-bad-2")).status).toBe(404);
    expect((await json("/team/info?team_id=mb-bad-team-2")).status).toBe(404);
    expect((await json("/user/info?user_id=mb-bad")).body.user_info.model_max_budget).toEqual({});
    expect((await json("/team/info?team_id=mb-bad-team")).body.team_info.model_max_budget).toEqual({});
  });
});

describe("per-model budgets of users and teams across two instances sharing Redis", () => {
  const redis = sharedRedis();
  let a: Harness;
  let b: Harness;
  beforeAll(async () => {
    const url = await (await sharedPostgres()).newDatabase();
    [a, b] = [await redis.instance(MOCK_CONFIG, url), await redis.instance(MOCK_CONFIG, url)];
  }, 120_000);
  afterAll(async () => {
    for (const h of [a, b]) {
      await h?.close();
      await h?.db.close();
    }
  });
  const ok = async (path: string, body: unknown) => {
    const response = await a.call(path, body);
    expect(`${path} ${response.status}`).toBe(`${path} 200`);
    return (await response.json()) as any;
  };

  test("what one instance spent on the model holds the user's and the team's other keys on the other", async () => {
    await ok("/user/new", { user_id: "shared-user", auto_create_key: false, model_max_budget: TINY() });
    await ok("/team/new", { team_id: "shared-team", model_max_budget: TINY() });
    for (const owner of [{ user_id: "shared-user" }, { team_id: "shared-team" }]) {
      const [first, second] = [(await ok("/key/generate", owner)).key, (await ok("/key/generate", owner)).key];
      expect((await a.chat(first)).status).toBe(200);
      expect((await b.chat(second)).status).toBe(400);
      expect((await b.chat(second, {}, "slow")).status).toBe(200);
    }
    // Dropped by /user/update on one instance, it is gone on the other too.
    await ok("/user/update", { user_id: "shared-user", unset: ["model_max_budget"] });
    await Bun.sleep(100); // the other instance hears of the change through Redis
    expect((await b.chat((await ok("/key/generate", { user_id: "shared-user" })).key)).status).toBe(200);
  });
});

describe("per-model budgets of users and teams, the binary", () => {
  // Upstream usage: 10 prompt + 20 completion tokens at 1e-6 in and 2e-6 out: each request costs 5e-5.
  const COST = PRICED_COST;
  const MODELS = pricedModels;
  let upstream: Upstream;
  beforeAll(async () => {
    upstream = await startUpstream();
  });
  afterAll(() => upstream?.stop());

  for (const kind of ["postgres", "embedded"] as const) {
    test(`several keys of one user and of one team spend on a model until refused (${kind} database)`, async () => {
      const gateway: RunningGateway = await startOn(kind, MODELS(upstream.url));
      try {
        const call = async (path: string, body?: unknown, key = "sk-1234") => {
          const response = await fetch(`${gateway.url}${path}`, {
            method: body === undefined ? "GET" : "POST", headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
            body: body === undefined ? undefined : JSON.stringify(body),
          });
          return { status: response.status, body: (await response.json()) as any };
        };
        const chat = (key: string, model = "m") => call("/v1/chat/completions", { model, messages: [{ role: "user", content: "hi" }] }, key);
        const budget = { m: { budget_limit: 2.5 * COST, time_period: "30d" } };
        expect((await call("/user/new", { user_id: "bin-user", auto_create_key: false, model_max_budget: budget })).status).toBe(200);
        expect((await call("/team/new", { team_id: "bin-team", model_max_budget: budget })).status).toBe(200);
        for (const [owner, label, info] of [[{ user_id: "bin-user" }, "User=bin-user", "/user/info?user_id=bin-user"],
          [{ team_id: "bin-team" }, "Team=bin-team", "/team/info?team_id=bin-team"]] as const) {
          const keys: string[] = [];
          for (let i = 0; i < 3; i++) keys.push((await call("/key/generate", owner)).body.key);
          // Three requests on three keys: 3 × COST reaches 2.5 × COST only with the third.
          for (const key of keys) expect((await chat(key)).status).toBe(200);
          for (const key of keys) {
            const refused = await chat(key);
            expect(refused.status).toBe(400);
            expect(refused.body.error.message).toStartWith(`ExceededBudget: ${label} exceeded budget for model=m. Spend=${3 * COST}, Budget=${2.5 * COST}`);
          }
          expect((await chat(keys[0]!, "other")).status).toBe(200);
          const end = Date.now() + 5000;
          let shown: any;
          do {
            const body = (await call(info)).body;
            shown = (body.user_info ?? body.team_info).model_spend;
            if (shown?.m >= 3 * COST * 0.999) break;
            await Bun.sleep(100);
          } while (Date.now() < end);
          expect(Object.keys(shown)).toEqual(["m"]);
          expect(shown.m).toBeCloseTo(3 * COST, 12);
        }
      } finally {
        await gateway.stop("SIGTERM");
      }
    }, 60_000);
  }
});
