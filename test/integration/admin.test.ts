import { afterAll, beforeAll, describe, expect, test } from "bun:test";
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
      ["/team/member_add", { team_id: "no-such-team", member: { user_id: "x" } }, "team_id"],
    ];
    for (const [path, body, field] of cases) {
      const response = await json(path, body);
      expect(`${path} ${JSON.stringify(body)} → ${response.status}`).toBe(`${path} ${JSON.stringify(body)} → 400`);
      expect(response.body.error.message).toContain(field);
    }
    expect((await h.db.query("select count(*)::int as n from keys"))[0]!.n).toBe(before);
  });

  test("duplicates are refused", async () => {
    await json("/user/new", { user_id: "dup-user" });
    expect((await json("/user/new", { user_id: "dup-user" })).status).toBe(400);
    await json("/team/new", { team_id: "dup-team" });
    expect((await json("/team/new", { team_id: "dup-team" })).status).toBe(400);
    await json("/key/generate", { key: "sk-custom-key-1" });
    expect((await json("/key/generate", { key: "sk-custom-key-1" })).status).toBe(400);
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

  test("the database holds no raw key anywhere", async () => {
    const created = await json("/key/generate", { key_alias: "secret-check" });
    const raw: string = created.body.key;
    const tables = await h.db.query("select table_name from information_schema.tables where table_schema = 'public'");
    for (const { table_name } of tables) {
      const [hit] = await h.db.query(`select count(*)::int as n from ${table_name} t where t::text like $1`, [`%${raw.slice(3)}%`]);
      expect(`${table_name}: ${hit!.n}`).toBe(`${table_name}: 0`);
    }
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
    expect((await json("/spend/logs?start_date=not-a-date")).status).toBe(400);
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
general_settings:
  master_key: sk-1234
  reject_unpriced_models: true
`);
    const response = await h.chat("sk-1234", {}, "unpriced");
    expect(response.status).toBe(400);
    expect(((await response.json()) as any).error.message).toContain("reject_unpriced_models");
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
