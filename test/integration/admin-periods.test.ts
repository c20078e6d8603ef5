import { describe, expect, test } from "bun:test";
import { hashKey } from "../../src/auth/keys";
import { MOCK_CONFIG, gatewayFor } from "../helpers/gateway";

const DEFAULTS = `${MOCK_CONFIG}litellm_settings:
  max_internal_user_budget: 10
  internal_user_budget_duration: 1h
`;
const HOUR = 3_600_000;

// What the admin API shows of a period whose duration is not the row's own (the internal-user
// default, a key's budget_id) must be what enforcement counts: the period running now, before the
// scheduler (up to ten minutes late) writes it.
describe("periods shown by the admin API", () => {
  const gateway = gatewayFor("pglite", DEFAULTS);

  test("/user/info and /user/list show the running period of an internal user on internal_user_budget_duration", async () => {
    const { h, json } = { h: gateway.h, json: gateway.json };
    expect((await json("/user/new", { user_id: "on-default", max_budget: 3, auto_create_key: false })).status).toBe(200);
    const ended = h.clock.now() - 60_000;
    await h.db.query("update users set spend = 5, budget_reset_at = $2 where user_id = $1", ["on-default", new Date(ended)]);
    const info = (await json("/user/info?user_id=on-default")).body.user_info;
    expect(info).toMatchObject({ spend: 0, budget_duration: null, budget_reset_at: new Date(ended + HOUR).toISOString() });
    const listed = (await json("/user/list?user_ids=on-default")).body.users[0];
    expect(listed).toMatchObject({ spend: 0, budget_reset_at: new Date(ended + HOUR).toISOString() });
  });

  test("/key/info, /key/list, /user/info and the answers of /key/block and /key/update show the running period of a key on its budget_id's duration", async () => {
    const { h, json } = { h: gateway.h, json: gateway.json };
    expect((await json("/budget/new", { budget_id: "ten-s", max_budget: 100, budget_duration: "10s" })).status).toBe(200);
    const key = (await json("/key/generate", { budget_id: "ten-s", user_id: "key-owner" })).body.key as string;
    const ended = h.clock.now() - 1_000;
    await h.db.query("update keys set spend = 2, budget_reset_at = $2 where token = $1", [hashKey(key), new Date(ended)]);
    const running = { spend: 0, budget_duration: null, budget_reset_at: new Date(ended + 10_000).toISOString() };
    expect((await json(`/key/info?key=${key}`)).body.info).toMatchObject(running);
    expect((await json("/key/list?user_id=key-owner&return_full_object=true")).body.keys[0]).toMatchObject(running);
    expect((await json("/user/info?user_id=key-owner")).body.keys[0]).toMatchObject(running);
    // The answers of changes to the key show it too.
    expect((await json("/key/block", { key })).body).toMatchObject(running);
    expect((await json("/key/update", { key, key_alias: "on-ten-s" })).body).toMatchObject(running);
  });

  test("/budget/info and /budget/list show the end of the running period, not the stored one that has passed", async () => {
    const { h, json } = { h: gateway.h, json: gateway.json };
    const made = h.clock.now();
    expect((await json("/budget/new", { budget_id: "daily", max_budget: 1, budget_duration: "1d" })).status).toBe(200);
    h.clock.advance(2.5 * 24 * HOUR);
    const running = new Date(made + 3 * 24 * HOUR).toISOString();
    expect((await json("/budget/info", { budgets: ["daily"] })).body[0].budget_reset_at).toBe(running);
    expect((await json("/budget/list")).body.find((b: any) => b.budget_id === "daily").budget_reset_at).toBe(running);
    // A budget without a duration shows what is stored.
    expect((await json("/budget/new", { budget_id: "flat", max_budget: 1 })).body.budget_reset_at).toBeNull();
  });
});
