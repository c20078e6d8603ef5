import { beforeAll, describe, expect, test } from "bun:test";
import { write } from "../../src/admin/common";
import { type Harness, gatewayFor } from "../helpers/gateway";

for (const kind of ["pglite", "postgres"] as const) describe(`key admin on ${kind}`, () => {
  const gateway = gatewayFor(kind);
  const json = gateway.json;
  let h: Harness;
  beforeAll(() => {
    h = gateway.h;
  });

  test("a key's max_budget set again after none counts what was spent meanwhile; the same duration keeps the period; a per-model period changed starts anew", async () => {
    const key = (await json("/key/generate", { max_budget: 1 })).body.key;
    expect((await h.chat(key)).status).toBe(200);
    await json("/key/update", { key, max_budget: null });
    for (let i = 0; i < 3; i++) expect((await h.chat(key)).status).toBe(200);
    await h.flush();
    const spent = (await json(`/key/info?key=${key}`)).body.info.spend;
    await json("/key/update", { key, max_budget: spent });
    expect((await h.chat(key)).status).toBe(400);

    await json("/key/update", { key, max_budget: 1, budget_duration: "1d" });
    const reset = (await json(`/key/info?key=${key}`)).body.info.budget_reset_at;
    h.clock.advance(60_000);
    await json("/key/update", { key, budget_duration: "24h" });
    expect((await json(`/key/info?key=${key}`)).body.info.budget_reset_at).toBe(reset);

    const perModel = (await json("/key/generate", { model_max_budget: { mock: { budget_limit: 1e-9, time_period: "600s" } } })).body.key;
    expect((await h.chat(perModel)).status).toBe(200);
    expect((await h.chat(perModel)).status).toBe(400);
    await json("/key/update", { key: perModel, model_max_budget: { mock: { budget_limit: 1e-9, time_period: "10s" } } });
    h.clock.advance(11_000);
    expect((await h.chat(perModel)).status).toBe(200);
  });

  test("periods shorter than the key cache keep turning in the stored rows: the team shows the running period's spend", async () => {
    const team = `short-${kind}`;
    await json("/team/new", { team_id: team, max_budget: 1, budget_duration: "10s" });
    const key = (await json("/key/generate", { team_id: team })).body.key;
    let cost = 0;
    // Three periods in a row with the key's (and team's) row cached from the first: the third holds two requests.
    for (const requests of [1, 1, 2]) {
      for (let i = 0; i < requests; i++) {
        const answer = await h.chat(key);
        expect(answer.status).toBe(200);
        cost = Number(answer.headers.get("x-litellm-response-cost"));
      }
      await h.flush();
      if (requests === 1) h.clock.advance(10_000);
    }
    const info = (await json(`/team/info?team_id=${team}`)).body.team_info;
    expect(info.spend).toBeCloseTo(2 * cost, 15);
    expect(Date.parse(info.budget_reset_at)).toBeGreaterThan(h.clock.now());
  });

  test("info shows a period whose reset has passed as over, before the scheduler writes the reset", async () => {
    await json("/team/new", { team_id: `views-${kind}`, max_budget: 1, budget_duration: "30s", members_with_roles: [{ role: "user", user_id: `viewer-${kind}` }] });
    await json("/team/member_update", { team_id: `views-${kind}`, user_id: `viewer-${kind}`, max_budget_in_team: 1, budget_duration: "30s" });
    await json("/customer/new", { user_id: `views-c-${kind}`, max_budget: 1, budget_duration: "30s" });
    const key = (await json("/key/generate", { team_id: `views-${kind}`, user_id: `viewer-${kind}`, max_budget: 1, budget_duration: "30s" })).body.key;
    expect((await h.chat(key, { user: `views-c-${kind}` })).status).toBe(200);
    await h.flush();
    const spends = async () => {
      const team = (await json(`/team/info?team_id=views-${kind}`)).body;
      const customer = (await json(`/customer/info?end_user_id=views-c-${kind}`)).body;
      return [(await json(`/key/info?key=${key}`)).body.info, team.team_info, team.team_memberships[0], customer];
    };
    for (const view of await spends()) expect(view.spend).toBeGreaterThan(0);
    h.clock.advance(31_000);
    for (const view of await spends()) {
      expect(view.spend).toBe(0);
      expect(Date.parse(view.budget_reset_at)).toBeGreaterThan(h.clock.now());
    }
  });

  test("a key made with a regenerated key's old secret starts from nothing: no spend, no requests counted", async () => {
    const old = await json("/key/generate", { key: "sk-reuse-budget", max_budget: 1 });
    for (let i = 0; i < 2; i++) expect((await h.chat(old.body.key)).status).toBe(200);
    const moved = await json("/key/regenerate", { key: "sk-reuse-budget" });
    expect(moved.body.spend).toBeGreaterThan(0.000015);
    const again = await json("/key/generate", { key: "sk-reuse-budget", max_budget: 0.000015 });
    expect(again.body.spend).toBe(0);
    expect((await h.chat("sk-reuse-budget")).status).toBe(200);

    await json("/key/generate", { key: "sk-reuse-rpm", rpm_limit: 2 });
    for (let i = 0; i < 2; i++) expect((await h.chat("sk-reuse-rpm")).status).toBe(200);
    await json("/key/regenerate", { key: "sk-reuse-rpm" });
    await json("/key/generate", { key: "sk-reuse-rpm", rpm_limit: 2 });
    expect((await h.chat("sk-reuse-rpm")).status).toBe(200);
    expect((await h.chat("sk-reuse-rpm")).status).toBe(200);
    expect((await h.chat("sk-reuse-rpm")).status).toBe(429);

    // Spend under the old secret settled after the regenerate, not yet written when the new key
    // takes the secret, goes to the regenerated key.
    await json("/key/generate", { key: "sk-reuse-stream" });
    const streaming = await h.chat("sk-reuse-stream", { stream: true }, "slow");
    const streamed = await json("/key/regenerate", { key: "sk-reuse-stream" });
    expect(await streaming.text()).toContain("[DONE]");
    expect((await json("/key/generate", { key: "sk-reuse-stream" })).status).toBe(200);
    await h.flush();
    expect((await json("/key/info?key=sk-reuse-stream")).body.info.spend).toBe(0);
    expect((await json(`/key/info?key=${streamed.body.key}`)).body.info.spend).toBeGreaterThan(0);

    // Through /user/new and /key/regenerate's new_key too.
    await json("/key/generate", { key: "sk-reuse-user", rpm_limit: 1 });
    expect((await h.chat("sk-reuse-user")).status).toBe(200);
    await json("/key/regenerate", { key: "sk-reuse-user" });
    expect((await json("/user/new", { user_id: "reuse-user", key: "sk-reuse-user", rpm_limit: 1 })).status).toBe(200);
    await json("/key/update", { key: "sk-reuse-user", rpm_limit: 1 });
    expect((await h.chat("sk-reuse-user")).status).toBe(200);
    const other = await json("/key/generate", { rpm_limit: 1 });
    await json("/key/regenerate", { key: "sk-reuse-user" });
    expect((await json("/key/regenerate", { key: other.body.key, new_key: "sk-reuse-user" })).status).toBe(200);
    expect((await h.chat("sk-reuse-user")).status).toBe(200);

    // The renamed key still has every request's spend.
    await h.flush();
    const info = await json(`/key/info?key=${moved.body.key}`);
    expect(info.body.info.spend).toBeCloseTo(moved.body.spend, 12);
  });

  test("a raw key that already exists is a 409 saying so, also for every loser of one key made at once", async () => {
    const made = await Promise.all(Array.from({ length: 20 }, () => json("/key/generate", { key: "sk-race-made-once" })));
    expect(made.filter((r) => r.status === 200).length).toBe(1);
    for (const refused of made.filter((r) => r.status !== 200)) {
      expect(refused).toMatchObject({ status: 409, body: { error: { type: "conflict_error", message: "key: this key already exists", param: "key" } } });
    }
  });

  test("a key_alias taken is a 400 naming key_alias; a team gone by the time the key is written is a 400 naming team_id", async () => {
    expect((await json("/key/generate", { key_alias: "taken-alias" })).status).toBe(200);
    expect(await json("/key/generate", { key_alias: "taken-alias" })).toMatchObject({
      status: 400, body: { error: { message: 'key_alias "taken-alias" already exists', param: "key_alias" } },
    });
    // The write a /key/generate makes when /team/delete ran between its check and its insert: the database's own refusal.
    const raced = await write('key_alias "raced"', () => h.db.query("insert into keys (token, key_name, team_id) values ('raced-token', 'sk-...aced', 'team-deleted-meanwhile')"), "key_alias")
      .then(() => null, (error) => error);
    expect(raced).toMatchObject({ status: 400, param: "team_id" });
    expect(raced.message).toStartWith("team_id: refers to a team that does not exist");
  });

  test("/key/delete without keys or key_aliases is a 400 naming the field", async () => {
    for (const body of [{}, { keys: [] }, { key_aliases: [] }]) {
      expect(await json("/key/delete", body)).toMatchObject({ status: 400, body: { error: { type: "bad_request_error", param: "keys" } } });
    }
  });

  test("a key on a shared budget shows that budget's row as litellm_budget_table, its own limits staying its own", async () => {
    const budget = `kb-${kind}`;
    await json("/budget/new", { budget_id: budget, max_budget: 1e-7, rpm_limit: 7 });
    const made = await json("/key/generate", { budget_id: budget });
    expect(made.body).toMatchObject({ max_budget: null, rpm_limit: null, litellm_budget_table: { budget_id: budget, max_budget: 1e-7, rpm_limit: 7 } });
    const key = made.body.key;
    const info = (await json(`/key/info?key=${key}`)).body.info;
    expect(info).toMatchObject({ budget_id: budget, max_budget: null, rpm_limit: null, litellm_budget_table: { budget_id: budget, max_budget: 1e-7, rpm_limit: 7, tpm_limit: null } });
    const listed = (await json(`/key/list?key_hash=${info.token}&return_full_object=true`)).body.keys;
    expect(listed[0].litellm_budget_table).toMatchObject({ budget_id: budget, rpm_limit: 7 });
    const updated = await json("/key/update", { key, key_alias: `kb-alias-${kind}` });
    expect(updated.body.litellm_budget_table).toMatchObject({ budget_id: budget });
    const regenerated = await json("/key/regenerate", { key });
    expect(regenerated.body.litellm_budget_table).toMatchObject({ budget_id: budget });
    expect((await json("/key/generate", {})).body.litellm_budget_table).toBeNull();
  });
});
