import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import Redis from "ioredis";
import { redisKeys } from "../../src/redis";
import SYNC_SCRIPT from "../../src/redis/sync.lua" with { type: "text" };
import { type RedisServer, startRedis } from "../helpers/services";

// The sync script's queue across instances, on a real Redis: room on a counter whose requests wait for
// it (a deployment's slots) goes to the request that has waited longest, whichever instance it is on.

let server: RedisServer;
let admin: Redis;

beforeAll(async () => {
  server = await startRedis();
  admin = new Redis(server.url);
}, 120_000);
afterAll(async () => {
  admin.disconnect();
  await server.stop();
});

const key = redisKeys.counter("queue");

/**
 * One sync of the counter (a cap of `limit`) by `who`: what it has in use (its lease too), an admission
 * of one more when `ask`, and how long its waiting requests have waited (ms, oldest first). The reply:
 * admitted, lease, value, others' leases, peers, and how many requests waiting elsewhere came first.
 */
const sync = async (who: string, inUse: number, ask: boolean, waited: number[] = [], limit = 1, counter = key) => {
  const reply = (await admin.eval(SYNC_SCRIPT, 1, counter, who, redisKeys.alivePrefix, 0, limit, 0, inUse, inUse, ask ? 1 : 0, 0, 60_000, ask ? "1" : "0", 1, "0", 0, 1, waited.join(","))) as unknown[];
  return { admitted: reply[0] === 1, ahead: reply[5] };
};
/** When Redis has `who`'s waiting requests beginning to wait (ms, oldest first), or null. */
const waits = async (who: string, counter = key) => {
  const value = await admin.hget(counter, `w:${who}`);
  return value === null ? null : value.split(",").map(Number);
};
const since = async (who: string) => (await waits(who))?.[0] ?? null;
const redisNow = async () => {
  const [seconds, micros] = await admin.time();
  return Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
};

describe("a counter's queue across instances, in the sync script", () => {
  test("a freed slot goes to the instance whose request has waited longest; one that came later, or a newcomer, waits behind it", async () => {
    for (const who of ["q-a", "q-b", "q-c"]) await admin.set(redisKeys.alive(who), "1", "PX", 60_000);
    // q-a takes the slot; q-b's request has waited 50 ms, q-c's 80: both are refused, and Redis keeps when each began.
    expect((await sync("q-a", 0, true)).admitted).toBe(true);
    expect((await sync("q-b", 0, true, [50])).admitted).toBe(false);
    expect((await sync("q-c", 0, true, [80, 10])).admitted).toBe(false);
    const now = await redisNow();
    expect(Math.abs(now - 50 - (await since("q-b"))!)).toBeLessThan(100);
    expect((await since("q-c"))!).toBeLessThan((await since("q-b"))!);
    // q-a gives it back: three requests wait on the other two instances (none of its own does).
    expect((await sync("q-a", 0, false)).ahead).toBe(3);
    // q-b asks first, and is refused: q-c's came before its own. q-c then gets it.
    expect(await sync("q-b", 0, true, [55])).toEqual({ admitted: false, ahead: 1 });
    const taken = await sync("q-c", 0, true, [85, 15]);
    expect(taken.admitted).toBe(true);
    // q-c's next request is its oldest now, and comes after q-b's: one instance is ahead of it.
    expect(taken.ahead).toBe(1);
    expect((await since("q-c"))!).toBeGreaterThan((await since("q-b"))!);
    // q-c is done and its next request left; a newcomer on q-a waits behind q-b's, though the slot is free.
    expect((await sync("q-c", 0, false)).ahead).toBe(1);
    expect(await since("q-c")).toBeNull();
    expect(await sync("q-a", 0, true)).toEqual({ admitted: false, ahead: 1 });
    // q-b stops (its heartbeat lapses): its waiting goes with its leases, and the newcomer gets the slot.
    await admin.del(redisKeys.alive("q-b"));
    expect(await sync("q-a", 0, true)).toEqual({ admitted: true, ahead: 0 });
    expect(await since("q-b")).toBeNull();
  });

  test("counters no request waits on are decided as before: no instance is ahead, and none is kept waiting", async () => {
    const plain = redisKeys.counter("plain");
    await admin.set(redisKeys.alive("p-a"), "1", "PX", 60_000);
    const reply = (await admin.eval(SYNC_SCRIPT, 1, plain, "p-a", redisKeys.alivePrefix, 0, 10, 0, 0, 0, 1, 4, 60_000, "1", 1, "0", 0, 1, "")) as unknown[];
    expect(reply[0]).toBe(1);
    expect(reply[5]).toBe(0);
    expect(await admin.hkeys(plain)).not.toContain("w:p-a");
  });

  test("with a cap of 2, each request waiting elsewhere that came first is owed a slot, not just each instance", async () => {
    const pair = redisKeys.counter("pair");
    for (const who of ["m-a", "m-b"]) await admin.set(redisKeys.alive(who), "1", "PX", 60_000);
    // Both slots are taken on m-a; two requests wait there (90 and 70 ms), one on m-b (40 ms).
    expect((await sync("m-a", 2, false, [90, 70], 2, pair)).ahead).toBe(0);
    expect(await sync("m-b", 0, true, [40], 2, pair)).toEqual({ admitted: false, ahead: 2 });
    expect(await waits("m-a", pair)).toHaveLength(2);
    // m-a's two calls end: m-b asks first and is refused, both slots being owed to m-a's two.
    expect((await sync("m-a", 0, false, [95, 75], 2, pair)).ahead).toBe(0);
    expect(await sync("m-b", 0, true, [45], 2, pair)).toEqual({ admitted: false, ahead: 2 });
    expect((await sync("m-a", 0, true, [96, 76], 2, pair)).admitted).toBe(true);
    // One of m-a's is in, one still waits: one slot is left, and it is owed to that one.
    expect(await waits("m-a", pair)).toHaveLength(1);
    expect(await sync("m-b", 0, true, [46], 2, pair)).toEqual({ admitted: false, ahead: 1 });
    expect((await sync("m-a", 1, true, [77], 2, pair)).admitted).toBe(true);
    expect(await waits("m-a", pair)).toBeNull();
    // m-a's are both in: none is owed, and m-b's waits for a slot to come back.
    expect(await sync("m-b", 0, true, [47], 2, pair)).toEqual({ admitted: false, ahead: 0 });
    expect((await sync("m-a", 1, false, [], 2, pair)).ahead).toBe(1);
    expect((await sync("m-b", 0, true, [48], 2, pair)).admitted).toBe(true);
    expect(await waits("m-b", pair)).toBeNull();
  });
});
