/**
 * `npm run chaos`: every fault scenario against the compiled binary, real Postgres, Redis and a local
 * upstream; prints scenario, requests sent, succeeded, failed by status, spend expected vs recorded,
 * verdict. Bounded: about two minutes (the Postgres outage alone lasts 30 s).
 */
import { type ChaosRow, concurrentFlushes, environment, killNine, postgresStopped, redisKilled, sigtermStreams, upstreamFaults } from "./scenarios";

const env = await environment();
const rows: ChaosRow[] = [];
const scenarios: [string, () => Promise<ChaosRow>][] = [
  ["redis", () => redisKilled(env)],
  ["postgres", () => postgresStopped(env, 30_000)],
  ["upstream", () => upstreamFaults(env)],
  ["sigterm", () => sigtermStreams(env)],
  ["kill -9", () => killNine(env)],
  ["2 instances", () => concurrentFlushes(env, 2)],
  ["3 instances", () => concurrentFlushes(env, 3)],
];
for (const [name, scenario] of scenarios) {
  process.stderr.write(`running: ${name}…\n`);
  try {
    rows.push(await scenario());
  } catch (error) {
    rows.push({ scenario: name, sent: 0, succeeded: 0, failed: {}, expectedSpend: 0, recordedSpend: 0, verdict: "FAIL", notes: String(error) });
  }
}
const pad = (s: string, n: number) => s.padEnd(n);
let table = `${pad("scenario", 66)} ${"sent".padStart(6)} ${"ok".padStart(6)} ${pad("failed", 18)} ${"expected $".padStart(12)} ${"recorded $".padStart(12)} verdict\n`;
for (const r of rows) {
  const failed = Object.entries(r.failed).map(([status, n]) => `${status}:${n}`).join(" ") || "-";
  table += `${pad(r.scenario, 66)} ${String(r.sent).padStart(6)} ${String(r.succeeded).padStart(6)} ${pad(failed, 18)} ${r.expectedSpend.toFixed(8).padStart(12)} ${r.recordedSpend.toFixed(8).padStart(12)} ${r.verdict}\n`;
  if (r.notes) table += `    ${r.notes}\n`;
}
process.stdout.write(`\n${table}`);
await env.redis.stop();
await env.pg.stop();
env.upstream.stop();
process.exit(rows.every((r) => r.verdict === "pass") ? 0 : 1);
