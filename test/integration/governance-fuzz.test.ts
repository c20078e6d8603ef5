import { describe, expect, test } from "bun:test";
import { books, randomLimitsSuite, ratesHeld, setUp, slotsFree, traffic } from "../helpers/random-limits";

/**
 * Seeded random limits on keys, users, teams, members and customers, and random traffic through two
 * instances of the binary sharing Postgres and Redis: plain answers, streams read to the end, streams the
 * client leaves after the first chunk, the upstream's 500s, timeouts and streams it breaks. Whatever the
 * draw, every limit holds across both instances: the upstream never holds more of a scope's requests at
 * once than its max_parallel_requests, no scope has more requests admitted in a minute than its
 * rpm_limit, no budget or tpm_limit is passed by more than one request, what each entity shows as spent
 * is what its spend_logs rows add up to, and afterwards no slot is left held. With limits changed and
 * keys blocked while the requests run, the books still balance and no slot is left held. And the same
 * for one instance on the embedded database.
 */

const { shared, instances } = randomLimitsSuite();

/**
 * One seed's draw and traffic on new instances (two sharing Postgres and Redis, or one on the embedded
 * database): with `changes`, limits changed and keys blocked meanwhile, after which only the books and the
 * slots are checked (the limits the requests met moved under them).
 */
async function run(seed: number, { embedded = false, changes = false } = {}) {
  const { gateways, open } = await instances({ embedded });
  const { scopes, keys } = await setUp(gateways[0]!.url, seed);
  const sent = await traffic(gateways, keys, seed, changes ? { changes: { scopes } } : {});
  const problems = changes ? [] : ratesHeld(shared, scopes, sent, seed);
  const liftedAt = changes ? null : new Date();
  problems.push(...await slotsFree(shared, gateways, scopes, keys));
  // Spend lands within 250 ms on each instance; stopped, they have written everything.
  for (const g of gateways) expect(await g.stop("SIGTERM")).toBe(0);
  problems.push(...await books(await open(), scopes, keys, liftedAt));
  expect(problems).toEqual([]);
  expect(shared.upstream.inFlight).toBe(0);
}

describe("random limits on two instances sharing Postgres and Redis", () => {
  for (const seed of [11, 23, 37, 41, 53, 67]) {
    test(`seed ${seed}: every limit holds across both instances, the books balance, and no slot is left held`, () => run(seed), 120_000);
  }
  for (const seed of [71, 83, 97]) {
    test(`seed ${seed}, limits changed and keys blocked meanwhile: no 5xx, the books balance, and no slot is left held`, () => run(seed, { changes: true }), 120_000);
  }
});

describe("random limits on one instance on the embedded database", () => {
  for (const seed of [61, 79, 89]) {
    test(`seed ${seed}: every limit holds, the books balance, and no slot is left held`, () => run(seed, { embedded: true }), 120_000);
  }
});
