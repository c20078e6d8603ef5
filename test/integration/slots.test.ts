import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { hashKey } from "../../src/auth/keys";
import { counterKeys, scopes } from "../../src/governance";
import { MOCK_CONFIG, inProcessGateway } from "../helpers/gateway";

type Harness = Awaited<ReturnType<typeof inProcessGateway>>;
let h: Harness;
beforeAll(async () => {
  h = await inProcessGateway(MOCK_CONFIG);
}, 120_000);
afterAll(() => h.close());

describe("parallel slots", () => {
  test("no slot leaks after 2,000 streams cancelled mid-way", async () => {
    const key = await h.createKey({ max_parallel_requests: 50 });
    for (let round = 0; round < 40; round++) {
      const responses = await Promise.all(Array.from({ length: 50 }, () => h.chat(key, { stream: true }, "slow")));
      expect(responses.every((r) => r.status === 200)).toBe(true);
      await Promise.all(responses.map(async (response) => {
        const reader = response.body!.getReader();
        await reader.read();
        await reader.cancel();
      }));
    }
    const parallel = { key: counterKeys.parallel(scopes.key(hashKey(key))), limit: 50, reserve: 1, initial: 0, expiresAt: Infinity };
    expect(h.gateway.counters.used(parallel)).toBe(0);
    const again = await Promise.all(Array.from({ length: 50 }, () => h.chat(key, {}, "mock")));
    expect(again.every((r) => r.status === 200)).toBe(true);
    await h.flush();
    const [row] = await h.db.query("select count(*)::int as n from spend_logs where api_key = $1 and status = 'client_disconnected'", [hashKey(key)]);
    expect(row!.n).toBe(2000);
  });

  test("changing budget_duration or max_budget leaves no stale counter", async () => {
    const created = await (await h.call("/key/generate", { max_budget: 1e-9, budget_duration: "1h" })).json() as any;
    expect((await h.chat(created.key)).status).toBe(200);
    expect((await h.chat(created.key)).status).toBe(400);
    await h.call("/key/update", { key: created.key, max_budget: 1 });
    expect((await h.chat(created.key)).status).toBe(200);
    // A new duration keeps the spend already made (it is written first), so the tiny budget still refuses.
    await h.call("/key/update", { key: created.key, max_budget: 1e-9, budget_duration: "1d" });
    expect((await h.chat(created.key)).status).toBe(400);
    // An admin reset of the spend is seen at once: no stale counter keeps the key blocked.
    await h.call("/key/update", { key: created.key, spend: 0 });
    expect((await h.chat(created.key)).status).toBe(200);
    expect((await h.chat(created.key)).status).toBe(400);
  });
});
