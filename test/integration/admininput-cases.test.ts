import { beforeAll, describe, expect, test } from "bun:test";
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
});
