import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { hashKey } from "../../src/auth/keys";
import { openDatabase } from "../../src/db";
import { silentLogger } from "../../src/log";
import { connectRedis, type RedisLink } from "../../src/redis";
import { MOCK_CONFIG, inProcessGateway } from "../helpers/gateway";
import { type RedisServer, sharedPostgres, startRedis } from "../helpers/services";

type Harness = Awaited<ReturnType<typeof inProcessGateway>>;
let redis: RedisServer;
let links: RedisLink[] = [];
let instances: Harness[] = [];

beforeAll(async () => {
  redis = await startRedis();
  const url = await (await sharedPostgres()).newDatabase();
  for (let i = 0; i < 3; i++) {
    const link = await connectRedis(redis.url, silentLogger);
    const db = await openDatabase({ url, dataDir: "" });
    const h = await inProcessGateway(MOCK_CONFIG, { db, counters: link.counters, broadcast: (m) => link.publish(m) });
    link.subscribe((m) => h.gateway.auth.invalidate(m));
    links.push(link);
    instances.push(h);
  }
}, 120_000);
afterAll(async () => {
  for (const h of instances) await h.close();
  for (const link of links) await link.close();
  await redis.stop();
});

const spread = <T>(n: number, fn: (h: Harness, i: number) => Promise<T>) => Promise.all(Array.from({ length: n }, (_, i) => fn(instances[i % 3]!, i)));

describe("three instances sharing Postgres and Redis", () => {
  test("an rpm limit holds across instances: exactly the limit is admitted", async () => {
    // The three rounds must fall in one 60 s window.
    if (Date.now() % 60_000 > 58_000) await Bun.sleep(60_000 - (Date.now() % 60_000) + 50);
    const key = await instances[0]!.createKey({ rpm_limit: 10 });
    let admitted = 0;
    for (let round = 0; round < 3; round++) {
      const statuses = await spread(10, (h) => h.chat(key).then((r) => r.status));
      admitted += statuses.filter((s) => s === 200).length;
      expect(statuses.every((s) => s === 200 || s === 429)).toBe(true);
    }
    expect(admitted).toBe(10);
  });

  test("a concurrent burst over three instances does not overspend by more than one request", async () => {
    const key = await instances[0]!.createKey({ max_budget: 0.0001 });
    const responses = await spread(200, (h) => h.chat(key, { max_tokens: 10 }, "slow"));
    const ok = responses.filter((r) => r.status === 200).length;
    await Promise.all(responses.map((r) => r.text()));
    for (const h of instances) await h.flush();
    const [{ spend }] = (await instances[0]!.db.query("select spend from keys where token = $1", [hashKey(key)])) as any;
    const perCall = spend / ok;
    expect(ok).toBeGreaterThanOrEqual(1);
    expect(ok).toBeLessThanOrEqual(Math.ceil(0.0001 / perCall) + 1);
  });

  test("max_parallel_requests holds across instances and slots come back", async () => {
    const key = await instances[0]!.createKey({ max_parallel_requests: 2 });
    const responses = await spread(6, (h) => h.chat(key, {}, "slow"));
    expect(responses.filter((r) => r.status === 200).length).toBe(2);
    await Promise.all(responses.map((r) => r.text()));
    // A freed slot held as another instance's lease comes back with that instance's next sync (10 ms).
    await Bun.sleep(50);
    const again = await spread(2, (h) => h.chat(key, {}, "slow"));
    expect(again.map((r) => r.status)).toEqual([200, 200]);
    await Promise.all(again.map((r) => r.text()));
  });

  test("a key blocked on one instance is refused by the others within a second", async () => {
    const key = await instances[0]!.createKey();
    expect((await instances[1]!.chat(key)).status).toBe(200);
    await instances[0]!.db.query("update keys set blocked = true where token = $1", [hashKey(key)]);
    instances[0]!.gateway.auth.invalidate({ kind: "key", token: hashKey(key) });
    links[0]!.publish({ kind: "key", token: hashKey(key) });
    await Bun.sleep(200);
    expect((await instances[1]!.chat(key)).status).toBe(403);
    expect((await instances[2]!.chat(key)).status).toBe(403);
  });

  test("a key blocked through the admin API of one instance is refused by the others within a second", async () => {
    const created = (await (await instances[0]!.call("/key/generate", {})).json()) as any;
    expect((await instances[2]!.chat(created.key)).status).toBe(200);
    await instances[0]!.call("/key/block", { key: created.key });
    await Bun.sleep(300);
    expect((await instances[1]!.chat(created.key)).status).toBe(403);
    expect((await instances[2]!.chat(created.key)).status).toBe(403);
  });

  test("a key blocked while Redis is down is refused by the others soon after Redis is back, not a cache TTL later", async () => {
    const created = (await (await instances[0]!.call("/key/generate", {})).json()) as any;
    // The key's creation is itself published; once it has arrived, instance 1 holds the key.
    await Bun.sleep(300);
    expect((await instances[1]!.chat(created.key)).status).toBe(200);
    await redis.stop();
    for (const until = Date.now() + 5000; links[0]!.status() !== "degraded" && Date.now() < until;) await Bun.sleep(20);
    await instances[0]!.call("/key/block", { key: created.key });
    expect((await instances[0]!.chat(created.key)).status).toBe(403);
    expect((await instances[1]!.chat(created.key)).status).toBe(200);
    await redis.start();
    let refused = false;
    for (const until = Date.now() + 5000; !refused && Date.now() < until;) {
      await Bun.sleep(100);
      refused = (await instances[1]!.chat(created.key)).status === 403 && (await instances[2]!.chat(created.key)).status === 403;
    }
    expect(refused).toBe(true);
  });

  test("Redis down: requests keep succeeding with per-instance limits, then syncing resumes", async () => {
    const key = await instances[0]!.createKey({ rpm_limit: 1000 });
    await redis.stop();
    const during = await spread(30, (h) => h.chat(key).then((r) => r.status));
    expect(during.every((s) => s === 200)).toBe(true);
    expect(links.some((l) => l.status() === "degraded")).toBe(true);
    await redis.start();
    await Bun.sleep(1500);
    const after = await spread(6, (h) => h.chat(key).then((r) => r.status));
    expect(after.every((s) => s === 200)).toBe(true);
    await Bun.sleep(100);
    expect(links.every((l) => l.status() === "connected")).toBe(true);
  });
});
