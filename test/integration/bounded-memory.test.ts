import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { hashKey, keyName } from "../../src/auth/keys";
import type { LocalCounters } from "../../src/governance";
import { MOCK_CONFIG, inProcessGateway } from "../helpers/gateway";

type Harness = Awaited<ReturnType<typeof inProcessGateway>>;

/** The gauges of /metrics, by name. */
async function gauges(h: Harness): Promise<Record<string, number>> {
  const text = await (await h.call("/metrics")).text();
  const values: Record<string, number> = {};
  for (const line of text.split("\n")) {
    const match = /^(litegate_(?:cached_keys|cached_customers|counters|db_statements)) (\S+)$/.exec(line);
    if (match) values[match[1]!] = Number(match[2]);
  }
  return values;
}

describe("what the gateway holds per key is bounded by general_settings.key_cache_size", () => {
  const CACHE = 20;
  let h: Harness;
  let tight = "";
  beforeAll(async () => {
    h = await inProcessGateway(`${MOCK_CONFIG}  key_cache_size: ${CACHE}\n`);
  }, 60_000);
  afterAll(() => h.close());

  test("100 keys and 100 customers through a cache of 20: at most 20 of each are held, and every request is answered", async () => {
    const keys: string[] = [];
    for (let i = 0; i < 100; i++) keys.push(await h.createKey({ max_budget: 1, rpm_limit: 1000 }));
    for (const [i, key] of keys.entries()) {
      const response = await h.chat(key, { user: `customer-${i}` });
      expect(response.status).toBe(200);
    }
    const held = await gauges(h);
    expect(held.litegate_cached_keys).toBe(CACHE);
    expect(held.litegate_cached_customers).toBe(CACHE);
    // A key's budget and rpm counters, and its customer's budget: more than the cache holds, until they go idle.
    expect(held.litegate_counters).toBeGreaterThanOrEqual(100 * 2);
    // Evicted keys and customers load again from the database when they come back.
    for (const key of keys.slice(0, 30)) expect((await h.chat(key)).status).toBe(200);
    expect((await gauges(h)).litegate_cached_keys).toBe(CACHE);
  });

  test("a flood of unknown keys pushes no known key out of the cache, and costs the database a few queries, not one per request", async () => {
    const known: string[] = [];
    for (let i = 0; i < 5; i++) known.push(await h.createKey());
    for (const key of known) expect((await h.chat(key)).status).toBe(200);
    const statements = async () => (await gauges(h)).litegate_db_statements!;
    const before = await statements();
    const flood = Array.from({ length: 10 * CACHE }, (_, i) => `sk-nobody-${i}-${crypto.randomUUID()}`);
    const answers = await Promise.all(flood.map((key) => h.chat(key)));
    expect(answers.map((answer) => answer.status)).toEqual(flood.map(() => 401));
    const flooded = (await statements()) - before;
    expect(flooded).toBeGreaterThan(0);
    expect(flooded).toBeLessThanOrEqual(5); // looked up together: was one query per key (200)
    // Held as unknown for a second: asked again, the database is not asked.
    for (const key of flood.slice(0, 20)) expect((await h.chat(key)).status).toBe(401);
    // The known keys are still held: their requests send nothing to the database.
    const held = await statements();
    for (const key of known) expect((await h.chat(key)).status).toBe(200);
    expect(await statements()).toBe(held);
    // A key written after it was asked for is known once its write is announced (as the admin API does).
    h.clock.advance(1_001);
    const late = flood[0]!;
    expect((await h.chat(late)).status).toBe(401);
    await h.db.query("insert into keys (token, key_name) values ($1, $2)", [hashKey(late), keyName(late)]);
    h.gateway.auth.invalidate({ kind: "key", token: hashKey(late) });
    expect((await h.chat(late)).status).toBe(200);
  });

  test("a key evicted from the cache keeps the spend it has not written yet: its budget still holds", async () => {
    tight = await h.createKey({ max_budget: 0.0000001 });
    expect((await h.chat(tight)).status).toBe(200); // the spend now exceeds the budget; it is not flushed
    for (let i = 0; i < 2 * CACHE; i++) expect((await h.chat(await h.createKey())).status).toBe(200);
    const refused = await h.chat(tight);
    expect(refused.status).toBe(400);
    expect(((await refused.json()) as any).error.type).toBe("budget_exceeded");
  });

  test("counters gone quiet leave memory (rate windows when they end, budgets after ten idle minutes), and a budget counter made again counts the spend written before", async () => {
    expect((await h.call("/customer/new", { user_id: "tight-customer", max_budget: 0.0000001 })).status).toBe(200);
    expect((await h.chat(await h.createKey(), { user: "tight-customer" })).status).toBe(200); // now over its budget
    const counters = h.gateway.counters as LocalCounters;
    const before = (await gauges(h)).litegate_counters!;
    expect(before).toBeGreaterThan(0);
    h.clock.advance(61_000);
    counters.sweep();
    const afterWindow = (await gauges(h)).litegate_counters!;
    expect(afterWindow).toBeLessThan(before); // the rpm windows have ended
    expect(afterWindow).toBeGreaterThan(0); // budgets are still within their idle time
    h.clock.advance(10 * 60_000);
    counters.sweep();
    expect((await gauges(h)).litegate_counters).toBe(0);
    // The key and the customer are read again (their cached records are older than a counter's idle
    // time), so their new budget counters start from the spend written since: both are still refused.
    await h.flush();
    const refused = await h.chat(tight);
    expect(refused.status).toBe(400);
    expect(((await refused.json()) as any).error.type).toBe("budget_exceeded");
    const customer = await h.chat(await h.createKey(), { user: "tight-customer" });
    expect(customer.status).toBe(400);
    expect(((await customer.json()) as any).error.message).toMatch(/tight-customer/);
  });

  test("while spend cannot be written, idle budget counters stay: the database does not hold what they count yet", async () => {
    const counters = h.gateway.counters as LocalCounters;
    const key = await h.createKey({ max_budget: 0.0000001 });
    expect((await h.chat(key)).status).toBe(200); // over its budget, in the counter only
    // Writes fail for real: the log table is gone, so the whole batch is refused and stays queued.
    await h.db.query("alter table spend_logs rename to spend_logs_away");
    await h.flush();
    expect(h.gateway.spend.failing()).toBe(true);
    h.clock.advance(11 * 60_000);
    counters.sweep();
    const refused = await h.chat(key);
    expect(refused.status).toBe(400);
    expect(((await refused.json()) as any).error.type).toBe("budget_exceeded");

    await h.db.query("alter table spend_logs_away rename to spend_logs");
    await h.flush();
    expect(h.gateway.spend.failing()).toBe(false);
    expect(h.gateway.spend.backlog()).toBe(0);
    h.clock.advance(11 * 60_000);
    counters.sweep();
    expect((await gauges(h)).litegate_counters).toBe(0);
    expect((await h.chat(key)).status).toBe(400); // made again from the spend now written
  });
});
