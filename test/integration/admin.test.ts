import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { hashKey } from "../../src/auth/keys";
import { openDatabase } from "../../src/db";
import { MOCK_CONFIG, inProcessGateway } from "../helpers/gateway";
import { sharedPostgres } from "../helpers/services";

type Harness = Awaited<ReturnType<typeof inProcessGateway>>;

const ADMIN_ROUTES: [string, unknown?][] = [
  ["/key/generate", {}], ["/key/update", { key: "sk-x" }], ["/key/delete", { keys: ["sk-x"] }], ["/key/list"], ["/key/regenerate", { key: "sk-x" }],
  ["/key/block", { key: "sk-x" }], ["/key/unblock", { key: "sk-x" }], ["/user/new", {}], ["/user/update", { user_id: "u" }],
  ["/user/delete", { user_ids: ["u"] }], ["/user/info?user_id=u"], ["/user/list"], ["/team/new", {}], ["/team/update", { team_id: "t" }],
  ["/team/delete", { team_ids: ["t"] }], ["/team/info?team_id=t"], ["/team/list"], ["/team/member_add", { team_id: "t", member: { user_id: "u" } }],
  ["/team/member_update", { team_id: "t", user_id: "u" }], ["/team/member_delete", { team_id: "t", user_id: "u" }], ["/team/block", { team_id: "t" }],
  ["/team/unblock", { team_id: "t" }], ["/budget/new", {}], ["/budget/update", { budget_id: "b" }], ["/budget/info", { budgets: ["b"] }],
  ["/budget/list"], ["/budget/delete", { id: "b" }], ["/customer/new", { user_id: "c" }], ["/customer/update", { user_id: "c" }],
  ["/customer/delete", { user_ids: ["c"] }], ["/customer/info?end_user_id=c"], ["/customer/list"], ["/customer/block", { user_ids: ["c"] }],
  ["/customer/unblock", { user_ids: ["c"] }], ["/spend/logs"], ["/global/spend"], ["/metrics"],
  ["/team/model/add", { team_id: "t", models: ["mock"] }], ["/team/model/delete", { team_id: "t", models: ["mock"] }],
  ["/budget/settings?budget_id=b"], ["/user/info"],
];

for (const kind of ["pglite", "postgres"] as const) describe(`admin API on ${kind}`, () => {
let h: Harness;
beforeAll(async () => {
  const db = kind === "postgres" ? await openDatabase({ url: await (await sharedPostgres()).newDatabase(), dataDir: "" }) : undefined;
  h = await inProcessGateway(MOCK_CONFIG.replace("  - model_name: gpt-4o\n", "  - model_name: gpt-4o\n    model_info: {access_groups: [beta-models]}\n"), { db });
}, 120_000);
afterAll(async () => {
  await h.close();
  if (kind === "postgres") await h.db.close();
});

async function json(path: string, body?: unknown, key?: string | null) {
  const response = await h.call(path, body, key === undefined ? "sk-1234" : key);
  return { status: response.status, body: (await response.json()) as any };
}


describe("authorisation", () => {
  test("a non-admin key reaches no admin route; a proxy_admin's key does", async () => {
    const user = await json("/user/new", { user_id: "plain-user" });
    const admin = await json("/user/new", { user_id: "boss", user_role: "proxy_admin" });
    for (const [path, body] of ADMIN_ROUTES) {
      const refused = await json(path, body, user.body.key);
      expect(`${path} ${refused.status} ${refused.body.error?.type}`).toBe(`${path} 401 auth_error`);
    }
    expect((await json("/key/list", undefined, admin.body.key)).status).toBe(200);
    expect((await json("/budget/new", { budget_id: "by-admin" }, admin.body.key)).status).toBe(200);
    expect((await json("/key/list", undefined, null)).status).toBe(401);
    expect((await json("/key/list", undefined, "sk-unknown")).status).toBe(401);
  });

  test("a caller without the right gets 401 before its body or query is read", async () => {
    const user = await json("/user/new", { user_id: "plain-user-2" });
    for (const [path, body] of ADMIN_ROUTES) {
      if (path === "/metrics") continue;
      // Malformed JSON on every POST route, a query out of bounds on every GET route.
      const [route, junk] = body === undefined ? [`${path}${path.includes("?") ? "&" : "?"}page=0&size=0&limit=0`, undefined] : [path, "{bad"];
      for (const key of [user.body.key, null, "sk-unknown"]) {
        const response = await h.call(route, junk, key);
        expect(`${route} ${key === null ? "no key" : "bad key"} ${response.status}`).toBe(`${route} ${key === null ? "no key" : "bad key"} 401`);
      }
    }
    // Valid JSON with invalid fields too.
    for (const [path, body] of [["/key/update", {}], ["/budget/info", {}], ["/key/generate", { max_budget: "x" }], ["/customer/new", {}]] as const) {
      expect((await json(path, body, user.body.key)).status).toBe(401);
    }
  });

  test("a key reads its own /key/info and no other", async () => {
    const a = await json("/key/generate", {});
    const b = await json("/key/generate", {});
    expect((await json("/key/info", undefined, a.body.key)).body.info.token).toBe(a.body.token);
    expect((await json(`/key/info?key=${b.body.key}`, undefined, a.body.key)).status).toBe(401);
  });

  test("blocked, expired and unknown keys; blocked teams and customers", async () => {
    const key = await json("/key/generate", { duration: "1h" });
    expect((await h.chat(key.body.key)).status).toBe(200);
    await json("/key/block", { key: key.body.key });
    expect((await h.chat(key.body.key)).status).toBe(403);
    await json("/key/unblock", { key: key.body.key });
    expect((await h.chat(key.body.key)).status).toBe(200);
    h.clock.advance(3_600_001);
    const expired = await h.chat(key.body.key);
    expect(expired.status).toBe(401);
    expect(((await expired.json()) as any).error.type).toBe("expired_key");
    expect((await h.chat("sk-never-issued")).status).toBe(401);
    const team = await json("/team/new", { team_alias: "blocked-team" });
    const teamKey = await json("/key/generate", { team_id: team.body.team_id });
    await json("/team/block", { team_id: team.body.team_id });
    expect((await h.chat(teamKey.body.key)).status).toBe(403);
    await json("/customer/new", { user_id: "bad-customer", blocked: true });
    // An unknown key: the last character changed (a key can end in "x" already, 1 time in 64).
    const raw: string = teamKey.body.key;
    expect((await h.chat(raw.slice(0, -1) + (raw.endsWith("x") ? "y" : "x"))).status).toBe(401);
    const plain = await json("/key/generate", {});
    expect((await h.chat(plain.body.key, { user: "bad-customer" })).status).toBe(403);
  });

  test("regenerating a key retires the old secret", async () => {
    const key = await json("/key/generate", {});
    const fresh = await json("/key/regenerate", { key: key.body.key });
    expect(fresh.body.key).not.toBe(key.body.key);
    expect((await h.chat(key.body.key)).status).toBe(401);
    expect((await h.chat(fresh.body.key)).status).toBe(200);
  });

  test("/key/update fields sent with a regenerate are applied to the key, as LiteLLM does; a bad one changes nothing", async () => {
    const key = await json("/key/generate", { key_alias: "regen-before", max_budget: 1 });
    const refused = await json("/key/regenerate", { key: key.body.key, max_budget: -1 });
    expect(refused.status).toBe(400);
    expect((await h.chat(key.body.key)).status).toBe(200);
    const fresh = await json("/key/regenerate", { key: key.body.key, max_budget: 100, models: ["gpt-4o"], key_alias: "regen-after", spend: 0 });
    expect(fresh.status).toBe(200);
    expect(fresh.body).toMatchObject({ key_alias: "regen-after", max_budget: 100, models: ["gpt-4o"], spend: 0 });
    expect((await h.chat(fresh.body.key)).status).toBe(401);
    expect((await h.chat(fresh.body.key, {}, "gpt-4o")).status).toBe(200);
    const moved = await json(`/key/${fresh.body.key}/regenerate`, { rpm_limit: 7 });
    expect(moved.body).toMatchObject({ key_alias: "regen-after", rpm_limit: 7 });
  });

  test("a regenerated key keeps its spend, also spend settled before and written after the change", async () => {
    const key = await json("/key/generate", {});
    expect((await h.chat(key.body.key)).status).toBe(200);
    await h.flush();
    const once = (await json(`/key/info?key=${key.body.key}`)).body.info.spend;
    expect(once).toBeGreaterThan(0);
    // A stream under the old token, in flight while the key changes: it settles after the change.
    const streaming = await h.chat(key.body.key, { stream: true }, "slow");
    expect(streaming.status).toBe(200);
    const fresh = await json("/key/regenerate", { key: key.body.key });
    expect(fresh.status).toBe(200);
    const streamed = await streaming.text();
    expect(streamed).toContain("[DONE]");
    await h.flush();
    const info = (await json(`/key/info?key=${fresh.body.key}`)).body.info;
    const slow = info.model_spend.slow;
    expect(slow).toBeGreaterThan(0);
    expect(info.spend).toBeCloseTo(once + slow, 12);
    expect(info.model_spend.mock).toBeCloseTo(once, 12);
    // Twice over, and spend under the first token still finds the key.
    expect((await h.chat(fresh.body.key)).status).toBe(200);
    const third = await json("/key/regenerate", { key: fresh.body.key });
    await h.flush();
    const after = (await json(`/key/info?key=${third.body.key}`)).body.info;
    expect(after.spend).toBeCloseTo(2 * once + slow, 12);
    expect(after.model_spend.mock).toBeCloseTo(2 * once, 12);
    expect((await json("/key/generate", { key: "sk-1234" })).body.error.message).toContain("master key");
    expect((await json("/key/regenerate", { key: third.body.key, new_key: "sk-1234" })).status).toBe(400);
  });

  test("a key regenerated right after its budget ran out stays refused under its new secret", async () => {
    const key = await json("/key/generate", { max_budget: 0.00003 });
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) statuses.push((await h.chat(key.body.key)).status);
    expect(statuses.at(-1)).toBe(400);
    // Nothing flushed yet: the spend is only in memory when the key changes.
    const fresh = await json("/key/regenerate", { key: key.body.key });
    expect(fresh.body.spend).toBeGreaterThanOrEqual(0.00003);
    expect((await h.chat(fresh.body.key)).status).toBe(400);
  });

  test("LiteLLM's other spellings: the key in the path to regenerate, /end_user/* for customers, spend logs by request", async () => {
    const key = await json("/key/generate", {});
    const moved = await json(`/key/${key.body.key}/regenerate`, { new_key: "sk-path-form-new-key" });
    expect(moved.status).toBe(200);
    expect(moved.body.key).toBe("sk-path-form-new-key");
    expect((await h.chat(key.body.key)).status).toBe(401);
    const answered = await h.chat("sk-path-form-new-key");
    expect(answered.status).toBe(200);
    expect((await json("/key/not-a-route")).status).toBe(404);
    expect((await json("/end_user/new", { user_id: "old-prefix", max_budget: 3 })).status).toBe(200);
    expect((await json("/end_user/info?end_user_id=old-prefix")).body).toMatchObject({ user_id: "old-prefix", litellm_budget_table: { max_budget: 3 } });
    expect((await json("/customer/info?end_user_id=old-prefix")).status).toBe(200);
    await h.flush();
    const id = answered.headers.get("x-litellm-call-id");
    const logs = (await json(`/spend/logs?request_id=${id}`)).body;
    expect(logs.length).toBe(1);
    expect(logs[0]).toMatchObject({ request_id: id, startTime: logs[0].start_time, endTime: logs[0].end_time, user: logs[0].user_id });
    expect(logs[0]).toMatchObject({ call_type: "acompletion", model_group: "mock", model_id: logs[0].deployment, cache_hit: "False" });
    expect((await json("/spend/logs?request_id=none-such")).body).toEqual([]);
    expect((await json("/budget/info", { budgets: [] })).body.error.message).toBe("budgets: must be a non-empty array (got [])");
    const team = (await json("/team/new", { team_alias: "shapes" })).body;
    await json("/team/member_add", { team_id: team.team_id, member: { user_id: "first-member" } });
    const added = (await json("/team/member_add", { team_id: team.team_id, member: [{ user_id: "second-member" }] })).body;
    expect(added.updated_users.map((u: any) => u.user_id)).toEqual(["second-member"]);
    expect(added.updated_team_memberships.map((m: any) => m.user_id)).toEqual(["second-member"]);
    const user = (await json("/user/update", { user_id: "first-member", max_budget: 20 })).body;
    expect(user).toMatchObject({ user_id: "first-member", max_budget: 20, data: { user_id: "first-member", max_budget: 20 } });
    const updated = (await json("/team/update", { team_id: team.team_id, max_budget: 20 })).body;
    expect(updated).toMatchObject({ team_id: team.team_id, max_budget: 20, data: { team_id: team.team_id, max_budget: 20 } });
    expect((await json("/customer/block", { user_ids: ["never-seen-yet"] })).body).toEqual({ blocked_users: ["never-seen-yet"] });
    expect((await h.chat("sk-1234", { user: "never-seen-yet" })).status).toBe(403);
  });

  test("team members: statuses as LiteLLM answers them, and members named by user_email", async () => {
    const team = (await json("/team/new", { team_alias: "member-statuses" })).body;
    expect(await json("/team/member_add", { team_id: "no-such-team", member: { user_id: "x" } })).toMatchObject({ status: 404, body: { error: { type: "not_found_error" } } });
    await json("/user/new", { user_id: "mem-a", user_email: "mem-a@example.com", auto_create_key: false });
    expect((await json("/team/member_add", { team_id: team.team_id, member: { user_id: "mem-a" }, max_budget_in_team: 3 })).status).toBe(200);
    for (const member of [{ user_id: "mem-a" }, { user_email: "mem-a@example.com" }, [{ user_id: "mem-new" }, { user_id: "mem-a", role: "admin" }]]) {
      const again = await json("/team/member_add", { team_id: team.team_id, member, max_budget_in_team: 9 });
      expect(again.status).toBe(400);
      expect(again.body.error.message).toContain("User=mem-a already in team");
    }
    // Nothing of the refused calls was written: not the new member, not the role, not the budget.
    const info = (await json(`/team/info?team_id=${team.team_id}`)).body;
    expect(info.team_info.members_with_roles).toEqual([{ role: "user", user_id: "mem-a" }]);
    expect(info.team_memberships[0].litellm_budget_table.max_budget).toBe(3);
    const byEmail = await json("/team/member_update", { team_id: team.team_id, user_email: "mem-a@example.com", max_budget_in_team: 4 });
    expect(byEmail.status).toBe(200);
    expect(byEmail.body).toMatchObject({ user_id: "mem-a", max_budget_in_team: 4 });
    for (const [path, body, message] of [
      ["/team/member_update", { team_id: "no-such-team", user_id: "mem-a" }, "Team id=no-such-team does not exist in db"],
      ["/team/member_update", { team_id: team.team_id, user_id: "stranger" }, "User stranger not found in team"],
      ["/team/member_delete", { team_id: "no-such-team", user_id: "mem-a" }, "Team id=no-such-team does not exist in db"],
      ["/team/member_delete", { team_id: team.team_id, user_email: "nobody@example.com" }, "User nobody@example.com not found in team"],
    ] as const) {
      const refused = await json(path, body);
      expect(`${path} ${refused.status} ${refused.body.error.message}`).toContain(`${path} 400 ${message}`);
    }
    for (const role of ["", "superuser-xyz"]) {
      const refused = await json("/team/member_update", { team_id: team.team_id, user_id: "mem-a", role });
      expect(refused.body.error.message).toBe(`role: must be "admin" or "user" (or null) (got ${JSON.stringify(role)})`);
    }
    expect((await json("/team/member_update", { team_id: team.team_id, user_id: "mem-a", role: "admin" })).status).toBe(200);
    expect((await json(`/team/info?team_id=${team.team_id}`)).body.team_info.members_with_roles).toEqual([{ role: "admin", user_id: "mem-a" }]);
    expect((await json("/team/member_delete", { team_id: team.team_id, user_email: "mem-a@example.com" })).status).toBe(200);
    expect((await json(`/team/info?team_id=${team.team_id}`)).body.team_info.members_with_roles).toEqual([]);
  });

  test("a budget's new duration moves the reset of the customers, members and keys it sets the period of", async () => {
    const created = (await json("/budget/new", { budget_id: "moving", max_budget: 1, budget_duration: "1d" })).body;
    await json("/customer/new", { user_id: "moving-c", budget_id: "moving" });
    await json("/team/new", { team_id: "moving-t" });
    const key = (await json("/key/generate", { budget_id: "moving" })).body;
    const own = (await json("/key/generate", { budget_id: "moving", budget_duration: "1h" })).body;
    const updated = (await json("/budget/update", { budget_id: "moving", budget_duration: "30s" })).body;
    const reset = updated.budget_reset_at;
    expect(Date.parse(created.budget_reset_at) - Date.parse(reset)).toBeGreaterThan(86_000_000);
    expect((await json("/customer/info?end_user_id=moving-c")).body.budget_reset_at).toBe(reset);
    expect((await json(`/key/info?key=${key.key}`)).body.info.budget_reset_at).toBe(reset);
    // A key with a duration of its own keeps its period.
    expect((await json(`/key/info?key=${own.key}`)).body.info.budget_reset_at).toBe(own.budget_reset_at);
  });

  test("a member's budget starts from nothing when added again; limits are kept for members by e-mail; own budgets go with what owns them", async () => {
    const budgets = async () => ((await json("/budget/list")).body as any[]).map((b) => b.budget_id as string);
    const membershipOf = async (teamId: string) => (await json(`/team/info?team_id=${teamId}`)).body.team_memberships[0];
    await json("/team/new", { team_id: "fresh-t" });
    await json("/team/member_add", { team_id: "fresh-t", member: { user_id: "fresh-u" }, max_budget_in_team: 0.000001 });
    expect(await budgets()).toContain("team-member:fresh-t:fresh-u");
    // Deleted with the team; the team and member made again carry only what is sent now.
    await json("/team/delete", { team_ids: ["fresh-t"] });
    expect(await budgets()).not.toContain("team-member:fresh-t:fresh-u");
    await json("/team/new", { team_id: "fresh-t" });
    await json("/team/member_add", { team_id: "fresh-t", member: { user_id: "fresh-u" }, tpm_limit: 1000 });
    expect((await membershipOf("fresh-t")).litellm_budget_table).toMatchObject({ max_budget: null, tpm_limit: 1000, rpm_limit: null });
    await json("/team/member_delete", { team_id: "fresh-t", user_id: "fresh-u" });
    expect(await budgets()).not.toContain("team-member:fresh-t:fresh-u");
    await json("/team/member_add", { team_id: "fresh-t", member: { user_id: "fresh-u" } });
    expect((await membershipOf("fresh-t")).budget_id).toBeNull();

    // A member given by e-mail (of any case) gets the limits sent, max_parallel_requests alone too.
    await json("/user/new", { user_id: "fresh-mail", user_email: "Fresh@Example.com", auto_create_key: false });
    await json("/team/new", { team_id: "fresh-mail-t" });
    const byMail = await json("/team/member_add", { team_id: "fresh-mail-t", member: { user_email: "fresh@example.com" }, rpm_limit: 5, max_parallel_requests: 1 });
    expect(byMail.body.updated_team_memberships).toMatchObject([{ user_id: "fresh-mail", litellm_budget_table: { rpm_limit: 5, max_parallel_requests: 1 } }]);
    expect((await json("/team/member_add", { team_id: "fresh-mail-t", member: { user_email: "FRESH@example.com" } })).status).toBe(400);
    await json("/user/delete", { user_ids: ["fresh-mail"] });
    expect(await budgets()).not.toContain("team-member:fresh-mail-t:fresh-mail");

    // Those ids are litegate's own; a customer's inline budget goes with the customer.
    expect((await json("/budget/new", { budget_id: "team-member:x:y", max_budget: 1 })).status).toBe(400);
    expect((await json("/budget/new", { budget_id: "customer:c:shared", max_budget: 1 })).status).toBe(400);
    const customer = (await json("/customer/new", { user_id: "fresh-c", max_budget: 2 })).body;
    expect(await budgets()).toContain(customer.budget_id);
    await json("/customer/delete", { user_ids: ["fresh-c"] });
    expect(await budgets()).not.toContain(customer.budget_id);
  });

  test("a team's member budget (team_member_budget) binds every member without their own, each on their own spend", async () => {
    const chat = (key: string) => json("/v1/chat/completions", { model: "mock", messages: [{ role: "user", content: "hi" }] }, key);
    await json("/team/new", { team_id: "tmb", team_member_budget: 0.0000001, team_member_rpm_limit: 50, members_with_roles: [{ role: "user", user_id: "tmb-1" }] });
    await json("/team/member_add", { team_id: "tmb", member: { user_id: "tmb-2" } });
    await json("/team/member_add", { team_id: "tmb", member: { user_id: "tmb-3" }, max_budget_in_team: 5 });
    const info = (await json("/team/info?team_id=tmb")).body;
    expect(info.team_info.metadata.team_member_budget_id).toBe("team-members:tmb");
    expect(info.team_info.team_member_budget_table).toMatchObject({ budget_id: "team-members:tmb", max_budget: 0.0000001, rpm_limit: 50 });
    const budgetOf = Object.fromEntries(info.team_memberships.map((m: any) => [m.user_id, m.budget_id]));
    expect(budgetOf).toEqual({ "tmb-1": "team-members:tmb", "tmb-2": "team-members:tmb", "tmb-3": "team-member:tmb:tmb-3" });

    const keys: Record<string, string> = {};
    for (const user of ["tmb-1", "tmb-2", "tmb-3"]) keys[user] = (await json("/key/generate", { team_id: "tmb", user_id: user })).body.key;
    // Each member's own first request passes (its estimate need not fit); the next is over that member's budget.
    for (const user of ["tmb-1", "tmb-2"]) {
      expect((await chat(keys[user]!)).status).toBe(200);
      const refused = await chat(keys[user]!);
      expect(refused.status).toBe(400);
      expect(refused.body.error.message).toContain(`User=${user} in Team=tmb`);
    }
    for (let i = 0; i < 3; i++) expect((await chat(keys["tmb-3"]!)).status).toBe(200);

    // Raising the team's member budget lifts every member on it; a member's own change keeps the rest.
    await json("/team/update", { team_id: "tmb", team_member_budget: 1 });
    expect((await chat(keys["tmb-1"]!)).status).toBe(200);
    const updated = await json("/team/member_update", { team_id: "tmb", user_id: "tmb-2", rpm_limit: 7 });
    expect(updated.body.litellm_budget_table).toMatchObject({ max_budget: 1, rpm_limit: 7 });
    expect((await chat(keys["tmb-2"]!)).status).toBe(200);

    // Those ids are litegate's; the budget goes with the team.
    expect((await json("/budget/new", { budget_id: "team-members:other", max_budget: 1 })).status).toBe(400);
    await json("/team/delete", { team_ids: ["tmb"] });
    const left = ((await json("/budget/list")).body as any[]).map((b) => b.budget_id as string);
    expect(left.filter((id) => id.includes("tmb"))).toEqual([]);
  });

  test("a member's budget_duration gives the member periods", async () => {
    await json("/team/new", { team_id: "tmd", members_with_roles: [{ role: "user", user_id: "tmd-1" }] });
    const updated = await json("/team/member_update", { team_id: "tmd", user_id: "tmd-1", max_budget_in_team: 2, budget_duration: "1d" });
    expect(updated.body.litellm_budget_table).toMatchObject({ max_budget: 2, budget_duration: "1d" });
    const membership = (await json("/team/info?team_id=tmd")).body.team_memberships[0];
    expect(new Date(membership.budget_reset_at).getTime() - Date.now()).toBeGreaterThan(23 * 3600_000);
    expect((await json("/team/member_update", { team_id: "tmd", user_id: "tmd-1", budget_duration: "soon" })).status).toBe(400);
  });

  test("LiteLLM's other spellings: nulls for optional fields, \"\" and \"None\" for none, 1hr, model_max_budget as max_budget", async () => {
    const key = await json("/key/generate", { key: null, models: null, spend: null, max_budget: "", budget_duration: "None" });
    expect(key.status).toBe(200);
    expect(key.body).toMatchObject({ models: [], max_budget: null, budget_duration: null, spend: 0 });
    const hourly = await json("/key/generate", { budget_duration: "1hr", model_max_budget: { mock: { max_budget: 0.5, budget_duration: "1d" } } });
    expect(hourly.status).toBe(200);
    expect(new Date(hourly.body.budget_reset_at).getTime() - h.clock.now()).toBe(3_600_000);
    expect(hourly.body.model_max_budget).toEqual({ mock: { budget_limit: 0.5, time_period: "1d" } });
    for (const [path, body] of [["/user/new", { user_id: null, user_role: null, teams: null, models: null }], ["/team/new", { team_id: null }],
      ["/budget/new", { budget_id: null, max_budget: "" }], ["/customer/new", { user_id: "spelled-c", spend: null }],
      ["/team/new", { team_id: "spelled-t", team_member_budget: "", team_member_budget_duration: "" }]] as const) {
      expect(`${path} ${(await json(path, body)).status}`).toBe(`${path} 200`);
    }
    // A team's member budget fields read "" as none, as its own do.
    const members = (await json("/team/info?team_id=spelled-t")).body.team_info.team_member_budget_table;
    expect(members).toMatchObject({ max_budget: null, budget_duration: null });
  });

  test("LiteLLM fields that would change what is allowed, which litegate does not implement, are refused unless empty", async () => {
    for (const [path, body, field] of [
      ["/key/generate", { key_type: "read_only" }, "key_type"], ["/key/generate", { allowed_routes: ["/key/info"] }, "allowed_routes"],
      ["/key/generate", { enforced_params: ["user"] }, "enforced_params"], ["/key/generate", { aliases: { "my-model": "mock" } }, "aliases"],
      ["/key/generate", { guardrails: ["pii"] }, "guardrails"], ["/key/generate", { temp_budget_increase: 5 }, "temp_budget_increase"],
      ["/key/generate", { rpm_limit: 10, rpm_limit_type: "guaranteed_throughput" }, "rpm_limit_type"], ["/key/generate", { tpm_limit_type: "dynamic" }, "tpm_limit_type"],
      ["/key/generate", { object_permission: { models: ["mock"] } }, "object_permission"], ["/key/generate", { object_permission: { mcp_servers: ["s"], vector_stores: null, mcp_tool_search_enabled: true } }, "object_permission"],
      ["/key/generate", { allowed_passthrough_routes: ["/anthropic"] }, "allowed_passthrough_routes"],
      ["/key/generate", { allowed_vector_store_indexes: [{ index_name: "i", index_permissions: ["read"] }] }, "allowed_vector_store_indexes"],
      ["/key/generate", { allowed_cache_controls: ["no-cache"] }, "allowed_cache_controls"], ["/key/generate", { config: { model_list: [] } }, "config"],
      ["/key/generate", { organization_id: "org-1" }, "organization_id"], ["/key/generate", { project_id: "p-1" }, "project_id"], ["/key/generate", { agent_id: "a-1" }, "agent_id"],
      ["/key/generate", { prompts: ["prompt-1"] }, "prompts"], ["/key/generate", { policies: ["policy-1"] }, "policies"],
      ["/key/generate", { tpd_limit: 1000 }, "tpd_limit"], ["/key/generate", { tag_rpm_limit: { prod: 5 } }, "tag_rpm_limit"],
      ["/key/generate", { end_user_budget_id: "free-tier" }, "end_user_budget_id"], ["/key/generate", { budget_fallbacks: { mock: ["other"] } }, "budget_fallbacks"],
      ["/key/generate", { access_group_ids: ["g"] }, "access_group_ids"], ["/key/generate", { router_settings: { num_retries: 3 } }, "router_settings"],
      ["/key/generate", { throttle_on_budget_exceeded: true }, "throttle_on_budget_exceeded"], ["/key/generate", { enable_prompt_caching: true }, "enable_prompt_caching"],
      ["/key/generate", { auto_rotate: true, rotation_interval: "30d" }, "auto_rotate"],
      ["/key/update", { key: "sk-unknown-key", rpm_limit_type: "dynamic" }, "rpm_limit_type"], ["/key/update", { key: "sk-unknown-key", allowed_cache_controls: ["no-store"] }, "allowed_cache_controls"],
      ["/team/new", { model_aliases: { a: "mock" } }, "model_aliases"],
      ["/team/new", { team_id: "dynamic-t", rpm_limit_type: "dynamic" }, "rpm_limit_type"],
      ["/team/new", { team_id: "org-t", organization_id: "org-1" }, "organization_id"],
      ["/team/update", { team_id: "t", object_permission: { models: ["mock"] } }, "object_permission"],
      ["/team/update", { team_id: "t", router_settings: { num_retries: 3 } }, "router_settings"],
      // A team's budget windows, a user's own per-model limits: LiteLLM holds every key of theirs to them.
      ["/team/new", { team_id: "windows-t", budget_limits: [{ max_budget: 1, budget_duration: "1d" }] }, "budget_limits"],
      ["/user/update", { user_id: "u", model_tpm_limit: { mock: 10 } }, "model_tpm_limit"],
      // /user/new gives these to the key it makes; without one, nothing would hold them.
      ["/user/new", { user_id: "keyless-u", auto_create_key: false, model_rpm_limit: { mock: 1 } }, "model_rpm_limit"],
      ["/user/new", { user_id: "keyless-u", auto_create_key: false, budget_id: "some-budget" }, "budget_id"],
      ["/customer/new", { user_id: "region-c", allowed_model_region: "eu" }, "allowed_model_region"],
      ["/customer/new", { user_id: "default-c", default_model: "mock" }, "default_model"],
    ] as const) {
      const refused = await json(path, body);
      expect(`${path} ${refused.status} ${refused.body.error?.param}`).toBe(`${path} 400 ${field}`);
      expect(refused.body.error.message).toContain("litegate does not implement");
    }
    // Nothing was made by the refused calls; the empty spellings LiteLLM's UI sends are taken.
    expect((await json("/customer/info?end_user_id=region-c")).status).toBe(404);
    for (const made of ["/team/info?team_id=windows-t", "/user/info?user_id=keyless-u"]) expect(`${made} ${(await json(made)).status}`).toBe(`${made} 404`);
    // /user/new's per-model budget is the user's (held across all its keys, as its max_budget is), with a key or without.
    const keyed = await json("/user/new", { user_id: "keyed-u", model_max_budget: { mock: { budget_limit: 1, time_period: "1d" } } });
    expect(keyed.status).toBe(200);
    expect(keyed.body.model_max_budget).toEqual({ mock: { budget_limit: 1, time_period: "1d" } });
    expect((await json(`/key/info?key=${keyed.body.key}`)).body.info.model_max_budget).toEqual({});
    expect((await json("/user/new", { user_id: "keyless-mmb", auto_create_key: false, model_max_budget: { mock: { max_budget: 1, budget_duration: "1d" } } })).body.model_max_budget)
      .toEqual({ mock: { budget_limit: 1, time_period: "1d" } });
    expect((await json("/user/new", { user_id: "keyless-ok", auto_create_key: false, model_max_budget: {}, budget_id: null })).status).toBe(200);
    expect((await json("/key/generate", { key_type: "default", allowed_routes: [], aliases: {}, guardrails: null, permissions: {} })).status).toBe(200);
    // What LiteLLM's UI sends when these are left alone, and the labels litegate takes (tags count in spend reports only).
    const unset = {
      rpm_limit_type: null, tpm_limit_type: "best_effort_throughput", object_permission: { models: [], mcp_servers: null, mcp_tool_permissions: {}, mcp_tool_search_enabled: false },
      allowed_passthrough_routes: null, allowed_vector_store_indexes: [], allowed_cache_controls: [], config: {}, organization_id: "", project_id: null, agent_id: null,
      prompts: [], policies: null, tpd_limit: null, tag_rpm_limit: {}, end_user_budget_id: null, budget_fallbacks: null, access_group_ids: [], router_settings: {},
      throttle_on_budget_exceeded: false, enable_prompt_caching: null, auto_rotate: false, tags: ["prod"], send_invite_email: false,
    };
    // A number is not read as an empty mapping (the framework would reshape it into one).
    for (const field of ["tag_rpm_limit", "budget_fallbacks", "object_permission", "router_settings"]) {
      expect(`${field} ${(await json("/key/generate", { [field]: 5 })).status}`).toBe(`${field} 400`);
      expect(`${field} ${(await json("/key/generate", { object_permission: { [field]: 1 } })).status}`).toBe(`${field} 400`);
    }
    const taken = await json("/key/generate", unset);
    expect(taken.status).toBe(200);
    expect((await json("/key/update", { key: taken.body.key, ...unset, max_budget: 2 })).status).toBe(200);
    // A team takes the same unset spellings of the fields it shares with keys.
    const teamUnset = { rpm_limit_type: null, tpm_limit_type: "best_effort_throughput", object_permission: unset.object_permission, router_settings: {}, organization_id: "" };
    expect((await json("/team/new", { team_id: "unset-t", ...teamUnset })).status).toBe(200);
    expect((await json("/team/update", { team_id: "unset-t", ...teamUnset, team_alias: "unset" })).status).toBe(200);
  });

  test("the master key's requests are logged under its hash", async () => {
    const response = await h.chat("sk-1234", { user: "logged-by-master" });
    expect(response.status).toBe(200);
    const id = response.headers.get("x-litellm-call-id");
    await h.flush();
    const [row] = await h.db.query("select api_key from spend_logs where request_id = $1", [id]);
    expect(row!.api_key).toBe(hashKey("sk-1234"));
  });

  test("x-litellm-key-spend counts each request, with a budget or without", async () => {
    for (const fields of [{}, { max_budget: 10 }]) {
      const key = await json("/key/generate", fields);
      const seen: number[] = [];
      for (let i = 0; i < 3; i++) {
        const response = await h.chat(key.body.key);
        seen.push(Number(response.headers.get("x-litellm-key-spend")));
      }
      expect(seen[0]).toBeGreaterThan(0);
      expect(seen[1]).toBeCloseTo(2 * seen[0]!, 12);
      expect(seen[2]).toBeCloseTo(3 * seen[0]!, 12);
    }
    // A key with a period and no budget: what was spent before the period turned is not the running period's.
    const periodic = (await json("/key/generate", { budget_duration: "1h" })).body.key;
    const first = Number((await h.chat(periodic)).headers.get("x-litellm-key-spend"));
    expect(Number((await h.chat(periodic)).headers.get("x-litellm-key-spend"))).toBeCloseTo(2 * first, 12);
    await h.flush();
    h.clock.advance(3_600_000 + 1000);
    expect(Number((await h.chat(periodic)).headers.get("x-litellm-key-spend"))).toBeCloseTo(first, 12);
  });
});

describe("model access", () => {
  test("access groups allow their models and nothing else; /v1/models lists only what the key may use", async () => {
    const user = await json("/user/new", { models: ["beta-models"], max_budget: 10 });
    expect((await h.chat(user.body.key, {}, "gpt-4o")).status).toBe(200);
    const denied = await h.chat(user.body.key, {}, "mock");
    expect(denied.status).toBe(401);
    const error = ((await denied.json()) as any).error;
    expect(error.type).toBe("key_model_access_denied");
    expect(error.message).toContain("beta-models");
    const models = await json("/v1/models", undefined, user.body.key);
    expect(models.body.data.map((m: any) => m.id)).toEqual(["gpt-4o"]);
    expect((await json("/v1/models/gpt-4o", undefined, user.body.key)).body).toMatchObject({ id: "gpt-4o", object: "model" });
    const hidden = await json("/v1/models/mock", undefined, user.body.key);
    expect(`${hidden.status} ${hidden.body.error.type}`).toBe("404 not_found_error");
    expect((await json("/models/no-such-model")).status).toBe(404);
    expect((await json("/v1/models/gpt-4o", undefined, null)).status).toBe(401);
  });

  test("team keys are bounded by the team's models", async () => {
    const team = await json("/team/new", { models: ["mock"] });
    const key = await json("/key/generate", { team_id: team.body.team_id });
    expect((await h.chat(key.body.key, {}, "mock")).status).toBe(200);
    const denied = await h.chat(key.body.key, {}, "gpt-4o");
    expect(((await denied.json()) as any).error.type).toBe("team_model_access_denied");
  });
});

describe("validation and integrity", () => {
  test("bad fields are 400 naming the field, and nothing is written", async () => {
    const before = (await h.db.query("select count(*)::int as n from keys"))[0]!.n;
    const cases: [string, unknown, string][] = [
      ["/key/generate", { max_budget: -1 }, "max_budget"],
      ["/key/generate", { max_budget: "lots" }, "max_budget"],
      ["/key/generate", { rpm_limit: 1.5 }, "rpm_limit"],
      ["/key/generate", { budget_duration: "10x" }, "budget_duration"],
      ["/key/generate", { duration: "forever" }, "duration"],
      ["/key/generate", { team_id: "no-such-team" }, "team_id"],
      ["/key/generate", { models: "gpt-4o" }, "models"],
      ["/key/generate", { key: "not-sk" }, "key"],
      ["/user/new", { user_role: "emperor" }, "user_role"],
    ];
    for (const [path, body, field] of cases) {
      const response = await json(path, body);
      expect(`${path} ${JSON.stringify(body)} → ${response.status}`).toBe(`${path} ${JSON.stringify(body)} → 400`);
      expect(response.body.error.message).toContain(field);
    }
    expect((await h.db.query("select count(*)::int as n from keys"))[0]!.n).toBe(before);
  });

  test("mappings must be objects; pages, sizes and limits are named when out of bounds; bodies have a size limit", async () => {
    const before = (await h.db.query("select count(*)::int as n from keys"))[0]!.n;
    for (const [path, body, field] of [
      ["/key/generate", { metadata: "str" }, "metadata"], ["/key/generate", { metadata: 5 }, "metadata"],
      ["/team/new", { metadata: [1, 2] }, "metadata"], ["/user/new", { metadata: "x" }, "metadata"],
      ["/key/generate", { model_rpm_limit: "gpt-4o" }, "model_rpm_limit"], ["/key/generate", '{"max_budget": 1e400}', "max_budget"],
    ] as const) {
      const response = await json(path, body);
      expect(`${path} ${response.status} ${response.body.error?.param}`).toBe(`${path} 400 ${field}`);
    }
    expect((await json("/key/generate", '{"max_budget": 1e400}')).body.error.message).toContain("(got Infinity)");
    expect((await h.db.query("select count(*)::int as n from keys"))[0]!.n).toBe(before);
    for (const [query, param] of [["/key/list?page=99999999999999999999", "page"], ["/key/list?size=0", "size"], ["/user/list?page_size=5000", "page_size"], ["/spend/logs?limit=0", "limit"]]) {
      const response = await json(query!);
      expect(`${query} ${response.status} ${response.body.error.param}`).toBe(`${query} 400 ${param}`);
    }
    const huge = JSON.stringify({ metadata: { text: "x".repeat(33 * 1024 * 1024) } });
    const tooLarge = await json("/key/generate", huge);
    expect(tooLarge.status).toBe(413);
    expect(tooLarge.body.error.type).toBe("request_too_large");
    expect((await h.db.query("select count(*)::int as n from keys"))[0]!.n).toBe(before);
  });

  test("/user/update finds the user by user_email when no user_id is sent", async () => {
    await json("/user/new", { user_id: "by-email", user_email: "Someone@Example.com" });
    const updated = await json("/user/update", { user_email: "someone@example.com", max_budget: 12 });
    expect(updated.body).toMatchObject({ user_id: "by-email", max_budget: 12 });
    expect((await json("/user/update", { user_email: "nobody@example.com", max_budget: 1 })).status).toBe(404);
    expect((await json("/user/update", { max_budget: 1 })).body.error.param).toBe("user_id");
  });

  test("/user/new with team_id joins the team as /team/member_add does", async () => {
    const missing = await json("/user/new", { user_id: "joiner", team_id: "no-such-team" });
    expect(missing.status).toBe(400);
    expect(missing.body.error.param).toBe("team_id");
    const team = await json("/team/new", { team_alias: "joined" });
    const user = await json("/user/new", { user_id: "joiner", team_id: team.body.team_id });
    expect(user.body.teams).toEqual([team.body.team_id]);
    const info = (await json(`/team/info?team_id=${team.body.team_id}`)).body;
    expect(info.team_info.members_with_roles).toEqual([{ role: "user", user_id: "joiner" }]);
    expect(info.team_memberships.map((m: any) => m.user_id)).toEqual(["joiner"]);
    const joiner = (await json("/user/info?user_id=joiner")).body;
    expect(joiner.user_info.teams).toEqual([team.body.team_id]);
    // As LiteLLM answers: whole teams (the team's own spend), and each key with its team's alias.
    expect(joiner.teams).toMatchObject([{ team_id: team.body.team_id, team_alias: "joined", spend: 0, members_with_roles: [{ user_id: "joiner" }], member_role: "user" }]);
    await json("/key/generate", { user_id: "joiner" });
    expect((await json("/user/info?user_id=joiner")).body.keys.map((k: any) => k.team_alias)).toEqual(["joined", null]);
  });

  test("/user/new joins teams given as LiteLLM's objects (role and budget in the team) or ids (then on the team's member budget)", async () => {
    await json("/team/new", { team_id: "obj-a" });
    await json("/team/new", { team_id: "obj-b", team_member_budget: 3 });
    const user = await json("/user/new", { user_id: "obj-u", auto_create_key: false, teams: [{ team_id: "obj-a", max_budget_in_team: 0.5, user_role: "admin" }, "obj-b"] });
    expect(user.status).toBe(200);
    const a = (await json("/team/info?team_id=obj-a")).body;
    expect(a.team_info.members_with_roles).toEqual([{ role: "admin", user_id: "obj-u" }]);
    expect(a.team_memberships[0]).toMatchObject({ role: "admin", budget_id: "team-member:obj-a:obj-u", litellm_budget_table: { max_budget: 0.5 } });
    expect((await json("/team/info?team_id=obj-b")).body.team_memberships[0]).toMatchObject({ budget_id: "team-members:obj-b", litellm_budget_table: { max_budget: 3 } });
    expect((await json("/user/new", { user_id: "obj-v", teams: [{ team_id: "obj-a", user_role: "owner" }] })).status).toBe(400);
  });

  test("/customer/update changes only the budget fields sent; a shared budget is copied, not changed", async () => {
    const created = (await json("/customer/new", { user_id: "partial", max_budget: 0.5, budget_duration: "1d", tpm_limit: 50 })).body;
    expect(created.budget_reset_at).not.toBeNull();
    const updated = (await json("/customer/update", { user_id: "partial", rpm_limit: 3 })).body;
    expect(updated.budget_id).toBe(created.budget_id);
    expect(updated.litellm_budget_table).toMatchObject({ max_budget: 0.5, budget_duration: "1d", tpm_limit: 50, rpm_limit: 3 });
    expect(updated.budget_reset_at).toBe(created.budget_reset_at);
    const cleared = (await json("/customer/update", { user_id: "partial", tpm_limit: null })).body;
    expect(cleared.litellm_budget_table).toMatchObject({ max_budget: 0.5, tpm_limit: null, rpm_limit: 3 });
    await json("/budget/new", { budget_id: "shared-tier", max_budget: 5, rpm_limit: 9, budget_duration: "7d" });
    const onShared = (await json("/customer/new", { user_id: "on-shared", budget_id: "shared-tier" })).body;
    h.clock.advance(1000);
    const own = (await json("/customer/update", { user_id: "on-shared", tpm_limit: 7 })).body;
    expect(own.budget_id).not.toBe("shared-tier");
    // A copy of the same budget keeps the customer's period.
    expect(own.budget_reset_at).toBe(onShared.budget_reset_at);
    expect(own.litellm_budget_table).toMatchObject({ max_budget: 5, rpm_limit: 9, tpm_limit: 7 });
    expect((await json("/budget/info", { budgets: ["shared-tier"] })).body[0]).toMatchObject({ max_budget: 5, rpm_limit: 9, tpm_limit: null });
    expect((await json("/key/info?key=")).body.error.param).toBe("key");
  });

  test("duplicates are refused", async () => {
    // A user id or e-mail (any case) taken is a 409, as LiteLLM answers; nothing else is written.
    await json("/user/new", { user_id: "dup-user", user_email: "Dup@Example.com" });
    const users = (await h.db.query("select count(*)::int as n from users"))[0]!.n;
    expect(await json("/user/new", { user_id: "dup-user" })).toMatchObject({ status: 409, body: { error: { message: "User with id dup-user already exists", param: "user_id" } } });
    expect(await json("/user/new", { user_id: "dup-user-2", user_email: "dup@example.COM" })).toMatchObject({ status: 409, body: { error: { message: "User with email Dup@Example.com already exists", param: "user_email" } } });
    expect((await h.db.query("select count(*)::int as n from users"))[0]!.n).toBe(users);
    await json("/team/new", { team_id: "dup-team" });
    expect((await json("/team/new", { team_id: "dup-team" })).status).toBe(400);
    await json("/key/generate", { key: "sk-custom-key-1" });
    expect((await json("/key/generate", { key: "sk-custom-key-1" })).status).toBe(409);
    await json("/key/generate", { key_alias: "dup-alias" });
    expect((await json("/key/generate", { key_alias: "dup-alias" })).status).toBe(400);
  });

  test("ids with SQL metacharacters are stored verbatim", async () => {
    const id = `x'); drop table keys; --"`;
    expect((await json("/user/new", { user_id: id })).status).toBe(200);
    expect((await json(`/user/info?user_id=${encodeURIComponent(id)}`)).body.user_id).toBe(id);
  });

  test("customer with both budget_id and an inline budget is refused; a referenced budget cannot be deleted", async () => {
    await json("/budget/new", { budget_id: "tier-1", max_budget: 1 });
    expect((await json("/customer/new", { user_id: "both", budget_id: "tier-1", max_budget: 2 })).status).toBe(400);
    expect((await json("/customer/new", { user_id: "c1", budget_id: "tier-1" })).status).toBe(200);
    expect((await json("/budget/delete", { id: "tier-1" })).status).toBe(400);
    await json("/customer/delete", { user_ids: ["c1"] });
    expect((await json("/budget/delete", { id: "tier-1" })).status).toBe(200);
  });

  test("deleting a user deletes its keys; deleting a team deletes its keys", async () => {
    const user = await json("/user/new", { user_id: "leaving" });
    await json("/user/delete", { user_ids: ["leaving"] });
    expect((await h.chat(user.body.key)).status).toBe(401);
    const team = await json("/team/new", {});
    const key = await json("/key/generate", { team_id: team.body.team_id });
    await json("/team/delete", { team_ids: [team.body.team_id] });
    expect((await h.chat(key.body.key)).status).toBe(401);
  });

  test("deletes are all or nothing: an unknown id is a 404 naming it, and the others stay", async () => {
    await json("/user/new", { user_id: "stays-1", auto_create_key: false });
    const team = (await json("/team/new", { team_alias: "stays" })).body;
    const key = (await json("/key/generate", { key_alias: "stays-key" })).body.key;
    await json("/customer/new", { user_id: "stays-c" });
    for (const [path, body, message] of [
      ["/customer/delete", { user_ids: ["stays-c", "ghost-c"] }, "End User Id(s)=ghost-c do not exist in db"],
      ["/user/delete", { user_ids: ["stays-1", "ghost-user"] }, "User not found, passed user_id=ghost-user"],
      ["/team/delete", { team_ids: [team.team_id, "ghost-team"] }, "Team not found, passed team_id=ghost-team"],
      ["/key/delete", { keys: [key, "sk-ghostkey1234"] }, "No keys found for sk-...1234"],
      ["/key/delete", { key_aliases: ["stays-key", "ghost-alias"] }, "No keys found for ghost-alias"],
    ] as const) {
      const refused = await json(path, body);
      expect(`${path} ${refused.status} ${refused.body.error?.message}`).toContain(`${path} 404 ${message}`);
    }
    expect((await json("/user/info?user_id=stays-1")).status).toBe(200);
    expect((await json("/customer/info?end_user_id=stays-c")).status).toBe(200);
    expect((await json(`/team/info?team_id=${team.team_id}`)).status).toBe(200);
    expect((await h.chat(key)).status).toBe(200);
    expect((await json("/key/delete", { key_aliases: ["stays-key"] })).body).toEqual({ deleted_keys: ["stays-key"] });
    expect((await json("/team/delete", { team_ids: [team.team_id] })).body).toEqual({ deleted_teams: [team.team_id] });
    expect((await json("/user/delete", { user_ids: ["stays-1"] })).body).toEqual({ deleted_users: ["stays-1"] });
  });

  test("/key/list refuses a filter it does not know (it would list every key), takes LiteLLM's, sorts, and takes True and 1 for return_full_object", async () => {
    for (const alias of ["list-a", "list-b"]) await json("/key/generate", { key_alias: alias, user_id: "lister" });
    const refused = await json("/key/list?owner=org-1");
    expect(refused.status).toBe(400);
    expect(refused.body.error.param).toBe("owner");
    // LiteLLM's own: no key is in an organization or deleted; a user's team keys with include_team_keys; an empty filter filters.
    expect((await json("/key/list?organization_id=org-1")).body.keys).toEqual([]);
    expect((await json("/key/list?status=deleted")).body.keys).toEqual([]);
    expect((await json("/key/list?user_id=")).body.keys).toEqual([]);
    await json("/team/new", { team_id: "list-team", members_with_roles: [{ role: "user", user_id: "lister" }] });
    await json("/key/generate", { key_alias: "list-team-key", team_id: "list-team" });
    const withTeam = await json("/key/list?user_id=lister&include_team_keys=true&expand=user&include_created_by_keys=true&status=active&return_full_object=true");
    expect(withTeam.body.keys.map((k: any) => k.key_alias).sort()).toEqual(["list-a", "list-b", "list-team-key"]);
    for (const flag of ["True", "1", "true"]) {
      const listed = await json(`/key/list?user_id=lister&return_full_object=${flag}`);
      // In the order they were made, unless both were made in the same millisecond (then by token).
      expect(listed.body.keys.map((k: any) => k.key_alias).sort()).toEqual(["list-a", "list-b"]);
      expect(listed.body.keys[0].token).toBeString();
    }
    const desc = await json("/key/list?user_id=lister&return_full_object=true&sort_by=key_alias&sort_order=desc");
    expect(desc.body.keys.map((k: any) => k.key_alias)).toEqual(["list-b", "list-a"]);
    const badSort = await json("/key/list?sort_by=token");
    expect(badSort.status).toBe(400);
    expect(badSort.body.error.message).toBe('sort_by: must be "created_at" or "spend" or "key_alias" or "expires" (got "token")');
  });

  test("LiteLLM's create and list fields: spend to start from, a key that never expires, a budget's reset time, list filters", async () => {
    const key = await json("/key/generate", { spend: 3, max_budget: 5, duration: "-1" });
    expect(key.body).toMatchObject({ spend: 3, expires: null });
    expect((await json("/key/update", { key: key.body.key, duration: "-1" })).body.expires).toBeNull();
    expect((await json("/key/generate", { duration: "-2" })).status).toBe(400);
    const user = await json("/user/new", { user_id: "filter-ann", user_email: "Ann.Filter@Example.com", spend: 4, teams: [], auto_create_key: false });
    expect(user.body.spend).toBe(4);
    expect((await json("/user/info?user_id=filter-ann")).body.user_info.spend).toBe(4);
    expect((await json("/customer/new", { user_id: "filter-cust", spend: 5 })).body.spend).toBe(5);
    const budget = await json("/budget/new", { budget_id: "reset-given", budget_duration: "30d", budget_reset_at: "2030-01-01T00:00:00Z" });
    expect(budget.body.budget_reset_at).toStartWith("2030-01-01T00:00:00");

    await json("/user/new", { user_id: "filter-bob", user_email: "bob@example.com", auto_create_key: false });
    const team = (await json("/team/new", { team_alias: "filters" })).body;
    await json("/team/member_add", { team_id: team.team_id, member: { user_id: "filter-bob" } });
    const ids = (path: string) => json(path).then((r) => r.body.users.map((u: any) => u.user_id).sort());
    expect(await ids("/user/list?user_ids=filter-ann,filter-bob")).toEqual(["filter-ann", "filter-bob"]);
    expect(await ids("/user/list?user_email=ann.filter")).toEqual(["filter-ann"]);
    expect(await ids(`/user/list?team=${team.team_id}`)).toEqual(["filter-bob"]);
    expect(await ids("/user/list?user_email=%25")).toEqual([]);
    const counted = (await json("/user/list?user_ids=filter-ann,filter-bob,nobody&page_size=1")).body;
    expect(counted).toMatchObject({ total: 2, total_pages: 2, page_size: 1 });
    const teamKey = (await json("/key/generate", { team_id: team.team_id, key_alias: "filters-key" })).body;
    const teams = (await json("/team/list?user_id=filter-bob")).body;
    expect(teams.map((t: any) => t.team_id)).toEqual([team.team_id]);
    // As LiteLLM lists them: each team with its keys and memberships.
    expect(teams[0].keys.map((k: any) => k.token)).toEqual([teamKey.token]);
    expect(teams[0].team_memberships).toMatchObject([{ user_id: "filter-bob", team_id: team.team_id, spend: 0 }]);
    const all = (await json("/team/list")).body.find((t: any) => t.team_id === team.team_id);
    expect(all.keys.map((k: any) => k.key_alias)).toEqual(["filters-key"]);
    const byHash = (await json(`/key/list?key_hash=${hashKey(key.body.key)}`)).body;
    expect(byHash).toMatchObject({ keys: [hashKey(key.body.key)], total_count: 1 });
    expect((await json(`/key/list?key_hash=${key.body.key}`)).body.keys).toEqual([hashKey(key.body.key)]);
  });

  test("the database holds no raw key anywhere", async () => {
    const created = await json("/key/generate", { key_alias: "secret-check" });
    const raw: string = created.body.key;
    const tables = await h.db.query("select table_name from information_schema.tables where table_schema = 'public'");
    for (const { table_name } of tables) {
      const [hit] = await h.db.query(`select count(*)::int as n from ${table_name} t where t::text like $1`, [`%${raw.slice(3)}%`]);
      expect(`${table_name}: ${hit!.n}`).toBe(`${table_name}: 0`);
    }
  });

  test("/spend/logs pages: page × limit rows, newest first, none repeated or skipped", async () => {
    const key = (await json("/key/generate", {})).body.key;
    for (let i = 0; i < 5; i++) await h.chat(key);
    await h.flush();
    const all = (await json(`/spend/logs?api_key=${key}`)).body.map((r: any) => r.request_id);
    expect(all).toHaveLength(5);
    const pages = [];
    for (const page of [1, 2, 3]) pages.push(...(await json(`/spend/logs?api_key=${key}&limit=2&page=${page}`)).body.map((r: any) => r.request_id));
    expect(pages).toEqual(all);
    expect((await json(`/spend/logs?api_key=${key}&limit=2&page=4`)).body).toEqual([]);
    expect((await json(`/spend/logs?api_key=${key}&page=0`)).status).toBe(400);
  });

  test("spend is reported on key, user, team, customer and budget info", async () => {
    const team = await json("/team/new", {});
    await json("/user/new", { user_id: "member-1", auto_create_key: false });
    await json("/team/member_add", { team_id: team.body.team_id, member: { user_id: "member-1", role: "user" }, max_budget_in_team: 5 });
    const key = await json("/key/generate", { team_id: team.body.team_id, user_id: "member-1" });
    expect((await h.chat(key.body.key, { user: "reporting-customer" })).status).toBe(200);
    await h.flush();
    const info = await json(`/team/info?team_id=${team.body.team_id}`);
    expect(info.body.team_info.spend).toBeGreaterThan(0);
    expect(info.body.team_memberships[0].spend).toBeGreaterThan(0);
    expect(info.body.team_memberships[0].litellm_budget_table.max_budget).toBe(5);
    expect((await json(`/key/info?key=${key.body.key}`)).body.info.spend).toBeGreaterThan(0);
    expect((await json("/customer/info?end_user_id=reporting-customer")).body.spend).toBeGreaterThan(0);
    const logs = await json(`/spend/logs?team_id=${team.body.team_id}`);
    expect(logs.body).toHaveLength(1);
    expect((await json(`/spend/logs?api_key=${key.body.key}`)).body).toHaveLength(1);
    expect((await json("/spend/logs?user_id=member-1")).body).toHaveLength(1);
    expect((await json("/spend/logs?end_user=reporting-customer")).body).toHaveLength(1);
    expect((await json("/spend/logs?end_user=reporting-customer&end_date=2000-01-01")).body).toHaveLength(0);
    // With both dates, spend per day as LiteLLM answers it (days without spend included), unless summarize=false.
    const day = String(logs.body[0].start_time).slice(0, 10);
    const before = new Date(Date.parse(day) - 86_400_000).toISOString().slice(0, 10);
    const daily = await json(`/spend/logs?team_id=${team.body.team_id}&start_date=${before}&end_date=${day}`);
    expect(daily.body).toEqual([
      { startTime: before, spend: 0, users: {}, models: {} },
      { startTime: day, spend: logs.body[0].spend, [logs.body[0].api_key]: logs.body[0].spend, users: { [logs.body[0].user_id]: logs.body[0].spend }, models: { [logs.body[0].model]: logs.body[0].spend } },
    ]);
    expect((await json(`/spend/logs?team_id=${team.body.team_id}&start_date=${before}&end_date=${day}&summarize=false`)).body).toHaveLength(1);
    expect((await json("/spend/logs?start_date=1990-01-01&end_date=2026-01-01")).status).toBe(400);
    expect((await json("/spend/logs?start_date=not-a-date")).status).toBe(400);
    expect((await json(`/spend/logs?start_date=${before}&end_date=${day}&summarize=maybe`)).body.error.param).toBe("summarize");
    expect((await json("/global/spend")).body.spend).toBeGreaterThan(0);
  });
});
});

describe("OpenAPI", () => {
  test("every admin route is documented with its tag in /openapi.json", async () => {
    const h = await inProcessGateway(MOCK_CONFIG);
    const spec = (await (await h.call("/openapi.json", undefined, null)).json()) as any;
    const documented = Object.keys(spec.paths);
    for (const [path] of ADMIN_ROUTES) {
      const bare = path.split("?")[0]!;
      if (bare === "/metrics") continue;
      expect(documented).toContain(bare);
    }
    expect(spec.paths["/key/generate"].post.tags).toEqual(["key management"]);
    expect(spec.paths["/key/generate"].post.requestBody).toBeDefined();
    expect(spec.paths["/v1/chat/completions"].post.tags).toEqual(["inference"]);
    await h.close();
  });
});

describe("pricing policy", () => {
  test("reject_unpriced_models refuses models without a price, with a clear error", async () => {
    const h = await inProcessGateway(`
model_list:
  - model_name: unpriced
    litellm_params: {model: mock/unpriced}
  - model_name: half-priced
    litellm_params: {model: mock/half, input_cost_per_token: 0.000001}
general_settings:
  master_key: sk-1234
  reject_unpriced_models: true
`);
    const response = await h.chat("sk-1234", {}, "unpriced");
    expect(response.status).toBe(400);
    expect(((await response.json()) as any).error.message).toContain("reject_unpriced_models");
    // Only an input price: chat (which has output) is refused, embeddings (which have none) are served.
    const half = await h.chat("sk-1234", {}, "half-priced");
    expect(half.status).toBe(400);
    expect(((await half.json()) as any).error.message).toBe("Model half-priced has no output_cost_per_token and general_settings.reject_unpriced_models is true");
    expect((await h.call("/v1/embeddings", { model: "half-priced", input: "hello" })).status).toBe(200);
    await h.close();
  });

  test("a very long header is refused cleanly", async () => {
    const h = await inProcessGateway(MOCK_CONFIG);
    const response = await h.chat(`sk-${"x".repeat(8000)}`);
    expect(response.status).toBe(401);
    expect(((await response.json()) as any).error.type).toBe("auth_error");
    await h.close();
  });
});
