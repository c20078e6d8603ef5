/**
 * The performance targets, checked against one bench run: what each one asks, what the run measured,
 * and by how much it is met or missed.
 */

export interface Measured {
  /** Governed litegate on Postgres + Redis over the ceiling and over Portkey, alternated rounds. */
  governedOverCeiling: number;
  governedOverPortkey: number;
  /** Added latency at 1,000 requests/s (median over rounds), litegate and, for scale, the bare proxy. */
  addedP99Ms: number;
  bareAddedP99Ms: number;
  addedTtfbMs: number;
  /** Highest RSS under wrk, per litegate row that measured one. */
  rssMb: Record<string, number>;
  coldStartMs: number;
  warmStartMs: number;
  /** 1M keys in the database: 10k keys in use over 1 key in use, alternated rounds. */
  scaleRatio: number;
}

export interface TargetCheck {
  target: string;
  measured: string;
  met: boolean;
  /** Measured against the goal, as a signed percentage of the goal ("+3%" above, "-18%" below). */
  margin: string;
}

const percent = (measured: number, goal: number) => {
  const value = Math.round(((measured - goal) / goal) * 100);
  return `${value >= 0 ? "+" : ""}${value}%`;
};

function atLeast(target: string, measured: number, goal: number, unit = ""): TargetCheck {
  return { target, measured: `${measured}${unit}`, met: measured >= goal, margin: percent(measured, goal) };
}

function atMost(target: string, measured: number, goal: number, unit: string, note = ""): TargetCheck {
  return { target, measured: `${measured}${unit}${note}`, met: measured <= goal, margin: percent(measured, goal) };
}

export function checkTargets(m: Measured): TargetCheck[] {
  const checks = [
    atLeast("governed / ceiling >= 0.7", m.governedOverCeiling, 0.7),
    atLeast("governed / Portkey >= 2.5", m.governedOverPortkey, 2.5),
    atMost("added p99 at 1,000 req/s <= 1 ms", m.addedP99Ms, 1, " ms", ` (bare proxy ${m.bareAddedP99Ms} ms)`),
    atMost("added stream TTFB <= 1 ms", m.addedTtfbMs, 1, " ms"),
  ];
  for (const [row, rss] of Object.entries(m.rssMb)) checks.push(atMost(`RSS under load <= 200 MB: ${row}`, rss, 200, " MB"));
  checks.push(
    atMost("cold start <= 1 s", m.coldStartMs, 1000, " ms"),
    atMost("warm start <= 300 ms", m.warmStartMs, 300, " ms"),
    // "Unchanged within noise", read as at least 0.95.
    atLeast("1M keys: 10k in use / 1 in use ~ 1 (>= 0.95)", m.scaleRatio, 0.95),
  );
  return checks;
}

export function formatTargets(checks: readonly TargetCheck[]): string {
  const width = Math.max(...checks.map((c) => c.target.length));
  const measuredWidth = Math.max(...checks.map((c) => c.measured.length));
  return checks
    .map((c) => `${c.target.padEnd(width)}  ${c.measured.padStart(measuredWidth)}  ${(c.met ? "met" : "MISSED").padEnd(6)}  ${c.margin}`)
    .join("\n");
}
