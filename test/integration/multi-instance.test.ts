import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { hashKey } from "../../src/auth/keys";
import { openDatabase } from "../../src/db";
import { silentLogger } from "../../src/log";
import { connectRedis, type RedisLink } from "../../src/redis";
import { MOCK_CONFIG, inProcessGateway } from "../helpers/gateway";
import { until, windowLeft } from "../helpers/until";
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
    link.subscribe((m) => h.gateway.invalidated(m));
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
    await windowLeft(2_000);
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
    // Streamed (400 ms, as read): the two admitted are in flight while the others are decided, waits for room included.
    const responses = await spread(6, (h) => h.chat(key, { stream: true }, "slow"));
    expect(responses.filter((r) => r.status === 200).length).toBe(2);
    await Promise.all(responses.map((r) => r.text()));
    // A freed slot held as another instance's lease comes back with that instance's next sync (10 ms).
    await Bun.sleep(50);
    const again = await spread(2, (h) => h.chat(key, {}, "slow"));
    expect(again.map((r) => r.status)).toEqual([200, 200]);
    await Promise.all(again.map((r) => r.text()));
  });

  test("near a budget, requests one after another on alternate instances are all admitted while spend is under it", async () => {
    // Each request's reservation (1,024 tokens, no max_tokens) is larger than the whole budget; what it costs is a few hundredths of it.
    const key = await instances[0]!.createKey({ max_budget: 0.0015 });
    const statuses: number[] = [];
    for (let i = 0; i < 12; i++) statuses.push((await instances[i % 2]!.chat(key)).status);
    expect(statuses).toEqual(Array(12).fill(200));
  });

  test("made again under the same id after a delete on another instance, a user, team, customer, member or custom key starts from nothing", async () => {
    const [a, b, c] = instances as [Harness, Harness, Harness];
    const admin = async (path: string, body: unknown) => {
      const response = await a.call(path, body);
      expect(`${path} ${response.status}`).toBe(`${path} 200`);
      return (await response.json()) as any;
    };
    const tiny = 1e-9;
    const setUp = async () => {
      await admin("/team/new", { team_id: "again-team", max_budget: tiny });
      await admin("/user/new", { user_id: "again-user", max_budget: tiny, auto_create_key: false });
      await admin("/team/member_add", { team_id: "again-team", member: { user_id: "again-user" }, max_budget_in_team: tiny });
      await admin("/customer/new", { user_id: "again-customer", max_budget: tiny });
      await admin("/key/generate", { key: "sk-again-custom-key", max_budget: tiny });
      await admin("/key/generate", { key: "sk-again-team-key", team_id: "again-team" });
      await admin("/key/generate", { key: "sk-again-user-key", user_id: "again-user" });
    };
    await setUp();
    // Each of them spends over its budget through instance b.
    for (const call of [() => b.chat("sk-again-custom-key"), () => b.chat("sk-again-team-key"), () => b.chat("sk-again-user-key"),
      () => b.chat("sk-1234", { user: "again-customer" })]) expect((await call()).status).toBe(200);
    expect((await b.chat("sk-again-custom-key")).status).toBe(400);
    expect((await b.chat("sk-1234", { user: "again-customer" })).status).toBe(400);
    // Deleted and made again through instance a, with some of b's spend unwritten.
    await b.flush();
    expect((await b.chat("sk-again-user-key")).status).toBe(400);
    await admin("/key/delete", { keys: ["sk-again-custom-key", "sk-again-team-key", "sk-again-user-key"] });
    await admin("/team/member_delete", { team_id: "again-team", user_id: "again-user" });
    await admin("/team/delete", { team_ids: ["again-team"] });
    await admin("/user/delete", { user_ids: ["again-user"] });
    await admin("/customer/delete", { user_ids: ["again-customer"] });
    await Bun.sleep(100);
    await setUp();
    // b held them all over budget in memory; c never served them (what Redis held is what counts there).
    expect((await b.chat("sk-again-custom-key")).status).toBe(200);
    expect((await c.chat("sk-1234", { user: "again-customer" })).status).toBe(200);
    expect((await b.chat("sk-again-user-key")).status).toBe(200);
    expect((await c.chat("sk-again-team-key")).status).toBe(200);
    for (const h of instances) await h.flush();
    // One request's spend each, nothing from before the delete.
    const one = Number((await a.db.query("select spend from keys where token = $1", [hashKey("sk-again-custom-key")]))[0]!.spend);
    expect(one).toBeGreaterThan(0);
    const [spends] = await a.db.query(
      `select (select spend from users where user_id = 'again-user') as u, (select spend from teams where team_id = 'again-team') as t,
              (select spend from end_users where user_id = 'again-customer') as c`);
    expect(spends).toEqual({ u: one, t: one, c: one });
  });

  test("made again under the same id after a delete, a key, team, user or customer starts with empty rate windows on every instance", async () => {
    const [a, b, c] = instances as [Harness, Harness, Harness];
    const admin = async (path: string, body: unknown) => expect(`${path} ${(await a.call(path, body)).status}`).toBe(`${path} 200`);
    const setUp = async () => {
      await admin("/team/new", { team_id: "window-team", rpm_limit: 2 });
      await admin("/user/new", { user_id: "window-user", rpm_limit: 2, auto_create_key: false });
      await admin("/customer/new", { user_id: "window-customer", rpm_limit: 2 });
      await admin("/key/generate", { key: "sk-window-key", rpm_limit: 2 });
      await admin("/key/generate", { key: "sk-window-team-key", team_id: "window-team" });
      await admin("/key/generate", { key: "sk-window-user-key", user_id: "window-user" });
    };
    const calls = [() => b.chat("sk-window-key"), () => b.chat("sk-window-team-key"), () => b.chat("sk-window-user-key"),
      () => b.chat("sk-1234", { user: "window-customer" })];
    // Both rounds in one 60 s window, or the windows would empty by themselves.
    await windowLeft(5_000);
    await setUp();
    for (const call of calls) {
      expect([(await call()).status, (await call()).status, (await call()).status]).toEqual([200, 200, 429]);
    }
    await admin("/key/delete", { keys: ["sk-window-key", "sk-window-team-key", "sk-window-user-key"] });
    await admin("/team/delete", { team_ids: ["window-team"] });
    await admin("/user/delete", { user_ids: ["window-user"] });
    await admin("/customer/delete", { user_ids: ["window-customer"] });
    await Bun.sleep(100);
    await setUp();
    // b counted two requests of each in this minute; c never served them.
    for (const call of calls) expect((await call()).status).toBe(200);
    expect((await c.chat("sk-window-key")).status).toBe(200);
    expect((await c.chat("sk-window-key")).status).toBe(429);
  });

  test("a key made with a regenerated key's old secret starts from nothing on every instance, and the regenerated key keeps its spend", async () => {
    const [a, b, c] = instances as [Harness, Harness, Harness];
    // Both rounds in one 60 s window, or the rpm counter would restart by itself.
    await windowLeft(5_000);
    expect((await a.call("/key/generate", { key: "sk-again-regenerated", max_budget: 1, rpm_limit: 2 })).status).toBe(200);
    expect((await b.chat("sk-again-regenerated")).status).toBe(200);
    expect((await c.chat("sk-again-regenerated")).status).toBe(200);
    await b.flush();
    const moved = (await (await a.call("/key/regenerate", { key: "sk-again-regenerated" })).json()) as any;
    expect(moved.spend).toBeGreaterThan(0);
    // c writes its spend under the old token when told of the change (it then reaches the regenerated key).
    await Bun.sleep(100);
    const again = await a.call("/key/generate", { key: "sk-again-regenerated", max_budget: moved.spend * 1.5, rpm_limit: 2 });
    expect(again.status).toBe(200);
    await Bun.sleep(100);
    expect((await b.chat("sk-again-regenerated")).status).toBe(200);
    expect((await c.chat("sk-again-regenerated")).status).toBe(200);
    for (const h of instances) await h.flush();
    // c's request under the old token, written after the change, reached the regenerated key.
    const info = (await (await a.call(`/key/info?key=${moved.key}`)).json()) as any;
    expect(info.info.spend).toBeCloseTo(moved.spend * 2, 12);
  });

  test("spend set on one instance is not undone by what another had not written yet", async () => {
    const [a, b] = instances as [Harness, Harness];
    const created = (await (await a.call("/key/generate", { max_budget: 1e-9 })).json()) as any;
    expect((await a.chat(created.key)).status).toBe(200);
    expect((await a.chat(created.key)).status).toBe(400);
    // a's spend is not written yet when b sets it to 0.
    expect((await b.call("/key/update", { key: created.key, spend: 0 })).status).toBe(200);
    await Bun.sleep(100);
    for (const h of instances) await h.flush();
    const info = (await (await b.call(`/key/info?key=${created.key}`)).json()) as any;
    expect(info.info.spend).toBe(0);
    expect((await a.chat(created.key)).status).toBe(200);
  });

  test("a budget added on one instance counts what another had spent and not written yet", async () => {
    const [a, b] = instances as [Harness, Harness];
    for (const [path, id, body] of [["/key/update", "key", {}], ["/user/update", "user", { user_id: "late-budget-u" }], ["/team/update", "team", { team_id: "late-budget-t" }]] as const) {
      if (id === "user") await a.call("/user/new", { user_id: "late-budget-u", auto_create_key: false });
      if (id === "team") await a.call("/team/new", { team_id: "late-budget-t" });
      const key = (await (await a.call("/key/generate", id === "key" ? {} : body)).json()) as any;
      // b's spend stays unwritten (its flush is on demand here) when a adds a budget it has already used up.
      let cost = 0;
      for (let i = 0; i < 4; i++) {
        const response = await b.chat(key.key);
        expect(response.status).toBe(200);
        cost = Number(response.headers.get("x-litellm-response-cost"));
      }
      expect(cost).toBeGreaterThan(0);
      const budget = { max_budget: cost * 2.5 };
      expect((await a.call(path, id === "key" ? { key: key.key, ...budget } : { ...body, ...budget })).status).toBe(200);
      await Bun.sleep(300);
      // Made from a stored spend that missed b's four requests, the counter would admit two more.
      expect(`${id} ${(await b.chat(key.key)).status}`).toBe(`${id} 400`);
      expect(`${id} ${(await a.chat(key.key)).status}`).toBe(`${id} 400`);
    }
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

  test("an instance does not act on its own invalidations heard back through Redis: what it read since stays held", async () => {
    const key = await instances[0]!.createKey();
    for (const h of instances) expect((await h.chat(key)).status).toBe(200);
    const token = hashKey(key);
    const holds = (h: Harness) => [...h.gateway.auth.heldPrincipals()].some((held) => held.value.key.token === token);
    expect(instances.map(holds)).toEqual([true, true, true]);
    links[0]!.publish({ kind: "key", token });
    await until("the other two forget the key", () => !holds(instances[1]!) && !holds(instances[2]!), 2000);
    // Heard by the other two, not by the one that published it (which applied its change when it made it).
    await Bun.sleep(200);
    expect(instances.map(holds)).toEqual([true, false, false]);
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
