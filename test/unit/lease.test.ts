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

  test("on their own, they go after fifteen seconds, however much they are", () => {
    expect(pushDue(counter({ unsynced: 3, syncedAt: 10_000 }), 24_900)).toBe(false);
    expect(pushDue(counter({ unsynced: 12, syncedAt: 10_000 }), 24_900)).toBe(false);
    expect(pushDue(counter({ unsynced: 0.001, syncedAt: 10_000 }), 25_100)).toBe(true);
  });
});
