import { describe, expect, test } from "bun:test";
import { gatewayFor } from "../helpers/gateway";

/** 512 characters, 1,536 bytes of UTF-8: two of them are past what Postgres indexes in one key. */
const CJK = (c: string) => c.repeat(512);

for (const kind of ["pglite", "postgres"] as const) {
  describe(`ids are held to 1,000 bytes of UTF-8 (${kind})`, () => {
    const g = gatewayFor(kind);

    test("long CJK team and user ids are a 400 naming the field, not a 500 from the index", async () => {
      for (const [path, body, param] of [
        ["/team/new", { team_id: CJK("团") }, "team_id"],
        ["/user/new", { user_id: CJK("用"), teams: ["t"] }, "user_id"],
        ["/team/new", { team_id: "t", members_with_roles: [{ user_id: CJK("用"), role: "user" }] }, "members_with_roles[0].user_id"],
      ] as const) {
        const { status, body: answer } = await g.json(path, body);
        expect(`${path} → ${status}`).toBe(`${path} → 400`);
        expect(answer.error.param).toBe(param);
      }
      // 333 of them (999 bytes) are taken.
      expect((await g.json("/team/new", { team_id: "团".repeat(333) })).status).toBe(200);
    });
  });
}
