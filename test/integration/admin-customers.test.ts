import { beforeAll, describe, expect, test } from "bun:test";
import { type Harness, MOCK_CONFIG, gatewayFor } from "../helpers/gateway";

// Customers without a budget of their own get a budget of a millionth of a cent: one request uses it up.
const CONFIG = `${MOCK_CONFIG}
litellm_settings:
  max_end_user_budget: 0.00000001
`;

for (const kind of ["pglite", "postgres"] as const) describe(`customer admin on ${kind}`, () => {
  const gateway = gatewayFor(kind, CONFIG);
  const json = gateway.json;
  let h: Harness;
  beforeAll(() => {
    h = gateway.h;
  });

  test("/customer/update with budget_id or alias null clears it: the customer is back on max_end_user_budget at its next request", async () => {
    expect((await json("/budget/new", { budget_id: "big", max_budget: 100 })).status).toBe(200);
    expect((await json("/customer/new", { user_id: "cu1", alias: "Customer one", budget_id: "big" })).status).toBe(200);
    for (let i = 0; i < 2; i++) expect((await h.chat("sk-1234", { user: "cu1" })).status).toBe(200);
    // Left out, they stay.
    expect((await json("/customer/update", { user_id: "cu1", blocked: false })).body).toMatchObject({ alias: "Customer one", budget_id: "big" });
    const cleared = await json("/customer/update", { user_id: "cu1", budget_id: null, alias: null });
    expect(cleared).toMatchObject({ status: 200, body: { alias: null, budget_id: null, litellm_budget_table: null } });
    expect((await h.chat("sk-1234", { user: "cu1" })).status).toBe(400);

    // A budget of its own (made from inline fields) goes with it.
    expect((await json("/customer/new", { user_id: "cu2", max_budget: 100 })).status).toBe(200);
    const own = (await json("/customer/info?end_user_id=cu2")).body.budget_id;
    expect((await json("/customer/update", { user_id: "cu2", budget_id: null })).body.budget_id).toBeNull();
    expect((await h.db.query("select 1 from budgets where budget_id = $1", [own])).length).toBe(0);
  });

  test("/customer/update refuses an alias /customer/new refuses; /user/update a user_email /user/new refuses", async () => {
    expect((await json("/customer/new", { user_id: "long-alias", alias: "a".repeat(5000) })).status).toBe(400);
    expect((await json("/customer/new", { user_id: "long-alias" })).status).toBe(200);
    expect(await json("/customer/update", { user_id: "long-alias", alias: "a".repeat(5000) })).toMatchObject({ status: 400, body: { error: { param: "alias" } } });
    expect((await json("/user/new", { user_id: "long-email", user_email: `${"e".repeat(5000)}@example.com` })).status).toBe(400);
    expect((await json("/user/new", { user_id: "long-email", auto_create_key: false })).status).toBe(200);
    expect(await json("/user/update", { user_id: "long-email", user_email: `${"e".repeat(5000)}@example.com` })).toMatchObject({ status: 400, body: { error: { param: "user_email" } } });
  });
});
