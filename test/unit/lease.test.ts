import { describe, expect, test } from "bun:test";
import { type State, pushDue } from "../../src/redis/lease";

function counter(fields: Partial<State>): State {
  return {
    check: { key: "k", limit: 1000, reserve: 1, initial: 0, expiresAt: Infinity },
    lease: 16, inflight: 0, unsynced: 0, v: 0, others: 0, peers: 0, synced: true, busy: null,
    admittedSinceSync: 0, rate: 0, lastReserve: 1, lastActual: 0, touchedAt: 0, syncedAt: 0, ...fields,
  };
}

describe("when settled amounts are pushed without a sync for room", () => {
  test("nothing to push is never due", () => {
    expect(pushDue(counter({ unsynced: 0 }), 60_000)).toBe(false);
  });

  test("four requests' worth goes after a second, not before", () => {
    expect(pushDue(counter({ unsynced: 4, syncedAt: 10_000 }), 10_900)).toBe(false);
    expect(pushDue(counter({ unsynced: 4, syncedAt: 10_000 }), 11_100)).toBe(true);
  });

  test("less than that waits five seconds", () => {
    expect(pushDue(counter({ unsynced: 3, syncedAt: 10_000 }), 14_000)).toBe(false);
    expect(pushDue(counter({ unsynced: 3, syncedAt: 10_000 }), 15_100)).toBe(true);
  });

  test("a request's worth is its reservation (a budget's estimated cost), or its typical tokens", () => {
    // Budget: four requests at an estimated $0.01 each.
    expect(pushDue(counter({ lastReserve: 0.01, unsynced: 0.039, syncedAt: 0 }), 2000)).toBe(false);
    expect(pushDue(counter({ lastReserve: 0.01, unsynced: 0.04, syncedAt: 0 }), 2000)).toBe(true);
    // Tokens counters reserve nothing: four requests of ~500 tokens.
    expect(pushDue(counter({ lastReserve: 0, lastActual: 500, unsynced: 1500, syncedAt: 0 }), 2000)).toBe(false);
    expect(pushDue(counter({ lastReserve: 0, lastActual: 500, unsynced: 2000, syncedAt: 0 }), 2000)).toBe(true);
  });
});
