import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { type RunningGateway, startOn } from "../helpers/binary";
import { type Harness, gatewayFor } from "../helpers/gateway";

for (const kind of ["pglite", "postgres"] as const) describe(`admin input cases on ${kind}`, () => {
  const gateway = gatewayFor(kind);
  const json = gateway.json;
  let h: Harness;
  beforeAll(() => {
    h = gateway.h;
  });
  const userRow = async (id: string) => (await h.db.query("select user_email, max_budget from users where user_id = $1", [id]))[0];

  test("a /user/update refused for its unset list changes nothing, its new e-mail included", async () => {
    const id = `mail-${kind}`;
    expect((await json("/user/new", { user_id: id, user_email: `${id}@example.com`, auto_create_key: false })).status).toBe(200);
    for (const body of [
      { user_id: id, user_email: `other-${id}@example.com`, unset: ["user_email"] },
      { user_id: id, user_email: `other-${id}@example.com`, max_budget: 5, unset: ["max_budget"] },
    ]) {
      const refused = await json("/user/update", body);
      expect(refused).toMatchObject({ status: 400, body: { error: { param: "unset" } } });
      expect(await userRow(id)).toEqual({ user_email: `${id}@example.com`, max_budget: null });
    }
    // The e-mail it would have taken is still free for another user.
    expect((await json("/user/new", { user_id: `other-${id}`, user_email: `other-${id}@example.com`, auto_create_key: false })).status).toBe(200);
  });

  test("a key's or customer's budget_id may not be a budget litegate keeps for one customer or membership, whose changes would change it too", async () => {
    const own = (await json("/customer/new", { user_id: `own-${kind}`, max_budget: 5 })).body.budget_id as string;
    expect(own).toStartWith(`customer:own-${kind}:`);
    await json("/team/new", { team_id: `own-t-${kind}`, team_member_budget: 3 });
    await json("/team/member_add", { team_id: `own-t-${kind}`, member: { user_id: `own-m-${kind}` }, max_budget_in_team: 2 });
    await json("/budget/new", { budget_id: `plain-${kind}`, max_budget: 1 });
    await json("/customer/new", { user_id: `plain-c-${kind}`, budget_id: `plain-${kind}` });
    const key = (await json("/key/generate", {})).body.key;
    for (const budget of [own, `team-member:own-t-${kind}:own-m-${kind}`, `team-members:own-t-${kind}`]) {
      for (const [path, body] of [
        ["/customer/new", { user_id: `other-c-${kind}`, budget_id: budget }], ["/customer/update", { user_id: `plain-c-${kind}`, budget_id: budget }],
        ["/key/generate", { budget_id: budget }], ["/key/update", { key, budget_id: budget }], ["/key/regenerate", { key, budget_id: budget }],
        ["/user/new", { user_id: `other-u-${kind}`, budget_id: budget }],
      ] as const) {
        const refused = await json(path, body);
        expect({ path, budget, ...refused }).toMatchObject({ path, budget, status: 400, body: { error: { param: "budget_id" } } });
      }
    }
    expect((await json(`/customer/info?end_user_id=other-c-${kind}`)).status).toBe(404);
    expect((await json(`/customer/info?end_user_id=plain-c-${kind}`)).body.budget_id).toBe(`plain-${kind}`);
    expect((await json(`/key/info?key=${key}`)).body.info.budget_id).toBeNull();
    // A customer sent back its own budget's id (an admin screen sends every field) keeps it; a budget of /budget/new is taken.
    expect((await json("/customer/update", { user_id: `own-${kind}`, budget_id: own, alias: "same" })).body).toMatchObject({ budget_id: own, alias: "same" });
    expect((await json("/key/update", { key, budget_id: `plain-${kind}` })).body.budget_id).toBe(`plain-${kind}`);
  });

  test("a member's new role keeps the e-mail members_with_roles lists it by", async () => {
    const team = `roles-${kind}`;
    await json("/team/new", { team_id: team });
    const added = await json("/team/member_add", { team_id: team, member: { user_email: `mail-${kind}@example.com`, role: "admin" } });
    const [member] = added.body.members_with_roles;
    expect(member).toMatchObject({ role: "admin", user_email: `mail-${kind}@example.com` });
    expect((await json("/team/member_update", { team_id: team, user_id: member.user_id, role: "user" })).status).toBe(200);
    expect((await json(`/team/info?team_id=${team}`)).body.team_info.members_with_roles)
      .toEqual([{ role: "user", user_id: member.user_id, user_email: `mail-${kind}@example.com` }]);
  });

  test("null for a field LiteLLM's request models leave optional is taken as left out (typed clients send every field)", async () => {
    const team = `nulls-${kind}`;
    // LiteLLM's Member: user_id and user_email are each Optional[str] = None.
    const made = await json("/team/new", { team_id: team, members_with_roles: [{ role: "admin", user_id: null, user_email: `n1-${kind}@example.com` }] });
    expect(made.status).toBe(200);
    expect(made.body.members_with_roles).toEqual([expect.objectContaining({ role: "admin", user_email: `n1-${kind}@example.com` })]);
    const added = await json("/team/member_add", { team_id: team, member: [{ role: "user", user_id: null, user_email: `n2-${kind}@example.com` }] });
    expect(added.status).toBe(200);
    expect(added.body.members_with_roles).toHaveLength(2);
    // TeamMemberUpdateRequest.role: Optional[...] = None, the member's role kept.
    const userId = added.body.members_with_roles[0].user_id;
    const updated = await json("/team/member_update", { team_id: team, user_id: userId, role: null, max_budget_in_team: 4 });
    expect(updated).toMatchObject({ status: 200, body: { role: "admin", max_budget_in_team: 4 } });
    // KeyRequest: keys and key_aliases are each Optional[List[str]] = None.
    const byAlias = (await json("/key/generate", { key_alias: `gone-${kind}` })).body.key;
    expect((await json("/key/delete", { keys: null, key_aliases: [`gone-${kind}`] })).status).toBe(200);
    const byKey = (await json("/key/generate", {})).body.key;
    expect((await json("/key/delete", { keys: [byKey], key_aliases: null })).status).toBe(200);
    for (const key of [byAlias, byKey]) expect((await json(`/key/info?key=${key}`)).status).toBe(404);
    expect((await json("/key/delete", { keys: null, key_aliases: null })).body.error.param).toBe("keys");
    expect((await json("/team/member_add", { team_id: team, member: { role: "user", user_id: null, user_email: null } })).status).toBe(400);
  });

  test("a team named twice by one /user/new is a 400 naming the second, and nothing is written", async () => {
    const team = `twice-t-${kind}`;
    await json("/team/new", { team_id: team });
    for (const [body, param] of [
      [{ teams: [{ team_id: team, user_role: "admin" }], team_id: team }, "team_id"],
      [{ teams: [{ team_id: team, max_budget_in_team: 5 }, team] }, "teams[1]"],
      [{ teams: ["other", team, { team_id: team, max_budget_in_team: 9 }] }, "teams[2]"],
    ] as const) {
      const refused = await json("/user/new", { user_id: `twice-u-${kind}`, auto_create_key: false, ...body });
      expect(refused).toMatchObject({ status: 400, body: { error: { param } } });
      expect(refused.body.error.message).toStartWith(`${param}: team "${team}" is already`);
      expect((await json(`/user/info?user_id=twice-u-${kind}`)).status).toBe(404);
    }
    expect((await json(`/team/info?team_id=${team}`)).body.team_info.members_with_roles).toEqual([]);
    // Each team once, as before.
    const made = await json("/user/new", { user_id: `twice-u-${kind}`, auto_create_key: false, teams: [{ team_id: team, user_role: "admin" }] });
    expect(made.body.teams).toEqual([team]);
    expect((await json(`/team/info?team_id=${team}`)).body.team_info.members_with_roles).toEqual([{ role: "admin", user_id: `twice-u-${kind}` }]);
  });

  test("/user/update's unset sent as text is refused as the text it is, not as a list of its letters", async () => {
    await json("/user/new", { user_id: `unset-${kind}`, auto_create_key: false, max_budget: 3 });
    const refused = await json("/user/update", { user_id: `unset-${kind}`, unset: "max_budget" });
    expect(refused).toMatchObject({ status: 400, body: { error: { param: "unset" } } });
    expect(refused.body.error.message).toStartWith("unset: must be a list of fields among");
    expect(refused.body.error.message).toEndWith('(got "max_budget")');
    expect((await json("/user/update", { user_id: `unset-${kind}`, unset: ["max_budget"] })).body.max_budget).toBeNull();
  });

  test("/team/update and /budget/update with nothing to change answer the row as it is, as LiteLLM does (not a 400)", async () => {
    const team = `same-${kind}`;
    await json("/team/new", { team_id: team, team_alias: "kept", max_budget: 4 });
    await json("/budget/new", { budget_id: `same-b-${kind}`, max_budget: 2 });
    for (const body of [{ team_id: team }, { team_id: team, tags: ["reporting"] }]) {
      const same = await json("/team/update", body);
      expect(same).toMatchObject({ status: 200, body: { team_id: team, team_alias: "kept", max_budget: 4, data: { team_id: team } } });
    }
    expect(await json("/budget/update", { budget_id: `same-b-${kind}` })).toMatchObject({ status: 200, body: { budget_id: `same-b-${kind}`, max_budget: 2 } });
    expect((await json("/team/update", { team_id: `none-${kind}` })).status).toBe(404);
    expect((await json("/budget/update", { budget_id: `none-${kind}` })).status).toBe(404);
  });

  test("a member added with a limit of their own keeps the team's member budget for the fields not sent, as /team/member_update does", async () => {
    const team = `tmb-own-${kind}`;
    await json("/team/new", { team_id: team, team_member_budget: 0.0000001, team_member_budget_duration: "1d" });
    await json("/team/member_add", { team_id: team, member: { user_id: `lim-${kind}` }, rpm_limit: 50 });
    await json("/team/member_add", { team_id: team, member: { user_id: `upd-${kind}` } });
    await json("/team/member_update", { team_id: team, user_id: `upd-${kind}`, rpm_limit: 50 });
    const info = (await json(`/team/info?team_id=${team}`)).body;
    for (const m of info.team_memberships) {
      expect({ user: m.user_id, ...m.litellm_budget_table }).toMatchObject({ user: m.user_id, max_budget: 0.0000001, rpm_limit: 50, budget_duration: "1d" });
      expect(new Date(m.budget_reset_at).getTime() - Date.now()).toBeGreaterThan(23 * 3600_000);
    }
    // Each member's first request passes; the next is over the team's member budget, as it is without a limit of their own.
    for (const user of [`lim-${kind}`, `upd-${kind}`]) {
      const key = (await json("/key/generate", { team_id: team, user_id: user })).body.key;
      expect((await h.chat(key)).status).toBe(200);
      await h.flush();
      const refused = await h.chat(key);
      expect({ user, status: refused.status }).toEqual({ user, status: 400 });
    }
    // A budget sent is the member's own, whatever the team's.
    await json("/team/member_add", { team_id: team, member: { user_id: `own-${kind}` }, max_budget_in_team: 5 });
    const own = (await json(`/team/info?team_id=${team}`)).body.team_memberships.find((m: any) => m.user_id === `own-${kind}`);
    expect(own.litellm_budget_table).toMatchObject({ max_budget: 5, budget_duration: "1d" });
  });

  test("one user named twice in one call, once by user_id and once by e-mail, is a 400 naming the second, and nothing is written", async () => {
    const team = `mixed-${kind}`;
    await json("/team/new", { team_id: team });
    await json("/user/new", { user_id: `mx-${kind}`, user_email: `mx-${kind}@example.com`, auto_create_key: false });
    const twice = await json("/team/member_add", { team_id: team, member: [{ user_id: `mx-${kind}`, role: "admin" }, { user_email: `MX-${kind}@example.com` }] });
    expect(twice).toMatchObject({ status: 400, body: { error: { param: "member[1].user_email" } } });
    expect((await json(`/team/info?team_id=${team}`)).body.team_memberships).toEqual([]);
    const made = await json("/team/new", { team_id: `mixed-new-${kind}`, members_with_roles: [{ user_email: `mx-${kind}@example.com`, role: "admin" }, { user_id: `mx-${kind}` }] });
    expect(made).toMatchObject({ status: 400, body: { error: { param: "members_with_roles[1].user_id" } } });
    expect((await json(`/team/info?team_id=mixed-new-${kind}`)).status).toBe(404);
  });
});

for (const database of ["embedded", "postgres"] as const) describe(`admin input cases, the binary on ${database}`, () => {
  let gateway: RunningGateway;
  beforeAll(async () => {
    gateway = await startOn(database, "model_list:\n  - model_name: mock\n    litellm_params: {model: mock/x, mock_response: hi, input_cost_per_token: 0.000001, output_cost_per_token: 0.000002}\n");
  }, 120_000);
  afterAll(async () => {
    await gateway?.stop("SIGTERM");
  });
  const post = async (path: string, body: unknown) => {
    const response = await fetch(`${gateway.url}${path}`, { method: "POST", headers: { authorization: "Bearer sk-1234" }, body: JSON.stringify(body) });
    return { status: response.status, body: (await response.json()) as any };
  };

  test("a typed client's member (user_id null) is added; a customer's own budget is no budget_id for another; a refused /user/update writes nothing", async () => {
    expect((await post("/team/new", { team_id: "bin-t", members_with_roles: [{ role: "user", user_id: null, user_email: "bin@example.com" }] })).status).toBe(200);
    expect((await post("/team/member_update", { team_id: "bin-t", user_email: "bin@example.com", role: null, max_budget_in_team: 1 })).status).toBe(200);
    const own = (await post("/customer/new", { user_id: "bin-c", max_budget: 1 })).body.budget_id;
    expect(await post("/customer/new", { user_id: "bin-c2", budget_id: own })).toMatchObject({ status: 400, body: { error: { param: "budget_id", code: "400" } } });
    expect(await post("/key/generate", { budget_id: own })).toMatchObject({ status: 400, body: { error: { param: "budget_id" } } });
    const user = (await post("/team/member_add", { team_id: "bin-t", member: { user_email: "bin2@example.com" } })).body.updated_users[0].user_id;
    expect((await post("/user/update", { user_id: user, user_email: "bin3@example.com", unset: ["user_email"] })).status).toBe(400);
    expect((await post("/user/update", { user_email: "bin2@example.com", max_budget: 2 })).body).toMatchObject({ user_id: user, max_budget: 2 });
  });
});
