/**
 * `npm run bench:history`: every run saved under bench/results/, one line each, as a markdown table,
 * then the medians of the runs with alternated rounds. A run whose rows had non-2xx answers is marked
 * and left out of the medians: its figures measured errors, not the gateway.
 */
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";

const DIR = join(import.meta.dir, "results");

interface Row { rps: number; non2xx: number; maxRssMb?: number }
interface Run {
  date: string;
  rows: Record<string, Row>;
  ratios: Record<string, number>;
  alternated_rounds?: Record<string, unknown>;
  scale_alternated_rounds?: { ratio: number };
  added_latency_at_1000rps_ms?: { p99: number; bare_proxy?: { p99: number }; litegate?: { errors: number } };
  stream_ttfb_ms?: { added: number };
  cpu_us_per_request_at_1000rps?: { litegate: number; bare_proxy: number };
  sustained_load?: { max_rss_mb: number };
  cold_start_ms?: number;
  warm_start_ms?: number;
}

const GOVERNED = "litegate governed key (Postgres+Redis)";
const GOVERNED_LITE = "litegate governed key (PGlite)";

/** A ratio of the run: from its alternated rounds when it has them, else from its rows. */
function ratio(run: Run, against: "ceiling" | "Portkey"): number | undefined {
  const rounds = run.alternated_rounds?.[`governed (Postgres+Redis) / ${against}`];
  if (typeof rounds === "number") return rounds;
  return run.ratios[`governed (Postgres+Redis) / ${against}, rows above`] ?? run.ratios[`governed (Postgres+Redis) / ${against}`];
}

function scaleRatio(run: Run): number | undefined {
  return run.scale_alternated_rounds?.ratio ?? run.ratios["1M keys: 10k in use / 1 in use, rows above"];
}

/** Whether the run measured answers, not errors. */
function valid(run: Run): boolean {
  return Object.values(run.rows).every((row) => row.non2xx === 0) && (run.added_latency_at_1000rps_ms?.litegate?.errors ?? 0) === 0;
}

const runs: Run[] = readdirSync(DIR)
  .filter((name) => name.endsWith(".json"))
  .sort()
  .map((name) => JSON.parse(readFileSync(join(DIR, name), "utf8")) as Run);

const f = (n: number | undefined, digits = 2) => (n === undefined ? "" : n.toFixed(digits));
const thousands = (n: number | undefined) => (n === undefined ? "" : Math.round(n).toLocaleString("en-US"));
const columns = [
  "run (UTC)", "upstream req/s", "ceiling req/s", "governed req/s", "/ ceiling", "/ Portkey", "added p99 ms (bare)",
  "TTFB added ms", "CPU µs/req (bare)", "RSS MB PG+Redis (sustained)", "RSS MB PGlite", "scale", "cold / warm ms",
];
const lines = [`| ${columns.join(" | ")} |`, `|${columns.map((_, i) => (i === 0 ? "---" : "---:")).join("|")}|`];
for (const run of runs) {
  const added = run.added_latency_at_1000rps_ms;
  const cpu = run.cpu_us_per_request_at_1000rps;
  const cells = [
    `${run.date.slice(0, 16).replace("T", " ")}${valid(run) ? "" : " (errors)"}${run.alternated_rounds ? "" : " (rows)"}`,
    thousands(run.rows["upstream (direct)"]?.rps),
    thousands(run.rows["bare Bun proxy (ceiling)"]?.rps),
    thousands(run.rows[GOVERNED]?.rps),
    f(ratio(run, "ceiling")),
    f(ratio(run, "Portkey")),
    added ? `${f(added.p99)}${added.bare_proxy ? ` (${f(added.bare_proxy.p99)})` : ""}` : "",
    f(run.stream_ttfb_ms?.added),
    cpu ? `${cpu.litegate} (${cpu.bare_proxy})` : "",
    `${run.rows[GOVERNED]?.maxRssMb ?? ""}${run.sustained_load ? ` (${run.sustained_load.max_rss_mb})` : ""}`,
    String(run.rows[GOVERNED_LITE]?.maxRssMb ?? ""),
    f(scaleRatio(run)),
    run.cold_start_ms !== undefined ? `${run.cold_start_ms} / ${run.warm_start_ms}` : "",
  ];
  lines.push(`| ${cells.join(" | ")} |`);
}

const median = (values: (number | undefined)[]) => {
  const sorted = values.filter((v): v is number => v !== undefined).sort((a, b) => a - b);
  if (sorted.length === 0) return undefined;
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
};
const counted = runs.filter((run) => valid(run) && run.alternated_rounds);
const range = (values: (number | undefined)[]) => {
  const known = values.filter((v): v is number => v !== undefined);
  return known.length ? `${f(median(known))} (${f(Math.min(...known))}–${f(Math.max(...known))})` : "";
};
lines.push(
  "",
  `Runs with alternated rounds and no errors: ${counted.length}. Medians (range):`,
  `governed / ceiling ${range(counted.map((run) => ratio(run, "ceiling")))}, governed / Portkey ${range(counted.map((run) => ratio(run, "Portkey")))},`,
  `added p99 at 1,000 req/s ${range(counted.map((run) => run.added_latency_at_1000rps_ms?.p99))} ms (bare proxy ${range(counted.map((run) => run.added_latency_at_1000rps_ms?.bare_proxy?.p99))}),`,
  `stream TTFB added ${range(counted.map((run) => run.stream_ttfb_ms?.added))} ms, scale ${range(counted.map(scaleRatio))}.`,
);
process.stdout.write(`${lines.join("\n")}\n`);
