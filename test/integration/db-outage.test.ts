import { expect, test } from "bun:test";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { MOCK_CONFIG, inProcessGateway } from "../helpers/gateway";
import { openDatabase } from "../../src/db";
import { reconnectDelaySeconds } from "../../src/db/postgres";
import { startPostgres, tempDir } from "../helpers/services";

test("reconnect delay: a tenth of a second more per failure, never more than one", () => {
  expect([0, 1, 5, 10, 40, 1000].map(reconnectDelaySeconds)).toEqual([0, 0.1, 0.5, 1, 1, 1]);
});

/**
 * An outage with queries failing all along (the spend writer tries every 250 ms) must not leave the
 * driver waiting many seconds before it connects again once the server is back.
 */
test("after a Postgres outage with many failed queries, queries succeed again within ~1 s of its return", async () => {
  const pg = await startPostgres();
  // One connection, so the wait measured is that connection's, whatever the pool would pick.
  const db = await openDatabase({ url: await pg.newDatabase(), dataDir: "", maxConnections: 1 });
  try {
    await db.query("select 1");
    await pg.stop();
    let failures = 0;
    for (const until = Date.now() + 6000; Date.now() < until;) {
      await db.query("select 1").catch(() => failures++);
      await Bun.sleep(100);
    }
    expect(failures).toBeGreaterThanOrEqual(6);
    await pg.start();
    // Retried every 100 ms as the spend writer does: a connection may still report the shutdown once.
    const t0 = performance.now();
    let row: { n: number } | undefined;
    while (!row && performance.now() - t0 < 30_000) {
      [row] = await db.query<{ n: number }>("select 1 as n").catch(async () => (await Bun.sleep(100), []));
    }
    const waited = performance.now() - t0;
    expect(row?.n).toBe(1);
    // With the driver's default backoff (3^failures / 100 s, capped at 20 s) this waited 4-20 s.
    expect(waited).toBeLessThan(2000);
  } finally {
    await db.close();
    await pg.stop();
  }
}, 60_000);

test("admin calls while Postgres is down answer 503 service_unavailable, not 500", async () => {
  const pg = await startPostgres();
  const db = await openDatabase({ url: await pg.newDatabase(), dataDir: "", maxConnections: 2 });
  const h = await inProcessGateway(MOCK_CONFIG, { db });
  try {
    const key = (await (await h.call("/key/generate", {})).json()) as any;
    await pg.stop();
    for (const [path, body] of [["/key/generate", {}], [`/key/info?key=${key.key}`, undefined], ["/key/block", { key: key.key }], ["/team/list", undefined]] as const) {
      const response = await h.call(path, body);
      const error = ((await response.json()) as any).error;
      expect(`${path} ${response.status} ${error?.type}`).toBe(`${path} 503 service_unavailable`);
    }
  } finally {
    await h.close();
    await db.close();
    await pg.stop();
  }
}, 60_000);

test("spend the database cannot take before shutdown is saved, and written at the next start exactly once, before it serves", async () => {
  const pg = await startPostgres();
  const url = await pg.newDatabase();
  const dataDir = tempDir("pending");
  const config = MOCK_CONFIG.replace("general_settings:\n", `general_settings:\n  data_dir: ${dataDir}\n`);
  const db = await openDatabase({ url, dataDir: "", maxConnections: 2 });
  const h = await inProcessGateway(config, { db });
  try {
    const key = (await (await h.call("/key/generate", {})).json()) as any;
    const costs: number[] = [];
    costs.push(Number((await h.chat(key.key)).headers.get("x-litellm-response-cost")));
    // A budget the three requests reach (the update writes the first request's spend).
    await h.call("/key/update", { key: key.key, max_budget: costs[0]! * 2.5 });
    for (let i = 0; i < 2; i++) costs.push(Number((await h.chat(key.key)).headers.get("x-litellm-response-cost")));
    await pg.stop();
    expect(await h.gateway.spend.close(500)).toBe(0);
    const saved = readdirSync(join(dataDir, "spend-pending"));
    expect(saved.length).toBe(1);
    await pg.start();
    // Pooled connections may each report the shutdown once.
    for (let ok = false; !ok;) ok = await db.query("select 1").then(() => true, () => Bun.sleep(100).then(() => false));
    // The next start writes it before it serves: the budget it reached holds at once.
    const again = await inProcessGateway(config, { db });
    expect(readdirSync(join(dataDir, "spend-pending"))).toEqual([]);
    const refused = await again.chat(key.key);
    expect(refused.status).toBe(400);
    expect(await refused.text()).toContain("over budget");
    const [row] = await db.query("select spend from keys where token = $1", [key.token]);
    expect(row!.spend).toBeCloseTo(costs.reduce((a, b) => a + b, 0), 12);
    const [logs] = await db.query("select count(*)::int as n from spend_logs where api_key = $1", [key.token]);
    expect(logs!.n).toBe(3);
    await again.close();
  } finally {
    await h.close().catch(() => {});
    await db.close();
    await pg.stop();
  }
}, 90_000);

test("allow_requests_on_db_unavailable: false refuses requests with 503 while spend cannot be written; true keeps serving", async () => {
  const pg = await startPostgres();
  const url = await pg.newDatabase();
  const strict = await inProcessGateway(MOCK_CONFIG.replace("general_settings:\n", "general_settings:\n  allow_requests_on_db_unavailable: false\n"), {
    db: await openDatabase({ url, dataDir: "", maxConnections: 2 }),
  });
  const lenient = await inProcessGateway(MOCK_CONFIG, { db: await openDatabase({ url, dataDir: "", maxConnections: 2 }) });
  try {
    const key = await strict.createKey();
    expect((await strict.chat(key)).status).toBe(200);
    expect((await lenient.chat(key)).status).toBe(200);
    await pg.stop();
    await strict.flush();
    await lenient.flush();
    const refused = await strict.chat(key);
    expect(refused.status).toBe(503);
    expect(((await refused.json()) as any).error.message).toContain("allow_requests_on_db_unavailable");
    expect((await lenient.chat(key)).status).toBe(200);
  } finally {
    await strict.gateway.spend.close(0).catch(() => 0);
    await lenient.gateway.spend.close(0).catch(() => 0);
    await strict.db.close();
    await lenient.db.close();
    await pg.stop();
  }
}, 90_000);
