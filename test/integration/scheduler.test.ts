import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { hashKey } from "../../src/auth/keys";
import { resetDueBudgets } from "../../src/scheduler";
import { silentLogger } from "../../src/log";
import { MOCK_CONFIG, inProcessGateway } from "../helpers/gateway";

type Harness = Awaited<ReturnType<typeof inProcessGateway>>;
let h: Harness;
beforeAll(async () => {
  h = await inProcessGateway(MOCK_CONFIG + `
litellm_settings:
  max_internal_user_budget: 0.001
  internal_user_budget_duration: 1h
`);
}, 120_000);
afterAll(() => h.close());

const one = async (sql: string, params: unknown[] = [], on: Harness = h) => (await on.db.query(sql, params))[0]!;

describe("budget reset scheduler", () => {
  test("resets due rows to zero and moves budget_reset_at past now, collapsing missed periods", async () => {
    const now = new Date("2026-03-10T12:00:00Z");
    const due = new Date("2026-03-10T11:00:00Z");
    const key = await h.createKey({ spend: 5, budget_duration: "30s", budget_reset_at: due });
    await h.db.query("insert into users (user_id, spend, budget_reset_at) values ('default-user', 3, $1)", [due]);
    await h.db.query("insert into teams (team_id, spend, budget_duration, budget_reset_at) values ('t-reset', 2, '1mo', $1)", [due]);
    await h.db.query("insert into budgets (budget_id, budget_duration, budget_reset_at) values ('b-reset', '1d', $1)", [due]);
    await h.db.query("insert into end_users (user_id, spend, budget_id, budget_reset_at) values ('c-reset', 1, 'b-reset', $1)", [due]);
    await h.db.query("insert into keys (token, key_name, spend, budget_reset_at) values ('no-duration', 'sk-...none', 7, $1)", [due]);

    const counts = await resetDueBudgets(h.db, now, { internalUserBudgetDuration: "1h" });
    expect(counts.keys).toBe(1);
    const k = await one("select spend, budget_reset_at from keys where token = $1", [hashKey(key)]);
    expect(k.spend).toBe(0);
    expect(new Date(k.budget_reset_at).toISOString()).toBe("2026-03-10T12:00:30.000Z");
    const u = await one("select spend, budget_reset_at from users where user_id = 'default-user'");
    expect(u.spend).toBe(0);
    expect(new Date(u.budget_reset_at).toISOString()).toBe("2026-03-10T13:00:00.000Z");
    const t = await one("select spend, budget_reset_at from teams where team_id = 't-reset'");
    expect(new Date(t.budget_reset_at).toISOString()).toBe("2026-04-10T11:00:00.000Z");
    expect((await one("select spend from end_users where user_id = 'c-reset'")).spend).toBe(0);
    // The budget row's own reset time moves on too (it holds no spend).
    expect(counts.budgets).toBe(1);
    expect(new Date((await one("select budget_reset_at from budgets where budget_id = 'b-reset'")).budget_reset_at).toISOString()).toBe("2026-03-11T11:00:00.000Z");
    // A row without a duration keeps its spend.
    expect((await one("select spend from keys where token = 'no-duration'")).spend).toBe(7);
    // A second pass (another instance) finds nothing left to do.
    expect(await resetDueBudgets(h.db, now, { internalUserBudgetDuration: "1h" })).toEqual({});
  });

  test("spend written after a reset lands in the new period; the gateway keeps enforcing from memory", async () => {
    const start = h.clock.now();
    const key = await h.createKey({ max_budget: 1e-9, budget_duration: "1m", budget_reset_at: new Date(start + 60_000) });
    expect((await h.chat(key)).status).toBe(200);
    expect((await h.chat(key)).status).toBe(400);
    await h.flush();
    h.clock.advance(61_000);
    await resetDueBudgets(h.db, new Date(h.clock.now()), {});
    expect((await one("select spend from keys where token = $1", [hashKey(key)])).spend).toBe(0);
    expect((await h.chat(key)).status).toBe(200);
    await h.flush();
    const row = await one("select spend, budget_reset_at from keys where token = $1", [hashKey(key)]);
    expect(row.spend).toBeGreaterThan(0);
    expect(new Date(row.budget_reset_at).getTime()).toBe(start + 120_000);
  });
});

describe("the scheduler's pace", () => {
  test("settings of 0 seconds give a pass a second, not passes back to back", async () => {
    const { startBudgetScheduler } = await import("../../src/scheduler");
    const zero = await inProcessGateway(MOCK_CONFIG.replace("general_settings:\n", "general_settings:\n  proxy_budget_rescheduler_min_time: 0\n  proxy_budget_rescheduler_max_time: 0\n"));
    const scheduler = startBudgetScheduler({ db: zero.db, log: silentLogger, config: zero.gateway.runtime().config, gateway: zero.gateway });
    try {
      const before = zero.db.statements();
      await Bun.sleep(2_500);
      const sent = zero.db.statements() - before;
      // Two passes of eleven statements (back to back, over 3,000).
      expect(sent).toBeGreaterThan(0);
      expect(sent).toBeLessThanOrEqual(30);
    } finally {
      scheduler.stop();
      await zero.close();
    }
  }, 20_000); // a gateway opens (1–2 s) before the 2.5 s counted
});

describe("customers' periods", () => {
  test("a customer's spend per model resets on its budget's model_max_budget time_period; one without a budget on max_end_user_budget_id's", async () => {
    const now = new Date("2026-03-10T12:00:00Z");
    const due = new Date("2026-03-10T11:00:00Z");
    await h.db.query(`insert into budgets (budget_id, model_max_budget) values ('b-models', '{"m": {"budget_limit": 1, "time_period": "1d"}}')`);
    await h.db.query("insert into end_users (user_id, budget_id) values ('c-models', 'b-models')");
    await h.db.query("insert into customer_model_spend (user_id, model, spend, budget_reset_at) values ('c-models', 'm', 4, $1)", [due]);
    await h.db.query("insert into budgets (budget_id, budget_duration) values ('b-default', '1h')");
    await h.db.query("insert into end_users (user_id, spend, budget_reset_at) values ('c-walk-in', 2, $1)", [due]);

    const counts = await resetDueBudgets(h.db, now, { endUserBudgetId: "b-default" });
    expect(counts.customer_model_spend).toBe(1);
    const m = await one("select spend, budget_reset_at from customer_model_spend where user_id = 'c-models'");
    expect(m.spend).toBe(0);
    expect(new Date(m.budget_reset_at).toISOString()).toBe("2026-03-11T11:00:00.000Z");
    const walkIn = await one("select spend, budget_reset_at from end_users where user_id = 'c-walk-in'");
    expect(walkIn.spend).toBe(0);
    expect(new Date(walkIn.budget_reset_at).toISOString()).toBe("2026-03-10T13:00:00.000Z");
  });
});

describe("users' and teams' periods per model", () => {
  test("their spend per model resets on the time_period of their model_max_budget entry; one without a period is left alone", async () => {
    const now = new Date("2026-03-10T12:00:00Z");
    const due = new Date("2026-03-10T11:00:00Z");
    await h.db.query(`insert into users (user_id, model_max_budget) values ('u-models', '{"m": {"budget_limit": 1, "time_period": "1d"}, "n": {"budget_limit": 1}}')`);
    await h.db.query(`insert into teams (team_id, model_max_budget) values ('t-models', '{"m": {"budget_limit": 1, "time_period": "1h"}}')`);
    await h.db.query("insert into user_model_spend (user_id, model, spend, budget_reset_at) values ('u-models', 'm', 4, $1), ('u-models', 'n', 3, $1)", [due]);
    await h.db.query("insert into team_model_spend (team_id, model, spend, budget_reset_at) values ('t-models', 'm', 5, $1)", [due]);

    const counts = await resetDueBudgets(h.db, now, {});
    expect([counts.user_model_spend, counts.team_model_spend]).toEqual([1, 1]);
    const rows = await h.db.query(`select 'u' as kind, model, spend, budget_reset_at from user_model_spend where user_id = 'u-models'
      union all select 't', model, spend, budget_reset_at from team_model_spend where team_id = 't-models' order by kind desc, model`);
    expect(rows.map((r: any) => [r.kind, r.model, r.spend, new Date(r.budget_reset_at).toISOString()])).toEqual([
      ["u", "m", 0, "2026-03-11T11:00:00.000Z"], ["u", "n", 3, due.toISOString()], ["t", "m", 0, "2026-03-10T13:00:00.000Z"],
    ]);
  });
});

describe("calendar-month periods", () => {
  test("periods begun on the 31st end on the 31st where a month has it, the last day where not, through the API, enforcement and the scheduler", async () => {
    const g = await inProcessGateway(MOCK_CONFIG, { start: Date.parse("2027-01-31T09:00:00.250Z") });
    try {
      const post = async (path: string, body: unknown) => {
        const response = await g.call(path, body);
        expect(response.status).toBe(200);
        return (await response.json()) as any;
      };
      const get = async (path: string) => (await (await g.call(path)).json()) as any;
      const monthly = { budget_duration: "1mo", max_budget: 10 };
      const key = (await post("/key/generate", monthly)).key as string;
      await post("/team/new", { team_id: "t-month", ...monthly });
      await post("/user/new", { user_id: "u-month", ...monthly });
      await post("/customer/new", { user_id: "c-month", ...monthly });
      await post("/budget/new", { budget_id: "b-month", ...monthly });
      const shown = async () => [
        (await get(`/key/info?key=${key}`)).info.budget_reset_at,
        (await get("/team/info?team_id=t-month")).team_info.budget_reset_at,
        (await get("/user/info?user_id=u-month")).user_info.budget_reset_at,
        (await get("/customer/info?end_user_id=c-month")).budget_reset_at,
        (await post("/budget/info", { budgets: ["b-month"] }))[0].budget_reset_at,
      ];
      const stored = async () => [
        (await one("select budget_reset_at from keys where token = $1", [hashKey(key)], g)).budget_reset_at,
        (await one("select budget_reset_at from teams where team_id = 't-month'", [], g)).budget_reset_at,
        (await one("select budget_reset_at from users where user_id = 'u-month'", [], g)).budget_reset_at,
        (await one("select budget_reset_at from end_users where user_id = 'c-month'", [], g)).budget_reset_at,
        (await one("select budget_reset_at from budgets where budget_id = 'b-month'", [], g)).budget_reset_at,
      ].map((at) => new Date(at).toISOString());
      const five = (at: string) => [at, at, at, at, at];
      expect(await shown()).toEqual(five("2027-02-28T09:00:00.250Z"));

      // March 1st: February's period is over. The API shows the period enforcement counts, before
      // the scheduler writes it; the key's spend goes into it; the scheduler writes the same end.
      g.clock.set(Date.parse("2027-03-01T00:00:00Z"));
      expect(await shown()).toEqual(five("2027-03-31T09:00:00.250Z"));
      expect((await g.chat(key)).status).toBe(200);
      await g.flush();
      // The key's spend was written into the period enforcement planned it in.
      const spent = await one("select spend, budget_reset_at from keys where token = $1", [hashKey(key)], g);
      expect([spent.spend > 0, new Date(spent.budget_reset_at).toISOString()]).toEqual([true, "2027-03-31T09:00:00.250Z"]);
      await resetDueBudgets(g.db, new Date(g.clock.now()), {});
      expect(await stored()).toEqual(five("2027-03-31T09:00:00.250Z"));

      // Then April's last day, and the 31st again in May.
      g.clock.set(Date.parse("2027-04-01T00:00:00Z"));
      await resetDueBudgets(g.db, new Date(g.clock.now()), {});
      expect(await stored()).toEqual(five("2027-04-30T09:00:00.250Z"));
      g.clock.set(Date.parse("2027-05-01T00:00:00Z"));
      expect(await shown()).toEqual(five("2027-05-31T09:00:00.250Z"));
      await resetDueBudgets(g.db, new Date(g.clock.now()), {});
      expect(await stored()).toEqual(five("2027-05-31T09:00:00.250Z"));

      // A new duration starts a new chain from the change.
      await post("/key/update", { key, budget_duration: "2mo" });
      expect((await get(`/key/info?key=${key}`)).info.budget_reset_at).toBe("2027-07-01T00:00:00.000Z");
    } finally {
      await g.close();
    }
  }, 30_000);

  test("the gateway's own budget and a per-model budget whose period an admin changed count their months from when they began too", async () => {
    const g = await inProcessGateway(MOCK_CONFIG + `
litellm_settings:
  max_budget: 100
  budget_duration: 1mo
`, { start: Date.parse("2027-01-31T09:00:00.250Z") });
    try {
      const post = async (path: string, body: unknown) => {
        const response = await g.call(path, body);
        expect(response.status).toBe(200);
        return (await response.json()) as any;
      };
      const globalReset = async () => ((await (await g.call("/global/spend")).json()) as any).budget_reset_at;
      expect(await globalReset()).toBe("2027-02-28T09:00:00.250Z");
      const key = (await post("/key/generate", { model_max_budget: { mock: { budget_limit: 5, time_period: "1d" } } })).key as string;
      expect((await g.chat(key)).status).toBe(200);
      await g.flush();
      // The key's budget for the model moves to a month, its period starting now.
      await post("/key/update", { key, model_max_budget: { mock: { budget_limit: 5, time_period: "1mo" } } });
      const modelReset = async () =>
        new Date((await one("select budget_reset_at from key_model_spend where token = $1 and model = 'mock'", [hashKey(key)], g)).budget_reset_at).toISOString();
      expect(await modelReset()).toBe("2027-02-28T09:00:00.250Z");

      g.clock.set(Date.parse("2027-03-01T00:00:00Z"));
      expect(await globalReset()).toBe("2027-03-31T09:00:00.250Z");
      expect((await g.chat(key)).status).toBe(200);
      await g.flush();
      // The request's spend on the model went into the period ending on the 31st.
      expect(await modelReset()).toBe("2027-03-31T09:00:00.250Z");
      g.clock.set(Date.parse("2027-04-01T00:00:00Z"));
      await resetDueBudgets(g.db, new Date(g.clock.now()), { gatewayBudgetDuration: "1mo" });
      expect(await modelReset()).toBe("2027-04-30T09:00:00.250Z");
      g.clock.set(Date.parse("2027-05-01T00:00:00Z"));
      await resetDueBudgets(g.db, new Date(g.clock.now()), { gatewayBudgetDuration: "1mo" });
      expect(await modelReset()).toBe("2027-05-31T09:00:00.250Z");
      expect(new Date((await one("select budget_reset_at from gateway_spend where id = 1", [], g)).budget_reset_at).toISOString()).toBe("2027-05-31T09:00:00.250Z");
    } finally {
      await g.close();
    }
  }, 30_000);
});
