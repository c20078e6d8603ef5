/**
 * `bun bench/keys-memory.ts`: the gateway's RSS as it comes to hold many keys — after its start, after
 * one request on one key, after one request on each of `KEYS` keys (default 10,000, sent `BATCH` at a
 * time, default 50), 3 s later, then under 6 s of wrk on one key, on all of them, and again. The scale
 * rows of `npm run bench` hold 10,000 keys; this shows what each stage adds. `SAME_KEY=1` sends the
 * loading requests all on one key (what the requests themselves cost), `NO_REDIS=1` runs without Redis
 * (what the keys' shared counters cost), `NO_WRK=1` stops after loading. It also prints the round trips the
 * loading took. LITEGATE_BIN names another build.
 */
import postgres from "postgres";
import { freePort, startPostgres, startRedis, tempDir } from "../test/helpers/services";
import { bunScript, roundTrips, rssMb, startLitegate, waitHttp, wrk } from "./lib";
import { BENCH_BODY, bearer, benchConfig } from "./setup";

const KEYS = Number(process.env.KEYS ?? 10_000);
const BATCH = Number(process.env.BATCH ?? 50);
const keyOf = (i: number) => `sk-mem-${process.env.SAME_KEY ? 1 : i}`;

const upstreamPort = await freePort();
await bunScript("bench/upstream.ts", [String(upstreamPort)]);
const upstream = `http://127.0.0.1:${upstreamPort}/v1`;
await waitHttp(`${upstream}/models`);
const pg = await startPostgres();
const redis = await startRedis();
const databaseUrl = await pg.newDatabase();
const gateway = await startLitegate(
  benchConfig(upstream, { database_url: databaseUrl, ...(process.env.NO_REDIS ? {} : { redis_url: redis.url }), key_cache_size: 2 * KEYS }),
  tempDir("keys-memory"),
);
const stage = (name: string) => process.stdout.write(`${name.padEnd(40)} RSS ${rssMb(gateway.proc.pid).toFixed(0)} MB\n`);
try {
  const sql = postgres(databaseUrl, { onnotice: () => {} });
  await sql`insert into keys (token, key_name, max_budget, rpm_limit, tpm_limit)
            select encode(sha256(convert_to('sk-mem-' || i, 'UTF8')), 'hex'), 'sk-...' || i, 1e9, 1000000000, 1000000000
            from generate_series(1, ${KEYS}) as i`;
  await sql.end();
  const send = (key: string) =>
    fetch(`${gateway.url}/v1/chat/completions`, { method: "POST", headers: bearer(key), body: BENCH_BODY }).then((r) => r.arrayBuffer());
  stage("started");
  await send(keyOf(1));
  stage("one request");
  const before = await roundTrips(gateway.url);
  for (let i = 1; i <= KEYS; i += BATCH) await Promise.all(Array.from({ length: Math.min(BATCH, KEYS - i + 1) }, (_, j) => send(keyOf(i + j))));
  const after = await roundTrips(gateway.url);
  stage(`${KEYS} requests${process.env.SAME_KEY ? " on one key" : ", one per key"}, ${BATCH} at a time`);
  process.stdout.write(`  ${after.redis - before.redis} Redis round trips, ${after.counterSyncs - before.counterSyncs} counters synced, ${after.db - before.db} Postgres statements\n`);
  await Bun.sleep(3000);
  stage("3 s later");
  // Requests formatted once when wrk starts, as the bench's scale rows do.
  const script = (n: number) =>
    `wrk.method = "POST"\nwrk.body = ${JSON.stringify(BENCH_BODY)}\nwrk.headers["Content-Type"] = "application/json"\n` +
    `local requests = {}\ninit = function(args)\n  for i = 1, ${n} do\n` +
    `    wrk.headers["Authorization"] = "Bearer sk-mem-" .. i\n    requests[i] = wrk.format()\n  end\nend\n` +
    `request = function()\n  return requests[math.random(1, ${n})]\nend\n`;
  for (const n of process.env.NO_WRK ? [] : [1, KEYS, 1, KEYS]) {
    const result = await wrk(`${gateway.url}/v1/chat/completions`, {}, BENCH_BODY, 6, gateway.proc.pid, script(n));
    stage(`6 s of wrk over ${n} key${n === 1 ? "" : "s"}: ${result.rps.toFixed(0)} req/s, peak ${result.maxRssMb} MB`);
  }
} finally {
  await gateway.stop();
  await redis.stop();
  await pg.stop();
}
process.exit(0);
