import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import Redis from "ioredis";
import { hashKey } from "../../src/auth/keys";
import { openDatabase } from "../../src/db";
import { counterKeys, scopes } from "../../src/governance/keys";
import { silentLogger } from "../../src/log";
import { connectRedis, type RedisLink, redisKeys } from "../../src/redis";
import { type Harness, MOCK_CONFIG, inProcessGateway } from "../helpers/gateway";
import { type RedisServer, sharedPostgres, startRedis } from "../helpers/services";
import { until } from "../helpers/until";

/** Two gateways on one Redis and one Postgres: room one of them holds and does not use. */
let redis: RedisServer;
const links: RedisLink[] = [];
const gateways: Harness[] = [];

beforeAll(async () => {
  redis = await startRedis();
  const url = await (await sharedPostgres()).newDatabase();
  for (let i = 0; i < 2; i++) {
    const link = await connectRedis(redis.url, silentLogger);
    const db = await openDatabase({ url, dataDir: "" });
    const h = await inProcessGateway(MOCK_CONFIG, { db, counters: link.counters, broadcast: (m) => link.publish(m) });
    link.subscribe((m) => h.gateway.invalidated(m));
    links.push(link);
    gateways.push(h);
  }
}, 120_000);
afterAll(async () => {
  redis.resume();
  for (const h of gateways) await h.close();
  for (const link of links) await link.close();
  await redis.stop();
});

/** `n` requests at once; "slow" ones stream for 400 ms (their slots held all along). */
const statuses = (h: Harness, key: string, n: number, model = "mock") =>
  Promise.all(Array.from({ length: n }, () => h.chat(key, model === "slow" ? { stream: true } : {}, model).then(async (r) => (await r.text(), r.status))));
const count = (all: number[], status: number) => all.filter((s) => s === status).length;

/** Waits for a rate window with at least `ms` left, so a test's requests fall in one. */
async function windowWithRoom(ms: number): Promise<void> {
  if (60_000 - (Date.now() % 60_000) < ms) await Bun.sleep(60_000 - (Date.now() % 60_000) + 50);
}

describe("room an instance holds and does not use goes to the instance that needs it", () => {
  test("max_parallel_requests: slots one instance used and finished with are free on the other", async () => {
    const [gw1, gw2] = gateways as [Harness, Harness];
    for (const limit of [10, 4]) {
      const key = await gw1.createKey({ max_parallel_requests: limit });
      for (let burst = 0; burst < 3; burst++) expect(count(await statuses(gw1, key, limit), 200)).toBe(limit);
      await Bun.sleep(100);
      // Every slot is free: gw2 gets all of them at once, and only a request beyond them is refused.
      const all = await statuses(gw2, key, limit + 2, "slow");
      expect(`limit ${limit}: ${count(all, 200)} admitted, ${count(all, 429)} refused`).toBe(`limit ${limit}: ${limit} admitted, 2 refused`);
    }
  }, 30_000);

  test("rpm_limit: the other instance gets what is left of the window, not what the first one leaves unleased", async () => {
    const [gw1, gw2] = gateways as [Harness, Harness];
    await windowWithRoom(15_000);
    const key = await gw1.createKey({ rpm_limit: 40 });
    expect(count(await statuses(gw1, key, 10), 200)).toBe(10);
    await Bun.sleep(100);
    const admitted: number[] = [];
    for (let i = 0; i < 35; i++) admitted.push((await gw2.chat(key)).status);
    expect(count(admitted, 200)).toBe(30);
    expect(admitted.slice(30)).toEqual(Array(5).fill(429));
  }, 30_000);

  test("an idle instance gives back the room it holds near a limit within a fraction of a second, unasked", async () => {
    const [gw1] = gateways as [Harness, Harness];
    const key = await gw1.createKey({ max_parallel_requests: 10 });
    for (let burst = 0; burst < 3; burst++) expect(count(await statuses(gw1, key, 10), 200)).toBe(10);
    const finished = Date.now();
    const admin = new Redis(redis.url);
    try {
      const counter = redisKeys.counter(counterKeys.parallel(scopes.key(hashKey(key))));
      const leases = async () => Object.entries(await admin.hgetall(counter)).filter(([field]) => field.startsWith("l:")).map(([, lease]) => Number(lease));
      expect((await leases()).length).toBe(1);
      await until("gw1's lease back to nothing", async () => (await leases()).every((lease) => lease === 0), 1500, 10);
      expect(Date.now() - finished).toBeLessThan(1000);
    } finally {
      admin.disconnect();
    }
  });
});

describe("Redis hanging (connections open, no answers)", () => {
  test("each instance still enforces the limit on its own", async () => {
    const [gw1, gw2] = gateways as [Harness, Harness];
    await windowWithRoom(15_000);
    const key = await gw1.createKey({ rpm_limit: 10 });
    expect((await gw1.chat(key)).status).toBe(200);
    expect((await gw2.chat(key)).status).toBe(200);
    redis.pause();
    let admitted = 2;
    try {
      for (const end = Date.now() + 5000; Date.now() < end;) {
        const all = await Promise.all([statuses(gw1, key, 2), statuses(gw2, key, 2)]);
        admitted += count(all.flat(), 200);
        await Bun.sleep(50);
      }
    } finally {
      redis.resume();
    }
    // Alone, each instance admits at most the limit (both together 20); not every request a sync in flight hid.
    expect(admitted).toBeLessThanOrEqual(20);
  }, 30_000);
});

describe("Redis hanging, then answering again", () => {
  test("what was pushed while it hung is counted once: the shared budget agrees with the stored spend", async () => {
    const [gw1] = gateways as [Harness, Harness];
    const probe = await gw1.chat(await gw1.createKey());
    const cost = Number(probe.headers.get("x-litellm-response-cost"));
    expect(cost).toBeGreaterThan(0);
    // Room for 200 requests: near enough to its limit that settled amounts go to Redis within 100 ms.
    const key = await gw1.createKey({ max_budget: 200 * cost });
    for (let i = 0; i < 3; i++) expect((await gw1.chat(key)).status).toBe(200);
    // Longer than a command's timeout: syncs carrying settled amounts time out and go again, and Redis
    // runs every one of them once it answers.
    redis.pause();
    const seen: boolean[] = [];
    try {
      const start = Date.now();
      for (const end = start + 3000; Date.now() < end;) {
        expect((await gw1.chat(key)).status).toBe(200);
        // Once its first commands timed out, the instance knows Redis does not answer (a heartbeat whose
        // commands timed out is no answer), and sends nothing more than heartbeats until it does.
        if (Date.now() - start > 1500) seen.push(links[0]!.counters.isDegraded);
        await Bun.sleep(50);
      }
    } finally {
      redis.resume();
    }
    expect(seen.length).toBeGreaterThan(10);
    expect(seen.filter((degraded) => !degraded)).toEqual([]);
    for (let i = 0; i < 3; i++) expect((await gw1.chat(key)).status).toBe(200);
    const admin = new Redis(redis.url);
    try {
      const counter = redisKeys.counter(counterKeys.budget(scopes.key(hashKey(key)), null));
      await gw1.flush();
      const [row] = await gw1.db.query("select spend::float8 as spend from keys where token = $1", [hashKey(key)]);
      // The amounts settled here reach Redis with the next syncs.
      await until("the shared value has every settled amount", async () => Number(await admin.hget(counter, "v")) >= row!.spend - 1e-12, 5000, 20);
      await Bun.sleep(300);
      expect(Number(await admin.hget(counter, "v"))).toBeCloseTo(row!.spend, 12);
    } finally {
      admin.disconnect();
    }
  }, 30_000);
});
