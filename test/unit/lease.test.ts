import { describe, expect, test } from "bun:test";
import { LEASE_FLOOR, type State, pushDue, roomWanted } from "../../src/redis/lease";
import { fitsHere } from "../../src/redis/waits";

function counter(fields: Partial<State>): State {
  return {
    check: { key: "k", limit: 1000, reserve: 1, initial: 0, expiresAt: Infinity },
    lease: 16, inflight: 0, unsynced: 0, pushing: 0, acked: 0, series: 1, reclaim: false, askedAt: 0, othersAskedAt: 0, wakers: null, syncedLimit: 1000, sendingLimit: 1000, v: 0, others: 0, peers: 0, synced: true, busy: null,
    admittedSinceSync: 0, rate: 0, lastReserve: 1, lastActual: 0, touchedAt: 0, syncedAt: 0, recover: false, floor: 0, generation: null, waits: [], waitsChanged: false, waitsInRedis: false, ahead: 0, ...fields,
  };
}

describe("when settled amounts are pushed without a sync for room", () => {
  test("nothing to push is never due", () => {
    expect(pushDue(counter({ unsynced: 0 }), 60_000)).toBe(false);
  });

  test("on their own, more than 1% of the room left goes after fifteen seconds", () => {
    // limit 1000, nothing settled elsewhere: 1% of the room is 10
    expect(pushDue(counter({ unsynced: 12, syncedAt: 10_000 }), 24_900)).toBe(false);
    expect(pushDue(counter({ unsynced: 12, syncedAt: 10_000 }), 25_100)).toBe(true);
    // the room left counts what is settled in Redis, the other instances' leases and this one's use
    expect(pushDue(counter({ unsynced: 3, v: 500, others: 150, inflight: 148, syncedAt: 10_000 }), 25_100)).toBe(true);
  });

  test("a sliver of the room left (a limit far away) may wait a minute", () => {
    expect(pushDue(counter({ unsynced: 3, syncedAt: 10_000 }), 25_100)).toBe(false);
    expect(pushDue(counter({ unsynced: 9, syncedAt: 10_000 }), 69_900)).toBe(false);
    expect(pushDue(counter({ unsynced: 0.001, syncedAt: 10_000 }), 70_100)).toBe(true);
  });

  test("the waits scale with the configured push age", () => {
    expect(pushDue(counter({ unsynced: 3, syncedAt: 0 }), 3_900, 1_000)).toBe(false);
    expect(pushDue(counter({ unsynced: 3, syncedAt: 0 }), 4_100, 1_000)).toBe(true);
    expect(pushDue(counter({ unsynced: 30, syncedAt: 0 }), 1_100, 1_000)).toBe(true);
  });
});

describe("how much room a counter asks for", () => {
  test("far from the limit, at least the floor's worth of requests", () => {
    expect(roomWanted(counter({ check: { key: "k", limit: 1e9, reserve: 1, initial: 0, expiresAt: Infinity } }))).toBe(LEASE_FLOOR);
    // a budget counter: the floor is counted in requests of the usual size
    expect(roomWanted(counter({ check: { key: "k", limit: 1e9, reserve: 0.002, initial: 0, expiresAt: Infinity }, lastReserve: 0.002 }))).toBeCloseTo(LEASE_FLOOR * 0.002);
  });

  test("busy counters ask for their recent traffic instead", () => {
    // 2 requests per ms over the 300 ms a lease covers
    expect(roomWanted(counter({ check: { key: "k", limit: 1e9, reserve: 1, initial: 0, expiresAt: Infinity }, rate: 2 }))).toBe(600);
  });

  test("near the limit, never more than a share of the room left, so the floor cannot overshoot it", () => {
    // 100 left, two instances: each may hold a quarter
    expect(roomWanted(counter({ check: { key: "k", limit: 1000, reserve: 1, initial: 0, expiresAt: Infinity }, v: 900, peers: 1 }))).toBe(25);
    // less than one request's worth of share: nothing, the room goes back
    expect(roomWanted(counter({ check: { key: "k", limit: 1000, reserve: 1, initial: 0, expiresAt: Infinity }, v: 999, peers: 1 }))).toBe(0);
  });
});

describe("room taken on the lease, without asking Redis", () => {
  const slot = { key: "p:d:x:", limit: 1000, reserve: 1, initial: 0, expiresAt: Infinity, queued: true };
  const plain = { ...slot, queued: undefined };

  test("a request that fits takes it, unless another instance's request waits in a queue for the room", () => {
    const now = 100_000;
    expect(fitsHere(counter({}), slot, now)).toBe(true);
    // The last sync said a request waiting elsewhere came first, or another instance was just refused room here.
    expect(fitsHere(counter({ ahead: 1 }), slot, now)).toBe(false);
    expect(fitsHere(counter({ othersAskedAt: now - 100 }), slot, now)).toBe(false);
    expect(fitsHere(counter({ othersAskedAt: now - 1000 }), slot, now)).toBe(true);
    // A counter no request queues for (a key's limits: those refused are answered 429) keeps its lease as before.
    expect(fitsHere(counter({ ahead: 1, othersAskedAt: now - 100 }), plain, now)).toBe(true);
    // Nor does it take more than the lease holds.
    expect(fitsHere(counter({ inflight: 16 }), slot, now)).toBe(false);
  });
});
