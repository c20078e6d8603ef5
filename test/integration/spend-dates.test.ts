import { describe, expect, test } from "bun:test";
import { hashKey } from "../../src/auth/keys";
import { gatewayFor } from "../helpers/gateway";

/** A reset the runtime cannot read, as a database written before such dates were refused may hold. */
const YEAR_10000 = "10000-01-01T11:59:59Z";

for (const kind of ["pglite", "postgres"] as const) {
  describe(`spend of a key whose stored reset is past the year 9999 (${kind})`, () => {
    const g = gatewayFor(kind);

    test("is written, and so is every other key's: the reset counts as none", async () => {
      const { h } = g;
      const odd = await h.createKey({ max_budget: 10, budget_duration: "30d" });
      // In SQL: the driver cannot send a date the runtime cannot read.
      await h.db.query(`update keys set budget_reset_at = '${YEAR_10000}' where token = $1`, [hashKey(odd)]);
      const plain = await h.createKey({ max_budget: 10 });
      expect((await h.chat(odd)).status).toBe(200);
      expect((await h.chat(plain)).status).toBe(200);
      await h.flush();
      expect(h.gateway.spend.failing()).toBe(false);
      expect(h.gateway.spend.backlog()).toBe(0);
      const rows = await h.db.query("select token, spend from keys where token = any($1::text[]) order by token", [[hashKey(odd), hashKey(plain)]]);
      expect(rows.map((r) => r.spend > 0)).toEqual([true, true]);
    });
  });
}
