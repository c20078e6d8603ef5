import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { hashKey } from "../../src/auth/keys";
import { parseConfig } from "../../src/config";
import { resetDueBudgets } from "../../src/scheduler";
import { startBinary } from "../helpers/binary";
import { MASTER, MOCK_CONFIG, gatewayFor, inProcessGateway } from "../helpers/gateway";
import { tempDir } from "../helpers/services";
import { until } from "../helpers/until";

// Budget periods an admin change touches without meaning to: a duration that keeps applying from
// elsewhere when the row's own goes, or starts applying with a role; the same duration sent again;
// a shared budget's per-model period changed under the customers on it.

const CONFIG = `${MOCK_CONFIG}litellm_settings:
  internal_user_budget_duration: 1h
`;
const HOUR = 3_600_000;

for (const kind of ["pglite", "postgres"] as const) describe(`a duration that applies from elsewhere (${kind})`, () => {
  const gateway = gatewayFor(kind, CONFIG);

  test("a key's own budget_duration taken away while its budget_id has one: what it spent still counts, in a period of its budget's", async () => {
    const { h, json } = gateway;
    expect((await json("/budget/new", { budget_id: "hourly", budget_duration: "1h" })).status).toBe(200);
    const { key } = (await json("/key/generate", { budget_id: "hourly", max_budget: 1e-9, budget_duration: "1d" })).body;
    expect((await h.chat(key)).status).toBe(200);
    expect((await h.chat(key)).status).toBe(400);
    await h.flush();
    const [{ spend }] = await h.db.query("select spend from keys where token = $1", [hashKey(key)]) as any[];
    expect(spend).toBeGreaterThan(0);
    const updated = await json("/key/update", { key, budget_duration: null });
    expect(updated.status).toBe(200);
    // The key now resets on its budget's hour, starting now, with what it spent counted.
    expect(updated.body).toMatchObject({ spend, budget_reset_at: new Date(h.clock.now() + HOUR).toISOString() });
    expect((await h.chat(key)).status).toBe(400);
    await h.flush();
    const [row] = await h.db.query("select spend from keys where token = $1", [hashKey(key)]) as any[];
    expect(row.spend).toBe(spend);
    // Its budget's period ends: the key is usable again.
    h.clock.advance(HOUR);
    expect((await h.chat(key)).status).toBe(200);
  });

  test("a user made an internal_user, on internal_user_budget_duration from then: what it spent still counts", async () => {
    const { h, json } = gateway;
    expect((await json("/user/new", { user_id: `admin-${kind}`, user_role: "proxy_admin", max_budget: 1e-9, auto_create_key: false })).status).toBe(200);
    const { key } = (await json("/key/generate", { user_id: `admin-${kind}` })).body;
    expect((await h.chat(key)).status).toBe(200);
    expect((await h.chat(key)).status).toBe(400);
    const updated = await json("/user/update", { user_id: `admin-${kind}`, user_role: "internal_user" });
    expect(updated.status).toBe(200);
    expect(updated.body.spend).toBeGreaterThan(0);
    expect(updated.body.budget_reset_at).toBe(new Date(h.clock.now() + HOUR).toISOString());
    expect((await h.chat(key)).status).toBe(400);
    h.clock.advance(HOUR);
    expect((await h.chat(key)).status).toBe(200);
  });
});

describe("a shared budget's per-model period changed", () => {
  const gateway = gatewayFor("pglite");

  test("by /budget/update: its customers' spend per model runs on the new period from then", async () => {
    const { h, json } = gateway;
    const daily = { mock: { budget_limit: 1e-9, time_period: "1d" } };
    expect((await json("/budget/new", { budget_id: "per-model", model_max_budget: daily })).status).toBe(200);
    expect((await json("/customer/new", { user_id: "on-per-model", budget_id: "per-model" })).status).toBe(200);
    const { key } = (await json("/key/generate", {})).body;
    expect((await h.chat(key, { user: "on-per-model" })).status).toBe(200);
    expect((await h.chat(key, { user: "on-per-model" })).status).toBe(400);
    expect((await json("/budget/update", { budget_id: "per-model", model_max_budget: { mock: { budget_limit: 1e-9, time_period: "10s" } } })).status).toBe(200);
    // What was spent counts in the new period, as a key's per-model budget given another period.
    expect((await h.chat(key, { user: "on-per-model" })).status).toBe(400);
    h.clock.advance(10_000);
    expect((await h.chat(key, { user: "on-per-model" })).status).toBe(200);
    await h.flush();
    expect((await json("/customer/info?end_user_id=on-per-model")).body.model_spend.mock).toBeGreaterThan(0);
  });
});

for (const kind of ["pglite", "postgres"] as const) describe(`a shared budget's per-model period changed, for the keys on it (${kind})`, () => {
  const gateway = gatewayFor(kind);

  test("by /budget/update: the spend per model of its keys runs on the new period from then", async () => {
    const { h, json } = gateway;
    const daily = { mock: { budget_limit: 1e-9, time_period: "1d" } };
    expect((await json("/budget/new", { budget_id: "keys-per-model", model_max_budget: daily })).status).toBe(200);
    const { key } = (await json("/key/generate", { budget_id: "keys-per-model" })).body;
    expect((await h.chat(key)).status).toBe(200);
    expect((await h.chat(key)).status).toBe(400);
    expect((await json("/budget/update", { budget_id: "keys-per-model", model_max_budget: { mock: { budget_limit: 1e-9, time_period: "10s" } } })).status).toBe(200);
    expect((await h.chat(key)).status).toBe(400);
    h.clock.advance(10_000);
    expect((await h.chat(key)).status).toBe(200);
  });
});

describe("the same duration sent again leaves the period running", () => {
  const gateway = gatewayFor("pglite");

  test("a team's team_member_budget_duration: its members reset when their period ends, and the member budget shows its period", async () => {
    const { h, json } = gateway;
    expect((await json("/team/new", { team_id: "resent", team_member_budget: 1e-9, team_member_budget_duration: "10s" })).status).toBe(200);
    expect((await json("/team/member_add", { team_id: "resent", member: { user_id: "member", role: "user" } })).status).toBe(200);
    const made = h.clock.now();
    const { key } = (await json("/key/generate", { team_id: "resent", user_id: "member" })).body;
    expect((await h.chat(key)).status).toBe(200);
    expect((await h.chat(key)).status).toBe(400);
    h.clock.advance(6_000);
    // An admin screen sends every field again.
    expect((await json("/team/update", { team_id: "resent", team_member_budget: 1e-9, team_member_budget_duration: "10s" })).status).toBe(200);
    const info = (await json("/team/info?team_id=resent")).body;
    expect(info.team_memberships[0].budget_reset_at).toBe(new Date(made + 10_000).toISOString());
    expect(info.team_info.team_member_budget_table.budget_reset_at).not.toBeNull();
    h.clock.set(made + 10_000);
    expect((await h.chat(key)).status).toBe(200);
  });

  test("a member's own budget_duration by /team/member_update: the member resets when its period ends; a null keeps the budget's and its period", async () => {
    const { h, json } = gateway;
    expect((await json("/team/new", { team_id: "own-member-budgets" })).status).toBe(200);
    for (const [user, change] of [["same", { max_budget_in_team: 1e-9, budget_duration: "10s" }], ["null", { budget_duration: null }]] as const) {
      expect((await json("/team/member_add", { team_id: "own-member-budgets", member: { user_id: user, role: "user" }, max_budget_in_team: 1e-9, budget_duration: "10s" })).status).toBe(200);
      const made = h.clock.now();
      const { key } = (await json("/key/generate", { team_id: "own-member-budgets", user_id: user })).body;
      expect((await h.chat(key)).status).toBe(200);
      expect((await h.chat(key)).status).toBe(400);
      h.clock.advance(6_000);
      expect((await json("/team/member_update", { team_id: "own-member-budgets", user_id: user, ...change })).status).toBe(200);
      expect((await h.chat(key)).status).toBe(400);
      h.clock.set(made + 10_000);
      expect((await h.chat(key)).status).toBe(200);
    }
  });

  test("a customer's budget_duration: the customer resets when its period ends", async () => {
    const { h, json } = gateway;
    expect((await json("/customer/new", { user_id: "resent", max_budget: 1e-9, budget_duration: "10s" })).status).toBe(200);
    const made = h.clock.now();
    const { key } = (await json("/key/generate", {})).body;
    expect((await h.chat(key, { user: "resent" })).status).toBe(200);
    expect((await h.chat(key, { user: "resent" })).status).toBe(400);
    h.clock.advance(6_000);
    expect((await json("/customer/update", { user_id: "resent", max_budget: 1e-9, budget_duration: "10s" })).status).toBe(200);
    expect((await json("/customer/info?end_user_id=resent")).body.budget_reset_at).toBe(new Date(made + 10_000).toISOString());
    h.clock.set(made + 10_000);
    expect((await h.chat(key, { user: "resent" })).status).toBe(200);
  });
});

describe("a customer on litellm_settings.max_end_user_budget_id's duration", () => {
  const gateway = gatewayFor("pglite", `${MOCK_CONFIG}litellm_settings:
  max_end_user_budget_id: everyone
`);

  test("taken off its budget (budget_id null): what it spent still counts, in a period of the default's from then", async () => {
    const { h, json } = gateway;
    expect((await json("/budget/new", { budget_id: "everyone", max_budget: 1e-9, budget_duration: "1h" })).status).toBe(200);
    expect((await json("/budget/new", { budget_id: "daily-customers", max_budget: 1e-9, budget_duration: "1d" })).status).toBe(200);
    expect((await json("/customer/new", { user_id: "mover", budget_id: "daily-customers" })).status).toBe(200);
    const { key } = (await json("/key/generate", {})).body;
    expect((await h.chat(key, { user: "mover" })).status).toBe(200);
    expect((await h.chat(key, { user: "mover" })).status).toBe(400);
    await h.flush();
    const [{ spend }] = await h.db.query("select spend from end_users where user_id = 'mover'") as any[];
    const moved = await json("/customer/update", { user_id: "mover", budget_id: null });
    expect(moved.status).toBe(200);
    expect(moved.body).toMatchObject({ spend, budget_reset_at: new Date(h.clock.now() + HOUR).toISOString() });
    expect((await h.chat(key, { user: "mover" })).status).toBe(400);
    h.clock.advance(HOUR);
    expect((await h.chat(key, { user: "mover" })).status).toBe(200);
  });

  test("made with a spend and no budget of its own: the spend counts", async () => {
    const { h, json } = gateway;
    expect((await json("/customer/new", { user_id: "arrives-spent", spend: 1 })).body.budget_reset_at).toBe(new Date(h.clock.now() + HOUR).toISOString());
    const { key } = (await json("/key/generate", {})).body;
    expect((await h.chat(key, { user: "arrives-spent" })).status).toBe(400);
  });
});

describe("a duration changed after its period ended, before the scheduler wrote the reset", () => {
  const gateway = gatewayFor("pglite");

  test("the ended period's spend does not come back: key, user, team, customer, member, a budget's holders, per-model budgets", async () => {
    const { h, json } = gateway;
    expect((await json("/user/new", { user_id: "ended-user", max_budget: 1e-9, budget_duration: "10s", auto_create_key: false })).status).toBe(200);
    expect((await json("/team/new", { team_id: "ended-team", max_budget: 1e-9, budget_duration: "10s" })).status).toBe(200);
    expect((await json("/team/new", { team_id: "ended-members", team_member_budget: 1e-9, team_member_budget_duration: "10s" })).status).toBe(200);
    expect((await json("/team/member_add", { team_id: "ended-members", member: { user_id: "ended-member", role: "user" } })).status).toBe(200);
    expect((await json("/customer/new", { user_id: "ended-customer", max_budget: 1e-9, budget_duration: "10s" })).status).toBe(200);
    expect((await json("/budget/new", { budget_id: "ended-shared", max_budget: 1e-9, budget_duration: "10s" })).status).toBe(200);
    const keyOf = async (fields: Record<string, unknown>) => (await json("/key/generate", fields)).body.key as string;
    const cases: Array<{ key: string; user?: string; change: () => Promise<{ status: number }> }> = [];
    const own = await keyOf({ max_budget: 1e-9, budget_duration: "10s" });
    cases.push({ key: own, change: () => json("/key/update", { key: own, budget_duration: "1h" }) });
    cases.push({ key: await keyOf({ user_id: "ended-user" }), change: () => json("/user/update", { user_id: "ended-user", budget_duration: "1h" }) });
    cases.push({ key: await keyOf({ team_id: "ended-team" }), change: () => json("/team/update", { team_id: "ended-team", budget_duration: "1h" }) });
    cases.push({ key: await keyOf({ team_id: "ended-members", user_id: "ended-member" }),
      change: () => json("/team/update", { team_id: "ended-members", team_member_budget_duration: "1h" }) });
    cases.push({ key: await keyOf({}), user: "ended-customer", change: () => json("/customer/update", { user_id: "ended-customer", budget_duration: "1h" }) });
    cases.push({ key: await keyOf({ budget_id: "ended-shared" }), change: () => json("/budget/update", { budget_id: "ended-shared", budget_duration: "1h" }) });
    const perModel = (period: string) => ({ mock: { budget_limit: 1e-9, time_period: period } });
    const modelKey = await keyOf({ model_max_budget: perModel("10s") });
    cases.push({ key: modelKey, change: () => json("/key/update", { key: modelKey, model_max_budget: perModel("1h") }) });
    expect((await json("/budget/new", { budget_id: "ended-models", model_max_budget: perModel("10s") })).status).toBe(200);
    expect((await json("/customer/new", { user_id: "ended-model-customer", budget_id: "ended-models" })).status).toBe(200);
    cases.push({ key: await keyOf({}), user: "ended-model-customer", change: () => json("/budget/update", { budget_id: "ended-models", model_max_budget: perModel("1h") }) });
    for (const c of cases) {
      const extra = c.user ? { user: c.user } : {};
      expect((await h.chat(c.key, extra)).status).toBe(200);
      expect((await h.chat(c.key, extra)).status).toBe(400);
    }
    // Past every first period (a per-model one starts when its key or customer was made, by the database's clock).
    h.clock.advance(15_000);
    for (const c of cases) {
      expect((await c.change()).status).toBe(200);
      // Nothing was spent in the period running when the change came: the new one starts from nothing.
      expect((await h.chat(c.key, c.user ? { user: c.user } : {})).status).toBe(200);
    }
  });
});

describe("the gateway's budget_duration changed by a reload after its period ended", () => {
  test("the ended period's spend does not come back", async () => {
    let source = `${MOCK_CONFIG}litellm_settings:\n  max_budget: 0.000000001\n  budget_duration: 10s\n`;
    const g = await inProcessGateway(source, { configSource: () => parseConfig(source, {}) });
    try {
      expect((await g.chat(MASTER)).status).toBe(200);
      expect((await g.chat(MASTER)).status).toBe(400);
      await g.flush();
      g.clock.advance(10_000);
      source = source.replace("10s", "1h");
      await g.gateway.reloadFromSource();
      expect((await g.chat(MASTER)).status).toBe(200);
      expect((await g.chat(MASTER)).status).toBe(400);
    } finally {
      await g.close();
    }
  });
});

describe("the scheduler", () => {
  const gateway = gatewayFor("pglite");

  test("resets a key's spend per model on its budget_id's model_max_budget time_period", async () => {
    const { h, json } = gateway;
    const now = new Date("2026-03-10T12:00:00Z");
    const due = new Date("2026-03-10T11:00:00Z");
    expect((await json("/budget/new", { budget_id: "models-daily", model_max_budget: { m: { budget_limit: 1, time_period: "1d" } } })).status).toBe(200);
    const key = await h.createKey({ budget_id: "models-daily" });
    await h.db.query("insert into key_model_spend (token, model, spend, budget_reset_at) values ($1, 'm', 4, $2)", [hashKey(key), due]);
    expect((await resetDueBudgets(h.db, now, {})).key_model_spend).toBe(1);
    const [row] = await h.db.query("select spend, budget_reset_at from key_model_spend where token = $1", [hashKey(key)]) as any[];
    expect(row.spend).toBe(0);
    expect(new Date(row.budget_reset_at).toISOString()).toBe("2026-03-11T11:00:00.000Z");
  });
});

describe("a default duration given another length in the config", () => {
  test("internal_user_budget_duration by a reload: internal users on it start a period of the new length then, what they spent counted", async () => {
    let source = `${MOCK_CONFIG}litellm_settings:\n  internal_user_budget_duration: 30d\n`;
    const g = await inProcessGateway(source, { configSource: () => parseConfig(source, {}) });
    try {
      expect((await g.call("/user/new", { user_id: "on-default", max_budget: 1e-9, auto_create_key: false })).status).toBe(200);
      expect((await g.call("/user/new", { user_id: "own-duration", max_budget: 1e-9, budget_duration: "30d", auto_create_key: false })).status).toBe(200);
      const { key } = (await (await g.call("/key/generate", { user_id: "on-default" })).json()) as any;
      const { key: own } = (await (await g.call("/key/generate", { user_id: "own-duration" })).json()) as any;
      for (const k of [key, own]) {
        expect((await g.chat(k)).status).toBe(200);
        expect((await g.chat(k)).status).toBe(400);
      }
      source = `${MOCK_CONFIG}litellm_settings:\n  internal_user_budget_duration: 1h\n`;
      await g.gateway.reloadFromSource();
      expect((await g.chat(key)).status).toBe(400);
      const [row] = await g.db.query("select spend, budget_reset_at from users where user_id = 'on-default'") as any[];
      expect(row.spend).toBeGreaterThan(0);
      expect(row.budget_reset_at.getTime()).toBe(g.clock.now() + HOUR);
      // The same length again (60m is 1h) leaves the period running.
      g.clock.advance(HOUR / 2);
      source = `${MOCK_CONFIG}litellm_settings:\n  internal_user_budget_duration: 60m\n`;
      await g.gateway.reloadFromSource();
      expect((await g.chat(key)).status).toBe(400);
      // An hour after the reload the user's hourly period has ended; one with a duration of its own keeps it.
      g.clock.advance(HOUR / 2);
      expect((await g.chat(key)).status).toBe(200);
      expect((await g.chat(own)).status).toBe(400);
    } finally {
      await g.close();
    }
  });

  test("max_end_user_budget_id pointed at a budget of another duration by a reload: customers without a budget start a period of it then", async () => {
    let source = `${MOCK_CONFIG}litellm_settings:\n  max_end_user_budget_id: monthly\n`;
    const g = await inProcessGateway(source, { configSource: () => parseConfig(source, {}) });
    try {
      expect((await g.call("/budget/new", { budget_id: "monthly", max_budget: 1e-9, budget_duration: "30d" })).status).toBe(200);
      expect((await g.call("/budget/new", { budget_id: "hourly", max_budget: 1e-9, budget_duration: "1h" })).status).toBe(200);
      const key = await g.createKey();
      expect((await g.chat(key, { user: "on-default" })).status).toBe(200);
      expect((await g.chat(key, { user: "on-default" })).status).toBe(400);
      source = `${MOCK_CONFIG}litellm_settings:\n  max_end_user_budget_id: hourly\n`;
      await g.gateway.reloadFromSource();
      expect((await g.chat(key, { user: "on-default" })).status).toBe(400);
      const [row] = await g.db.query("select spend, budget_reset_at from end_users where user_id = 'on-default'") as any[];
      expect(row.spend).toBeGreaterThan(0);
      expect(row.budget_reset_at.getTime()).toBe(g.clock.now() + HOUR);
      g.clock.advance(HOUR);
      expect((await g.chat(key, { user: "on-default" })).status).toBe(200);
      // /budget/update giving the default budget another duration starts the period itself, and stores
      // the length it runs on: a reload of the same config starts none.
      expect((await g.call("/budget/update", { budget_id: "hourly", budget_duration: "2h" })).status).toBe(200);
      const [stored] = await g.db.query("select end_user_budget_duration from gateway_spend") as any[];
      expect(stored.end_user_budget_duration).toBe("2h");
      const [started] = await g.db.query("select budget_reset_at from end_users where user_id = 'on-default'") as any[];
      g.clock.advance(HOUR);
      await g.gateway.reloadFromSource();
      const [after] = await g.db.query("select budget_reset_at from end_users where user_id = 'on-default'") as any[];
      expect(after.budget_reset_at).toEqual(started.budget_reset_at);
    } finally {
      await g.close();
    }
  });

  test("max_end_user_budget_id's budget made by /budget/new: customers without a budget start a period of it then, and a reload starts none", async () => {
    const source = `${MOCK_CONFIG}litellm_settings:\n  max_end_user_budget_id: later\n`;
    const g = await inProcessGateway(source, { configSource: () => parseConfig(source, {}) });
    try {
      const key = await g.createKey();
      expect((await g.chat(key, { user: "before-budget" })).status).toBe(200);
      expect((await g.call("/budget/new", { budget_id: "later", max_budget: 1e-9, budget_duration: "1h" })).status).toBe(200);
      // What it spent before counts in the period that starts now, as for a customer moved onto the default.
      expect((await g.chat(key, { user: "before-budget" })).status).toBe(400);
      const [row] = await g.db.query("select budget_reset_at from end_users where user_id = 'before-budget'") as any[];
      expect(row.budget_reset_at.getTime()).toBe(g.clock.now() + HOUR);
      g.clock.advance(HOUR / 2);
      await g.gateway.reloadFromSource();
      const [after] = await g.db.query("select budget_reset_at from end_users where user_id = 'before-budget'") as any[];
      expect(after.budget_reset_at).toEqual(row.budget_reset_at);
      g.clock.advance(HOUR / 2);
      expect((await g.chat(key, { user: "before-budget" })).status).toBe(200);
    } finally {
      await g.close();
    }
  });

  test("internal_user_budget_duration at a restart of the binary with an edited config (embedded database)", async () => {
    const cwd = tempDir("default-duration");
    const config = (duration: string) => `${MOCK_CONFIG}  data_dir: ${join(cwd, "data")}\nlitellm_settings:\n  internal_user_budget_duration: ${duration}\n`;
    const admin = (url: string, path: string, body?: unknown) => fetch(`${url}${path}`, {
      method: body === undefined ? "GET" : "POST", headers: { authorization: `Bearer ${MASTER}`, "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const chat = (url: string, key: string) => fetch(`${url}/v1/chat/completions`, {
      method: "POST", headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
      body: JSON.stringify({ model: "mock", messages: [{ role: "user", content: "hi" }] }),
    });
    const first = await startBinary({ config: config("30d"), cwd });
    let key: string;
    try {
      expect((await admin(first.url, "/user/new", { user_id: "on-default", max_budget: 1e-9, auto_create_key: false })).status).toBe(200);
      key = ((await (await admin(first.url, "/key/generate", { user_id: "on-default" })).json()) as any).key;
      expect((await chat(first.url, key)).status).toBe(200);
      expect((await chat(first.url, key)).status).toBe(400);
    } finally {
      expect(await first.stop("SIGTERM")).toBe(0);
    }
    const second = await startBinary({ config: config("1h"), cwd });
    try {
      const restarted = Date.now();
      const userInfo = async () => ((await (await admin(second.url, "/user/info?user_id=on-default")).json()) as any).user_info;
      // The database opens behind the started gateway (a warm start); the period starts once it is open.
      await until("the user's new period", async () => new Date((await userInfo()).budget_reset_at).getTime() <= Date.now() + HOUR, 10_000)
        .catch((error) => { throw new Error(`${error}\n${second.output()}`); });
      const info = await userInfo();
      expect(info.spend).toBeGreaterThan(0);
      // A period of an hour from the restart, not the rest of the 30 days it started with.
      expect(new Date(info.budget_reset_at).getTime()).toBeGreaterThan(restarted + HOUR - 60_000);
      expect((await chat(second.url, key)).status).toBe(400);
    } finally {
      expect(await second.stop("SIGTERM")).toBe(0);
    }
  }, 90_000);
});
