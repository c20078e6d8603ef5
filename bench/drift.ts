/**
 * `npm run bench:drift`: three litegate instances sharing one Redis and one Postgres; a key with an
 * rpm limit receives a fixed request rate spread over the instances; prints admitted vs limit.
 * LiteLLM documents up to 10 extra requests at 100 RPS across 3 instances.
 */
import { join } from "node:path";
import { startPostgres, startRedis } from "../test/helpers/services";
import { ROOT, launch, startLitegate } from "./lib";

const runs = [
  { rps: 100, limit: 500, seconds: 8 },
  { rps: 1000, limit: 5000, seconds: 8 },
];

async function fire(urls: string[], key: string, rps: number, seconds: number) {
  const body = JSON.stringify({ model: "bench-model", messages: [{ role: "user", content: "hi" }] });
  const counts = { sent: 0, admitted: 0, limited: 0, other: 0 };
  const start = performance.now();
  const pending: Promise<void>[] = [];
  for (let i = 0; i < rps * seconds; i++) {
    const wait = start + (i * 1000) / rps - performance.now();
    if (wait > 1) await Bun.sleep(wait);
    counts.sent++;
    pending.push(fetch(`${urls[i % urls.length]}/v1/chat/completions`, {
      method: "POST", headers: { authorization: `Bearer ${key}`, "content-type": "application/json" }, body,
    }).then(async (response) => {
      await response.arrayBuffer();
      if (response.status === 200) counts.admitted++;
      else if (response.status === 429) counts.limited++;
      else counts.other++;
    }, () => void counts.other++));
  }
  await Promise.all(pending);
  return counts;
}

async function main() {
  const build = await launch([join(ROOT, "node_modules/.bin/bun"), "run", "build"]);
  if ((await build.exited) !== 0) throw new Error("build failed");
  const upstreamPort = 20000 + Math.floor(Math.random() * 20000);
  await launch([join(ROOT, "node_modules/.bin/bun"), join(ROOT, "bench/upstream.ts"), String(upstreamPort)]);
  const pg = await startPostgres();
  const redis = await startRedis();
  const dbUrl = await pg.newDatabase();
  const config = {
    model_list: [{ model_name: "bench-model", litellm_params: { model: "openai/bench-model", api_base: `http://127.0.0.1:${upstreamPort}/v1`, input_cost_per_token: 0.000001, output_cost_per_token: 0.000001 } }],
    general_settings: { master_key: "sk-1234", database_url: dbUrl, redis_url: redis.url, log_level: "warn" },
  };
  const instances = [];
  for (let i = 0; i < 3; i++) instances.push(await startLitegate(config));
  const urls = instances.map((g) => g.url);

  const lines: string[] = [];
  for (const run of runs) {
    // Stay inside one 60 s rate window: start early in a minute.
    const intoMinute = Date.now() % 60_000;
    if (intoMinute > 60_000 - (run.seconds + 4) * 1000) await Bun.sleep(60_000 - intoMinute + 200);
    const created = await fetch(`${urls[0]}/key/generate`, {
      method: "POST", headers: { authorization: "Bearer sk-1234" }, body: JSON.stringify({ rpm_limit: run.limit }),
    }).then((r) => r.json() as any);
    await Bun.sleep(200);
    const counts = await fire(urls, created.key, run.rps, run.seconds);
    const over = counts.admitted - run.limit;
    lines.push(
      `${String(run.rps).padStart(5)} RPS  3 instances  rpm_limit ${String(run.limit).padStart(5)}  sent ${String(counts.sent).padStart(5)}  ` +
      `admitted ${String(counts.admitted).padStart(5)}  over ${String(over).padStart(3)} (${((over / run.limit) * 100).toFixed(2)}%)  429 ${counts.limited}  other ${counts.other}`,
    );
    process.stderr.write(`${lines.at(-1)}\n`);
  }
  process.stdout.write(`\nrpm drift across three instances sharing Redis (one 60 s window per run)\n${lines.join("\n")}\n`);
  for (const g of instances) await g.stop();
  await redis.stop();
  await pg.stop();
  process.exit(0);
}

await main();
