import { beforeAll, describe, expect, test } from "bun:test";
import { type Harness, gatewayFor } from "../helpers/gateway";

for (const kind of ["pglite", "postgres"] as const) describe(`user admin on ${kind}`, () => {
  const gateway = gatewayFor(kind);
  const json = gateway.json;
  let h: Harness;
  beforeAll(() => {
    h = gateway.h;
  });

  test("an e-mail another user has (in any case) is a 409 on /user/update too, and one user at a time gets an e-mail", async () => {
    expect((await json("/user/new", { user_id: "em1", user_email: "alice@example.com" })).status).toBe(200);
    expect((await json("/user/new", { user_id: "ui1", auto_create_key: false })).status).toBe(200);
    const refused = await json("/user/update", { user_id: "ui1", user_email: "Alice@Example.com" });
    expect(refused).toMatchObject({ status: 409, body: { error: { type: "conflict_error", param: "user_email", message: "User with email alice@example.com already exists" } } });
    expect((await json("/user/info?user_id=ui1")).body.user_info.user_email).toBeNull();
    // Its own e-mail, in another case, is no conflict.
    expect((await json("/user/update", { user_id: "em1", user_email: "ALICE@example.com" })).status).toBe(200);
  });

  test("one e-mail given to many users at once: one gets it, the others are 409 conflicts", async () => {
    const created = await Promise.all(Array.from({ length: 20 }, (_, i) => json("/user/new", { user_id: `same-email-${i}`, user_email: "Same@Example.com" })));
    expect(created.filter((r) => r.status === 200).length).toBe(1);
    expect(created.filter((r) => r.status === 409 && r.body.error.type === "conflict_error").length).toBe(19);
    const updated = await Promise.all(Array.from({ length: 10 }, async (_, i) => {
      await json("/user/new", { user_id: `moving-${i}`, auto_create_key: false });
      return json("/user/update", { user_id: `moving-${i}`, user_email: "moved@example.com" });
    }));
    expect(updated.filter((r) => r.status === 200).length).toBe(1);
    const [{ n }] = (await h.db.query("select count(*)::int as n from users where lower(user_email) in ('same@example.com', 'moved@example.com')")) as any;
    expect(n).toBe(2);
  });

  test("/user/new with one user_id at once: one is made, the others are 409 conflicts", async () => {
    for (let round = 0; round < 5; round++) {
      const created = await Promise.all(Array.from({ length: 20 }, () => json("/user/new", { user_id: `same-id-${round}` })));
      expect(created.map((r) => `${r.status} ${r.body.error?.type ?? ""}`).sort()).toEqual(["200 ", ...Array(19).fill("409 conflict_error")]);
    }
  });

  test("/user/new gives its key budget_id and blocked, checked as /key/generate checks them", async () => {
    const unknown = await json("/user/new", { user_id: "un4", budget_id: "nonexistent" });
    expect(unknown).toMatchObject({ status: 400, body: { error: { param: "budget_id" } } });
    expect((await h.db.query("select 1 from users where user_id = 'un4'")).length).toBe(0);
    expect((await json("/budget/new", { budget_id: "un4-budget", max_budget: 1e-9 })).status).toBe(200);
    const budgeted = await json("/user/new", { user_id: "un4", budget_id: "un4-budget" });
    expect(budgeted).toMatchObject({ status: 200, body: { budget_id: "un4-budget" } });
    expect((await h.chat(budgeted.body.key)).status).toBe(200);
    expect((await h.chat(budgeted.body.key)).status).toBe(400);
    const blocked = await json("/user/new", { user_id: "un5", blocked: true });
    expect(blocked).toMatchObject({ status: 200, body: { blocked: true } });
    expect((await h.chat(blocked.body.key)).status).toBe(403);
  });
});
