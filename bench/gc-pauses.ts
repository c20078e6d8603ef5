/**
 * `bun bench/gc-pauses.ts`: the collector's young pauses at a fixed 1,000 requests/s, read from the
 * runtime's own log (`BUN_JSC_logGC`), for the bare proxy as it is, the bare proxy given one part of
 * what the gateway carries at a time (its CPU per request, compiled code, object shapes, plain
 * objects, its packages: see bench/gc-ballast.ts), and the binary on Postgres + Redis (a path it
 * answers 404 to, the master key, a governed key, the 404 path again once the request path's code is
 * compiled). Each row: 2 s of warm-up, then 8 s measured. Uses the binary as built (or LITEGATE_BIN).
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { freePort, startPostgres, startRedis, tempDir } from "../test/helpers/services";
import { bunScript, fixedRate, median, startLitegate, waitHttp } from "./lib";
import { BENCH_BODY, GOVERNED_BODY, bearer, benchConfig, governedKey, json } from "./setup";

const RATE = 1000;
const SECONDS = 8;
const LOG = { BUN_JSC_logGC: "2" };
/** The runtime's logs: kept in GC_LOGS when that names a directory, else thrown away with the run. */
const logs = process.env.GC_LOGS ?? tempDir("gc-pauses");

interface Target { url: string; headers: Record<string, string>; body: string; pid: number }

/** Young and full collections in a `BUN_JSC_logGC=2` log: how many, their pauses, the heap when each began. */
function collections(log: string) {
  const young: number[] = [];
  const heapMb: number[] = [];
  let full = 0;
  for (const match of log.matchAll(/START M (\d+)kb => (Eden|Full)Collection[\s\S]*?p=([\d.]+)ms/g)) {
    if (match[2] === "Full") full++;
    else young.push(Number(match[3]));
    heapMb.push(Number(match[1]) / 1024);
  }
  return { young, full, heapMb };
}

/** One row: the run's latency and CPU, and the collections during it (the warm-up's left out). */
async function row(name: string, logFile: string, target: Target) {
  await fixedRate(target.url, target.headers, target.body, RATE, 2);
  const before = readFileSync(logFile, "utf8").length;
  const run = await fixedRate(target.url, target.headers, target.body, RATE, SECONDS, target.pid);
  const { young, full, heapMb } = collections(readFileSync(logFile, "utf8").slice(before));
  const f = (n: number) => n.toFixed(2);
  process.stdout.write(
    `${name.padEnd(44)} p50 ${f(run.p50).padStart(5)}  p99 ${f(run.p99).padStart(5)}  CPU ${String(run.cpuUsPerRequest).padStart(4)} µs` +
    `  young ${String(young.length).padStart(3)} (median ${f(median(young))}, max ${f(Math.max(...young))} ms)` +
    `  full ${full}  heap ${f(median(heapMb))} MB\n`,
  );
}

const upstreamPort = await freePort();
await bunScript("bench/upstream.ts", [String(upstreamPort)]);
const upstream = `http://127.0.0.1:${upstreamPort}/v1`;
await waitHttp(`${upstream}/models`);

const bareRows: [string, Record<string, string>][] = [
  ["bare proxy", {}],
  ["bare proxy, 150 µs of busy wait a request", { GC_SPIN_US: "150" }],
  ["bare proxy, 10,000 functions called once", { GC_BALLAST: "called:10000" }],
  ["bare proxy, 10,000 functions never called", { GC_BALLAST: "uncalled:10000" }],
  ["bare proxy, 10,000 object shapes", { GC_BALLAST: "shapes:10000" }],
  ["bare proxy, 200,000 objects of one shape", { GC_BALLAST: "objects:200000" }],
  ["bare proxy, the gateway's packages imported", { GC_IMPORTS: "elysia,@elysiajs/swagger,postgres,ioredis,yaml,prom-client,@pydantic/genai-prices,@sinclair/typebox" }],
];
for (const [i, [name, env]] of bareRows.entries()) {
  const port = await freePort();
  const logFile = join(logs, `bare-${i}.log`);
  const proc = await bunScript("bench/bare-proxy.ts", [String(port), `http://127.0.0.1:${upstreamPort}`], { ...LOG, ...env }, logFile, ["--preload", join(import.meta.dir, "gc-ballast.ts")]);
  await waitHttp(`http://127.0.0.1:${port}/v1/models`);
  await row(name, logFile, { url: `http://127.0.0.1:${port}/v1/chat/completions`, headers: json, body: BENCH_BODY, pid: proc.pid });
  proc.kill();
  await proc.exited;
}

const pg = await startPostgres();
const redis = await startRedis();
const logFile = join(logs, "litegate.log");
const gateway = await startLitegate(benchConfig(upstream, { database_url: await pg.newDatabase(), redis_url: redis.url }), undefined, undefined, { env: LOG, stderrFile: logFile });
const key = await governedKey(gateway.url);
const pid = gateway.proc.pid;
await row("litegate (Postgres+Redis), a 404 path", logFile, { url: `${gateway.url}/no-such-path`, headers: json, body: BENCH_BODY, pid });
await row("litegate (Postgres+Redis), master key", logFile, { url: `${gateway.url}/v1/chat/completions`, headers: bearer("sk-1234"), body: BENCH_BODY, pid });
await row("litegate (Postgres+Redis), governed key", logFile, { url: `${gateway.url}/v1/chat/completions`, headers: bearer(key), body: GOVERNED_BODY, pid });
await row("litegate (Postgres+Redis), the 404 path again", logFile, { url: `${gateway.url}/no-such-path`, headers: json, body: BENCH_BODY, pid });
await gateway.stop();
await redis.stop();
await pg.stop();
process.exit(0);
