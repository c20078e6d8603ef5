import { describe, expect, test } from "bun:test";
import { hashKey } from "../../src/auth/keys";
import { MOCK_CONFIG, gatewayFor, inProcessGateway } from "../helpers/gateway";

// A row made without a reset (its duration comes from elsewhere: here the key's budget_id) gets one
// at its first write; the spend of each later period must start that period, even while the cached
// key (60 s) still reads the row as it was made.
for (const kind of ["pglite", "postgres"] as const) describe(`first reset of a row on ${kind}`, () => {
  const gateway = gatewayFor(kind);

  test("a key on a budget_id with a 10 s duration keeps the spend of each period over three periods", async () => {
    const { h, json } = { h: gateway.h, json: gateway.json };
    expect((await json("/budget/new", { budget_id: "ten-seconds", max_budget: 100, budget_duration: "10s" })).status).toBe(200);
    const key = (await json("/key/generate", { budget_id: "ten-seconds" })).body.key as string;
    // As a key made before keys on a budget_id got a reset at creation.
    await h.db.query("update keys set budget_reset_at = null where token = $1", [hashKey(key)]);
    const row = async () => (await h.db.query("select spend, budget_reset_at from keys where token = $1", [hashKey(key)]))[0] as any;
    let perRequest = 0;
    for (let period = 0; period < 3; period++) {
      expect((await h.chat(key)).status).toBe(200);
      await h.flush();
      const { spend, budget_reset_at } = await row();
      if (period === 0) perRequest = spend;
      expect(perRequest).toBeGreaterThan(0);
      // This period's request only, in a period that has not ended.
      expect(spend).toBeCloseTo(perRequest, 12);
      expect(new Date(budget_reset_at).getTime()).toBeGreaterThan(h.clock.now());
      if (period < 2) h.clock.set(new Date(budget_reset_at).getTime() + 1);
    }
    // A gateway started again on the same database counts the third period's spend.
    const again = await inProcessGateway(MOCK_CONFIG, { db: h.db, start: h.clock.now() });
    try {
      const info = await (await again.call(`/key/info?key=${key}`)).json() as any;
      expect(info.info.spend).toBeCloseTo(perRequest, 12);
    } finally {
      await again.close();
    }
  });
});

describe("a key made with a budget_id", () => {
  const gateway = gatewayFor("pglite");
  test("starts its budget_id's period when it is made", async () => {
    const { h, json } = { h: gateway.h, json: gateway.json };
    expect((await json("/budget/new", { budget_id: "hourly", max_budget: 100, budget_duration: "1h" })).status).toBe(200);
    const key = (await json("/key/generate", { budget_id: "hourly" })).body.key as string;
    const [row] = await h.db.query("select budget_reset_at from keys where token = $1", [hashKey(key)]) as any[];
    expect(new Date(row.budget_reset_at).getTime()).toBe(h.clock.now() + 3_600_000);
  });
});

describe("members and users on a default duration", () => {
  const gateway = gatewayFor("pglite", `${MOCK_CONFIG}litellm_settings:
  max_internal_user_budget: 10
  internal_user_budget_duration: 1h
`);
  const HOUR = 3_600_000;
  const resetOf = async (sql: string, params: unknown[]) => {
    const [row] = await gateway.h.db.query(sql, params) as any[];
    return row.budget_reset_at === null ? null : new Date(row.budget_reset_at).getTime();
  };
  const memberReset = (teamId: string, userId: string) =>
    resetOf("select budget_reset_at from team_memberships where team_id = $1 and user_id = $2", [teamId, userId]);
  const userReset = (userId: string) => resetOf("select budget_reset_at from users where user_id = $1", [userId]);

  test("a member on the team's team_member_budget_duration starts its period when added", async () => {
    const { h, json } = { h: gateway.h, json: gateway.json };
    expect((await json("/team/new", { team_id: "daily-members", team_member_budget: 1, team_member_budget_duration: "1d" })).status).toBe(200);
    h.clock.advance(5_000);
    expect((await json("/team/member_add", { team_id: "daily-members", member: { user_id: "added", role: "user" } })).status).toBe(200);
    expect(await memberReset("daily-members", "added")).toBe(h.clock.now() + 24 * HOUR);
    h.clock.advance(5_000);
    expect((await json("/user/new", { user_id: "joined", teams: ["daily-members"], auto_create_key: false })).status).toBe(200);
    expect(await memberReset("daily-members", "joined")).toBe(h.clock.now() + 24 * HOUR);
    // A team whose member budget has no duration gives none.
    expect((await json("/team/new", { team_id: "flat-members", team_member_budget: 1 })).status).toBe(200);
    expect((await json("/team/member_add", { team_id: "flat-members", member: { user_id: "added", role: "user" } })).status).toBe(200);
    expect(await memberReset("flat-members", "added")).toBeNull();
  });

  test("an internal user on internal_user_budget_duration starts its period when made, however it is made", async () => {
    const { h, json } = { h: gateway.h, json: gateway.json };
    const now = h.clock.now();
    expect((await json("/user/new", { user_id: "internal", auto_create_key: false })).status).toBe(200);
    expect(await userReset("internal")).toBe(now + HOUR);
    expect((await json("/user/new", { user_id: "own-budget", max_budget: 3, auto_create_key: false })).status).toBe(200);
    expect(await userReset("own-budget")).toBe(now + HOUR);
    const generated = (await json("/key/generate", {})).body.user_id as string;
    expect(await userReset(generated)).toBe(now + HOUR);
    expect((await json("/team/member_add", { team_id: "flat-members", member: { user_id: "new-by-member-add", role: "user" } })).status).toBe(200);
    expect(await userReset("new-by-member-add")).toBe(now + HOUR);
    // Its own duration wins; another role has no default duration.
    expect((await json("/user/new", { user_id: "own-duration", budget_duration: "1d", auto_create_key: false })).status).toBe(200);
    expect(await userReset("own-duration")).toBe(now + 24 * HOUR);
    expect((await json("/user/new", { user_id: "admin", user_role: "proxy_admin", auto_create_key: false })).status).toBe(200);
    expect(await userReset("admin")).toBeNull();
  });

  test("an internal user whose own duration is taken away starts a period of the default one", async () => {
    const { h, json } = { h: gateway.h, json: gateway.json };
    expect((await json("/user/new", { user_id: "was-daily", budget_duration: "1d", auto_create_key: false })).status).toBe(200);
    h.clock.advance(60_000);
    expect((await json("/user/update", { user_id: "was-daily", unset: ["budget_duration"] })).status).toBe(200);
    expect(await userReset("was-daily")).toBe(h.clock.now() + HOUR);
    // Another role has no default: no period.
    expect((await json("/user/new", { user_id: "admin-daily", user_role: "proxy_admin", budget_duration: "1d", auto_create_key: false })).status).toBe(200);
    expect((await json("/user/update", { user_id: "admin-daily", unset: ["budget_duration"] })).status).toBe(200);
    expect(await userReset("admin-daily")).toBeNull();
  });
});
