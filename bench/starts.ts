/**
 * Start times of one or more builds, alternated: `BINS=./litegate,/tmp/other N=7 bun bench/starts.ts`.
 * Each round starts every build on a new data directory (cold: until the master key's first chat
 * completion is answered 200), gives it a governed key used once, stops it, and starts it again on
 * the same directory (warm: until that key's first completion is answered). Prints each start and the medians.
 */
import { freePort, tempDir } from "../test/helpers/services";
import { ROOT, bunScript, median, startLitegate, waitHttp } from "./lib";
import { BENCH_BODY, GOVERNED_BODY, bearer, benchConfig, governedKey } from "./setup";

const bins = (process.env.BINS ?? `${ROOT}/litegate`).split(",");
const rounds = Number(process.env.N ?? 5);
const port = await freePort();
await bunScript("bench/upstream.ts", [String(port)]);
const upstream = `http://127.0.0.1:${port}/v1`;
await waitHttp(`${upstream}/models`);

const times: Record<string, Record<string, number[]>> = {};
for (let round = 0; round < rounds; round++) {
  for (const bin of bins) {
    process.env.LITEGATE_BIN = bin;
    const dir = tempDir("starts");
    const config = benchConfig(upstream);
    const cold = await startLitegate(config, dir, { headers: bearer("sk-1234"), body: BENCH_BODY });
    const key = await governedKey(cold.url);
    const used = await fetch(`${cold.url}/v1/chat/completions`, { method: "POST", headers: bearer(key), body: GOVERNED_BODY });
    if (used.status !== 200) throw new Error(`governed key refused: ${used.status}`);
    await cold.stop();
    const warm = await startLitegate(config, dir, { headers: bearer(key), body: GOVERNED_BODY });
    await warm.stop();
    const row = (times[bin] ??= {});
    const seen = { "cold liveliness": cold.startMs, "cold served": cold.servedMs!, "warm liveliness": warm.startMs, "warm served": warm.servedMs! };
    for (const [name, ms] of Object.entries(seen)) (row[name] ??= []).push(Math.round(ms));
  }
}
for (const [bin, row] of Object.entries(times)) {
  process.stdout.write(`${bin}\n`);
  for (const [name, values] of Object.entries(row)) process.stdout.write(`  ${name.padEnd(16)} median ${String(median(values)).padStart(5)} ms   (${values.join(" ")})\n`);
}
process.exit(0);
