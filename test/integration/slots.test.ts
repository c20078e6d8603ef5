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

  test("global_max_parallel_requests holds every caller, the master key too, to that many requests in flight", async () => {
    const capped = await inProcessGateway(MOCK_CONFIG.replace("general_settings:\n", "general_settings:\n  global_max_parallel_requests: 3\n"));
    try {
      const [a, b] = [await capped.createKey({}), await capped.createKey({ max_parallel_requests: 10 })];
      const streams = await Promise.all([capped.chat(a, { stream: true }, "slow"), capped.chat(b, { stream: true }, "slow"), capped.chat("sk-1234", { stream: true }, "slow")]);
      expect(streams.map((r) => r.status)).toEqual([200, 200, 200]);
      for (const caller of [a, b, "sk-1234"]) {
        const refused = await capped.chat(caller);
        expect(refused.status).toBe(429);
        const error = ((await refused.json()) as any).error;
        expect(error).toMatchObject({ type: "rate_limit_error", message: expect.stringContaining("the gateway: global_max_parallel_requests=3") });
      }
      await streams[0]!.body!.cancel();
      await Promise.all(streams.slice(1).map((r) => r.text()));
      // Every slot back: three at once pass again, the streams' spend recorded.
      const again = await Promise.all([a, b, "sk-1234"].map((caller) => capped.chat(caller)));
      expect(again.map((r) => r.status)).toEqual([200, 200, 200]);
      const slots = { key: counterKeys.parallel(scopes.gateway()), limit: 3, reserve: 1, initial: 0, expiresAt: Infinity };
      expect(capped.gateway.counters.used(slots)).toBe(0);
    } finally {
      await capped.close();
    }
  });

  test("a per-model limit on a model whose name no header may hold: 200, a header name that can, and no slot held", async () => {
    const names = ["org/fm", "llama3:8b", "fm space", "fm-é"];
    const named = await inProcessGateway(MOCK_CONFIG.replace("general_settings:", names.map((n) => `  - model_name: "${n}"\n    litellm_params: {model: mock/x, input_cost_per_token: 0.000001}\n`).join("") + "general_settings:"));
    try {
      for (const name of names) {
        const key = await named.createKey({ max_parallel_requests: 1, model_rpm_limit: { [name]: 5 } });
        for (const stream of [true, false, true]) {
          const response = await named.chat(key, { stream }, name);
          expect(`${name} ${stream} ${response.status}`).toBe(`${name} ${stream} 200`);
          expect(response.headers.get(`x-litellm-key-remaining-requests-${name.replace(/[^A-Za-z0-9-]/g, "-")}`)).not.toBeNull();
          await response.text();
        }
      }
    } finally {
      await named.close();
    }
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
