import { beforeAll, describe, expect, test } from "bun:test";
import { type Harness, gatewayFor } from "../helpers/gateway";

for (const kind of ["pglite", "postgres"] as const) describe(`admin input on ${kind}`, () => {
  const gateway = gatewayFor(kind);
  const json = gateway.json;
  let h: Harness;
  beforeAll(() => {
    h = gateway.h;
  });

  test("a malformed new_key says what a raw key must be, as /key/generate's key does", async () => {
    const generated = await json("/key/generate", { key: "bad" });
    expect(generated.status).toBe(400);
    const key = (await json("/key/generate", {})).body.key;
    const expected = generated.body.error.message.replace(/^key:/, "new_key:");
    expect(expected).toContain("must be sk- followed by");
    for (const path of ["/key/regenerate", `/key/${key}/regenerate`]) {
      const refused = await json(path, { key, new_key: "bad" });
      expect(refused).toMatchObject({ status: 400, body: { error: { message: expected, param: "new_key" } } });
    }
    expect((await h.chat(key)).status).toBe(200);
  });

  test("one user twice in one /team/member_add (or /team/new) is a 400 naming the second, and nothing is written", async () => {
    const team = `twice-${kind}`;
    await json("/team/new", { team_id: team });
    const twice = await json("/team/member_add", { team_id: team, member: [{ role: "user", user_id: `mD-${kind}` }, { role: "admin", user_id: `mD-${kind}` }] });
    expect(twice).toMatchObject({ status: 400, body: { error: { param: "member[1].user_id" } } });
    expect(twice.body.error.message).toStartWith("member[1].user_id: ");
    const byMail = await json("/team/member_add", { team_id: team, member: [{ user_email: "Twice@Example.com" }, { user_id: `other-${kind}` }, { user_email: "twice@example.com" }] });
    expect(byMail).toMatchObject({ status: 400, body: { error: { param: "member[2].user_email" } } });
    const info = (await json(`/team/info?team_id=${team}`)).body;
    expect(info.team_info.members_with_roles).toEqual([]);
    expect(info.team_memberships).toEqual([]);
    expect((await json(`/user/info?user_id=mD-${kind}`)).status).toBe(404);
    const made = await json("/team/new", { team_id: `twice-new-${kind}`, members_with_roles: [{ user_id: `nD-${kind}` }, { role: "admin", user_id: `nD-${kind}` }] });
    expect(made).toMatchObject({ status: 400, body: { error: { param: "members_with_roles[1].user_id" } } });
    expect((await json(`/team/info?team_id=twice-new-${kind}`)).status).toBe(404);
  });

  test("a number past what JSON holds (1e400) inside metadata or a model's budget is a 400 naming its path, not stored as null", async () => {
    const cases: Array<[string, string, string]> = [
      ["/key/generate", '{"metadata":{"x":1e400}}', "metadata.x"],
      ["/key/generate", '{"metadata":{"x":[1,{"y":-1e400}]}}', "metadata.x[1].y"],
      ["/key/generate", '{"model_max_budget":{"mock":{"note":1e999}}}', "model_max_budget.mock.note"],
      ["/team/new", `{"team_id":"inf-${kind}","metadata":{"x":1e400}}`, "metadata.x"],
      ["/user/new", `{"user_id":"inf-${kind}","metadata":{"x":1e400}}`, "metadata.x"],
      ["/customer/new", `{"user_id":"inf-${kind}","metadata":{"x":1e400}}`, "metadata.x"],
      ["/budget/new", `{"budget_id":"inf-${kind}","model_max_budget":{"mock":{"x":1e400}}}`, "model_max_budget.mock.x"],
      ["/team/new", `{"team_id":"inf-${kind}","model_max_budget":{"mock":{"budget_limit":1e400}}}`, "model_max_budget.mock.budget_limit"],
      ["/user/new", `{"user_id":"inf-${kind}","auto_create_key":false,"model_max_budget":{"mock":{"x":-1e400}}}`, "model_max_budget.mock.x"],
    ];
    for (const [path, body, param] of cases) {
      const refused = await json(path, body);
      expect(refused).toMatchObject({ status: 400, body: { error: { param } } });
      expect(refused.body.error.message).toStartWith(`${param}: must be a number within`);
    }
    expect((await json("/team/info?team_id=inf-" + kind)).status).toBe(404);
    expect((await json("/key/generate", '{"metadata":{"x":1e300,"y":-2.5e-400}}')).body.metadata).toEqual({ x: 1e300, y: 0 });
  });

  test("a GET route's unknown query parameter is a 400 naming it, not a filter ignored (all spend logs, every team)", async () => {
    const key = (await json("/key/generate", {})).body.key;
    expect((await h.chat(key)).status).toBe(200);
    await h.flush();
    await json("/team/new", { team_id: `listed-${kind}`, team_alias: `alias-${kind}` });
    await json("/customer/new", { user_id: `listed-${kind}` });
    const unknown: Array<[string, string]> = [
      ["/spend/logs?customer_id=x", "customer_id"], ["/team/list?team_alias=zzz", "team_alias"], ["/team/info?team_id=listed-" + kind + "&x=1", "x"],
      [`/key/info?key=${key}&team_id=t`, "team_id"], ["/user/list?user_role=proxy_admin", "user_role"], ["/user/info?user_id=u&key=k", "key"],
      ["/customer/list?user_id=x", "user_id"], [`/customer/info?end_user_id=listed-${kind}&budget_id=b`, "budget_id"], ["/end_user/list?x=1", "x"],
      ["/budget/list?budget_id=b", "budget_id"], ["/global/spend?team_id=t", "team_id"], ["/health?models=m", "models"], ["/key/list?team=t", "team"],
    ];
    for (const [path, param] of unknown) {
      const refused = await json(path);
      expect({ path, ...refused }).toMatchObject({ path, status: 400, body: { error: { param } } });
      expect(refused.body.error.message).toContain(`${param}: ${path.split("?")[0]} has no such parameter; it takes`);
    }
    // The parameters each takes still work: LiteLLM's, and litegate's own.
    expect((await json(`/spend/logs?api_key=${key}&limit=5&page=1&summarize=false`)).body).toHaveLength(1);
    expect((await json("/team/list?organization_id=o")).body).toEqual([]);
    expect((await json(`/team/list?user_id=nobody-${kind}`)).body).toEqual([]);
    expect((await json(`/key/info?key=${key}`)).status).toBe(200);
    expect((await json(`/customer/info?end_user_id=listed-${kind}`)).status).toBe(200);
    for (const path of ["/customer/list", "/budget/list", "/global/spend"]) expect((await json(path)).status).toBe(200);
    await json("/user/new", { user_id: `a-${kind}`, spend: 2 });
    await json("/user/new", { user_id: `b-${kind}`, spend: 1 });
    const sorted = (await json(`/user/list?user_ids=a-${kind},b-${kind}&sort_by=spend&sort_order=asc&page=1&page_size=10`)).body.users;
    expect(sorted.map((u: any) => u.user_id)).toEqual([`b-${kind}`, `a-${kind}`]);
    expect((await json("/user/list?sso_user_ids=x")).body.users).toEqual([]);
  });
});
