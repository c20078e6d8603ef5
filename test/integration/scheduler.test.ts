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

const one = async (sql: string, params: unknown[] = []) => (await h.db.query(sql, params))[0]!;

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
