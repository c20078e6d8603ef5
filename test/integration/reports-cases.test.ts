import { describe, expect, test } from "bun:test";
import { gatewayFor } from "../helpers/gateway";

for (const kind of ["pglite", "postgres"] as const) {
  describe(`/spend/logs filters sent empty (${kind})`, () => {
    const g = gatewayFor(kind);

    test("filter by the empty value, as every other id is filtered, and an empty date is a 400; none lists every row", async () => {
      const { h } = g;
      // LiteLLM's docs make the user "": its keys' rows carry user_id "".
      const nameless = (await g.json("/user/new", { user_id: "" })).body.key;
      const other = (await g.json("/user/new", { user_id: "someone" })).body.key;
      expect((await h.chat(nameless, { user: "cust-a" })).status).toBe(200);
      expect((await h.chat(other, { user: "cust-b" })).status).toBe(200);
      await h.flush();
      const rows = async (query: string) => {
        const { status, body } = await g.json(`/spend/logs?${query}`);
        expect(status).toBe(200);
        return (body as any[]).map((r) => r.user_id);
      };
      expect((await rows("")).sort()).toEqual(["", "someone"]);
      expect(await rows("user_id=")).toEqual([""]);
      for (const name of ["api_key", "team_id", "end_user", "request_id"]) expect(await rows(`${name}=`)).toEqual([]);
      // The daily summary, too: the spend of user "" alone, not everyone's.
      const today = new Date(h.clock.now()).toISOString().slice(0, 10);
      const { body: days } = await g.json(`/spend/logs?start_date=${today}&end_date=${today}&user_id=`);
      expect(Object.keys(days[0].users)).toEqual([""]);
      for (const name of ["start_date", "end_date"]) {
        const { status, body } = await g.json(`/spend/logs?${name}=`);
        expect(status).toBe(400);
        expect(body.error.param).toBe(name);
      }
    });
  });
}
