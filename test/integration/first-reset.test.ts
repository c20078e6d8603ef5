import { describe, expect, test } from "bun:test";
import { hashKey } from "../../src/auth/keys";
import { MOCK_CONFIG, gatewayFor, inProcessGateway } from "../helpers/gateway";

// A row made without a reset (its duration comes from elsewhere: here the key's budget_id) gets one
// at its first write; the spend of each later period must start that period, even while the cached
// key (60 s) still reads the row as it was made.
for (const kind of ["pglite", "postgres"] as const) describe(`first reset of a row on ${kind}`, () => {
  const gateway = gatewayFor(kind);

  test("a key on a budget_id with a 10 s duration keeps the spend of each period over three periods", async () => {
    const { h, json } = { h: gateway.h, json: gateway.json };
    expect((await json("/budget/new", { budget_id: "ten-seconds", max_budget: 100, budget_duration: "10s" })).status).toBe(200);
    const key = (await json("/key/generate", { budget_id: "ten-seconds" })).body.key as string;
    // As a key made before keys on a budget_id got a reset at creation (members and users still get none).
    await h.db.query("update keys set budget_reset_at = null where token = $1", [hashKey(key)]);
    const row = async () => (await h.db.query("select spend, budget_reset_at from keys where token = $1", [hashKey(key)]))[0] as any;
    let perRequest = 0;
    for (let period = 0; period < 3; period++) {
      expect((await h.chat(key)).status).toBe(200);
      await h.flush();
      const { spend, budget_reset_at } = await row();
      if (period === 0) perRequest = spend;
      expect(perRequest).toBeGreaterThan(0);
      // This period's request only, in a period that has not ended.
      expect(spend).toBeCloseTo(perRequest, 12);
      expect(new Date(budget_reset_at).getTime()).toBeGreaterThan(h.clock.now());
      if (period < 2) h.clock.set(new Date(budget_reset_at).getTime() + 1);
    }
    // A gateway started again on the same database counts the third period's spend.
    const again = await inProcessGateway(MOCK_CONFIG, { db: h.db, start: h.clock.now() });
    try {
      const info = await (await again.call(`/key/info?key=${key}`)).json() as any;
      expect(info.info.spend).toBeCloseTo(perRequest, 12);
    } finally {
      await again.close();
    }
  });
});

describe("a key made with a budget_id", () => {
  const gateway = gatewayFor("pglite");
  test("starts its budget_id's period when it is made", async () => {
    const { h, json } = { h: gateway.h, json: gateway.json };
    expect((await json("/budget/new", { budget_id: "hourly", max_budget: 100, budget_duration: "1h" })).status).toBe(200);
    const key = (await json("/key/generate", { budget_id: "hourly" })).body.key as string;
    const [row] = await h.db.query("select budget_reset_at from keys where token = $1", [hashKey(key)]) as any[];
    expect(new Date(row.budget_reset_at).getTime()).toBe(h.clock.now() + 3_600_000);
  });
});
