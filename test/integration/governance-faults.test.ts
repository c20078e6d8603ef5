import { describe, expect, test } from "bun:test";
import { books, drawLimits, randomLimitsSuite, setUp, slotsFree, traffic } from "../helpers/random-limits";

/**
 * Random limits and random traffic over two instances of the binary (see governance-fuzz.test.ts) while
 * Redis goes away and comes back empty, and then one instance is killed (SIGKILL) with requests in
 * flight: the requests answered are never a 5xx of the gateway's own, what each entity shows as spent
 * is what its spend_logs rows add up to (the killed instance's last spend is lost whole, never half
 * written), and once the killed instance's leases have lapsed every slot is free on the one left.
 */

const { shared, instances } = randomLimitsSuite();

describe("random limits while Redis restarts empty and an instance is killed", () => {
  for (const seed of [131, 149, 157]) {
    test(`seed ${seed}: no 5xx, the books balance, and every slot comes back`, async () => {
      const { gateways, open } = await instances();
      const [a, b] = gateways as [typeof gateways[0], typeof gateways[0]];
      // Rate limits alone, no budget: most requests are admitted, so slots and leases are held when the faults come.
      const { scopes, keys } = await setUp(a.url, seed, (random) => {
        const { max_budget, ...rates } = drawLimits(random);
        return rates;
      });
      await traffic(gateways, keys, seed, {
        seconds: 7,
        faults: [
          { at: 1500, run: () => shared.redis.stop() },
          { at: 3000, run: () => shared.redis.start() },
          { at: 4500, run: async () => void (await b.stop("SIGKILL")), killed: b },
        ],
      });
      // The killed instance's leases lapse 3 s after its last heartbeat.
      await Bun.sleep(3500);
      const problems = await slotsFree(shared, [a], scopes, keys);
      expect(await a.stop("SIGTERM")).toBe(0);
      problems.push(...await books(await open(), scopes, keys, null));
      expect(problems).toEqual([]);
      expect(shared.upstream.inFlight).toBe(0);
    }, 120_000);
  }
});
