import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import OpenAI from "openai";
import postgres from "postgres";
import { type RunningGateway, startBinary } from "../helpers/binary";
import { governedKey, roundTrips } from "../helpers/load";
import { type RedisServer, sharedPostgres, startRedis, tempDir } from "../helpers/services";
import { until } from "../helpers/until";
import { type Upstream, startUpstream } from "../helpers/upstream";

/**
 * The hot path touches neither Postgres nor Redis per request: with every check of a governed key on,
 * what the binary sends to them follows its flushes and syncs, however many requests there are.
 */

const IN = 0.000001;
const OUT = 0.000002;
const COST = 10 * IN + 20 * OUT; // the test upstream reports 10 prompt and 20 completion tokens
const REQUESTS = 2000;

let upstream: Upstream;
let redis: RedisServer;

beforeAll(async () => {
  upstream = await startUpstream();
  redis = await startRedis();
}, 120_000);
afterAll(async () => {
  upstream.stop();
  await redis.stop();
});

const config = (store: Record<string, string>) => ({
  model_list: [{ model_name: "m", litellm_params: { model: "openai/m", api_base: upstream.url, input_cost_per_token: IN, output_cost_per_token: OUT } }],
  general_settings: { master_key: "sk-1234", ...store },
});

/** `count` chat completions through the openai client, `concurrency` at a time, each as the customer; every fourth streamed. */
async function traffic(client: OpenAI, count: number, concurrency: number): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const streamed = next++ % 4 === 3;
      const request = { model: "m", user: "hot-customer", messages: [{ role: "user" as const, content: "hi" }] };
      if (streamed) {
        let text = "";
        for await (const chunk of await client.chat.completions.create({ ...request, stream: true })) text += chunk.choices[0]?.delta?.content ?? "";
        expect(text).toBe("Hello from the test upstream");
      } else {
        const answer = await client.chat.completions.create(request);
        expect(answer.usage?.total_tokens).toBe(30);
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
}

describe("the hot path sends nothing per request", () => {
  let gateway: RunningGateway | null = null;
  afterAll(async () => {
    await gateway?.stop();
  });

  test("Postgres + Redis, plain and streamed: statements and round trips follow flushes and syncs, and every request's spend is stored", async () => {
    const dbUrl = await (await sharedPostgres()).newDatabase();
    const shared = (gateway = await startBinary({ config: config({ database_url: dbUrl, redis_url: redis.url }) }));
    const key = await governedKey(shared.url, { model: "m", prefix: "hot" });
    const client = new OpenAI({ apiKey: key, baseURL: `${shared.url}/v1`, maxRetries: 0 });
    await traffic(client, 20, 4); // the key, the customer and the first leases are loaded
    const before = await roundTrips(shared.url);
    await traffic(client, REQUESTS, 32);
    const sql = postgres(dbUrl, { onnotice: () => {} });
    try {
      const total = REQUESTS + 20;
      await until("every request's spend in Postgres", async () => {
        const [row] = await sql`select count(*)::int as n from spend_logs where end_user = 'hot-customer'`;
        return row!.n === total;
      }, 10_000, 100);
      // Counted up to the flush that stored the last request: however fast the traffic ran, at least one
      // flush falls in the window.
      const after = await roundTrips(shared.url);
      const statements = after.db - before.db;
      const redisTrips = after.redis - before.redis;
      // One statement or one round trip per request would be 2,000 of each; flushes (every 250 ms, two
      // statements each between begin and commit) and syncs for room are a few dozen at most (8–10
      // statements and 26–39 round trips here). The bound leaves room for a machine several times slower, whose run lasts longer
      // and so holds more flushes.
      expect(statements).toBeGreaterThan(0);
      expect(statements).toBeLessThan(REQUESTS / 4);
      expect(redisTrips).toBeGreaterThan(0);
      expect(redisTrips).toBeLessThan(REQUESTS / 4);
      // Each request touches many counters (the key's budget, rpm, tpm and parallel slots, its team's,
      // its membership's, its customer's, its model budget): syncing them per request would be tens of
      // thousands of counter syncs. Here 136–140, a few per counter and second.
      const synced = after.counterSyncs - before.counterSyncs;
      expect(synced).toBeGreaterThan(0);
      expect(synced).toBeLessThan(REQUESTS / 4);

      const [keyRow] = await sql`select spend from keys where key_alias is null and user_id = 'hot-user'`;
      const [customer] = await sql`select spend from end_users where user_id = 'hot-customer'`;
      const [member] = await sql`select spend from team_memberships where user_id = 'hot-user'`;
      expect(keyRow!.spend).toBeCloseTo(total * COST, 9);
      expect(customer!.spend).toBeCloseTo(total * COST, 9);
      expect(member!.spend).toBeCloseTo(total * COST, 9);
    } finally {
      await sql.end();
    }
  }, 120_000);

  test("PGlite: statements follow flushes, not requests", async () => {
    await gateway?.stop();
    const lite = (gateway = await startBinary({ config: config({ data_dir: `${tempDir("hot")}/data` }) }));
    const key = await governedKey(lite.url, { model: "m", prefix: "hot" });
    const client = new OpenAI({ apiKey: key, baseURL: `${lite.url}/v1`, maxRetries: 0 });
    await traffic(client, 20, 4);
    const before = await roundTrips(lite.url);
    await traffic(client, REQUESTS, 32);
    // Counted up to the flush that wrote the last request (every 500 ms here): traffic quicker than that
    // would otherwise fall between two flushes and count none.
    await until("every request's spend written", async () => (await roundTrips(lite.url)).spendBacklog === 0, 10_000, 50);
    const statements = (await roundTrips(lite.url)).db - before.db;
    expect(statements).toBeGreaterThan(0);
    expect(statements).toBeLessThan(REQUESTS / 4);
    const response = await fetch(`${lite.url}/key/info?key=${encodeURIComponent(key)}`, { headers: { authorization: "Bearer sk-1234" } });
    expect(((await response.json()) as any).info.spend).toBeCloseTo((REQUESTS + 20) * COST, 9);
  }, 120_000);
});
