/**
 * `bun bench/quick.ts [bare|master|pglite|pg|rate|scale]…`: a shorter run of chosen rows of `npm run bench`
 * against the binary as built (or the one named by LITEGATE_BIN, to compare two builds), for trying
 * a change (no Portkey).
 */
import { freePort, startPostgres, startRedis, tempDir } from "../test/helpers/services";
import { bunScript, fixedRate, startLitegate, waitHttp, wrk } from "./lib";
import { BENCH_BODY, GOVERNED_BODY, bearer, benchConfig, governedKey, json, scaleRun } from "./setup";

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const want = new Set(process.argv.slice(2).length ? process.argv.slice(2) : ["bare", "pglite", "pg"]);
const print = (name: string, r: { rps: number; p50: number; p99: number; non2xx: number; maxRssMb?: number }) =>
  process.stdout.write(`${name.padEnd(28)} ${r.rps.toFixed(0).padStart(7)} rps  p50 ${r.p50.toFixed(2)}  p99 ${r.p99.toFixed(2)}  non-2xx ${r.non2xx}  RSS ${r.maxRssMb ?? "-"}\n`);

/** Added latency at a fixed 1,000 requests/s over 10 s, after a second of warm-up, against the upstream alone. */
async function addedLatency(name: string, url: string, headers: Record<string, string>, body: string, pid: number) {
  await fixedRate(url, headers, body, 1000, 1);
  const direct = await fixedRate(`${upstream}/chat/completions`, json, BENCH_BODY, 1000, 10);
  const through = await fixedRate(url, headers, body, 1000, 10, pid);
  const f = (n: number) => n.toFixed(2);
  process.stdout.write(`${name} at 1000 req/s: added p50 ${f(through.p50 - direct.p50)} p99 ${f(through.p99 - direct.p99)} p99.9 ${f(through.p999 - direct.p999)}, CPU ${through.cpuUsPerRequest} µs/request\n`);
}

const upstreamPort = await freePort();
await bunScript("bench/upstream.ts", [String(upstreamPort)]);
const upstream = `http://127.0.0.1:${upstreamPort}/v1`;
await waitHttp(`${upstream}/models`);
if (want.has("bare")) {
  const port = await freePort();
  const bare = await bunScript("bench/bare-proxy.ts", [String(port), `http://127.0.0.1:${upstreamPort}`]);
  await waitHttp(`http://127.0.0.1:${port}/v1/models`);
  print("bare Bun proxy", await wrk(`http://127.0.0.1:${port}/v1/chat/completions`, json, BENCH_BODY, SECONDS));
  if (want.has("rate")) await addedLatency("bare proxy", `http://127.0.0.1:${port}/v1/chat/completions`, json, BENCH_BODY, bare.pid);
}
if (want.has("pglite") || want.has("master")) {
  const lite = await startLitegate(benchConfig(upstream), tempDir("quick"));
  process.stdout.write(`start ${lite.startMs.toFixed(0)} ms\n`);
  await waitHttp(`${lite.url}/health/readiness`, 30_000, undefined, 200); // the database opens behind the first answers
  if (want.has("master")) print("master key (PGlite)", await wrk(`${lite.url}/v1/chat/completions`, bearer("sk-1234"), BENCH_BODY, SECONDS, lite.proc.pid));
  if (want.has("pglite")) {
    const key = await governedKey(lite.url);
    print("governed (PGlite)", await wrk(`${lite.url}/v1/chat/completions`, bearer(key), GOVERNED_BODY, SECONDS, lite.proc.pid));
  }
  await lite.stop();
}
if (want.has("pg")) {
  const pg = await startPostgres();
  const redis = await startRedis();
  const gateway = await startLitegate(benchConfig(upstream, { database_url: await pg.newDatabase(), redis_url: redis.url }));
  const key = await governedKey(gateway.url);
  print("governed (Postgres+Redis)", await wrk(`${gateway.url}/v1/chat/completions`, bearer(key), GOVERNED_BODY, SECONDS, gateway.proc.pid));
  if (want.has("rate")) {
    await Bun.sleep(3000); // the spend of the wrk run is written first
    await addedLatency("governed (Postgres+Redis)", `${gateway.url}/v1/chat/completions`, bearer(key), GOVERNED_BODY, gateway.proc.pid);
  }
  await gateway.stop();
  if (want.has("scale")) {
    const scale = await scaleRun(upstream, await pg.newDatabase(), redis.url, SECONDS);
    print("1M keys, 1 in use", scale.oneKey);
    print("1M keys, 10k in use", scale);
    process.stdout.write(`  10k in use / 1 in use: ${scale.ratio}; alternated rounds ${scale.rounds.oneKey.join(", ")} / ${scale.rounds.tenThousand.join(", ")}: ${scale.rounds.ratio}\n`);
    process.stdout.write(`  per request: ${scale.roundTrips.postgres_per_request} Postgres statements, ${scale.roundTrips.redis_round_trips_per_request} Redis round trips, ${scale.roundTrips.counter_syncs_per_request} counters synced\n`);
  }
  await redis.stop();
  await pg.stop();
}
process.exit(0);
