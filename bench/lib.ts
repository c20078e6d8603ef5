import { type Subprocess, spawn } from "bun";
import { openSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { stringify } from "yaml";
import { freePort, tempDir } from "../test/helpers/services";

export const ROOT = join(import.meta.dir, "..");
const BUN = join(ROOT, "node_modules/.bin/bun");
const started: Subprocess[] = [];
process.on("exit", () => started.forEach((p) => p.kill("SIGKILL")));

/** Waits until `url` answers (with `status`, when given). */
export async function waitHttp(url: string, ms = 30_000, init?: RequestInit, status?: number): Promise<number> {
  const start = performance.now();
  while (performance.now() - start < ms) {
    try {
      const response = await fetch(url, init);
      await response.arrayBuffer();
      if (status === undefined || response.status === status) return performance.now() - start;
    } catch {
      // not listening yet
    }
    await Bun.sleep(10);
  }
  throw new Error(`${url} did not answer in ${ms} ms`);
}

/** Starts a process for the run (killed when the run exits); its stderr goes to `stderrFile` when one is named. */
export async function launch(cmd: string[], env: Record<string, string> = {}, cwd = ROOT, stderrFile?: string): Promise<Subprocess> {
  const stderr = stderrFile ? openSync(stderrFile, "w") : "pipe";
  const proc = spawn(cmd, { cwd, env: { ...process.env, ...env }, stdout: "ignore", stderr });
  started.push(proc);
  return proc;
}

export async function bunScript(script: string, args: string[], env: Record<string, string> = {}, stderrFile?: string, bunArgs: string[] = []) {
  return launch([BUN, ...bunArgs, join(ROOT, script), ...args], env, ROOT, stderrFile);
}

export interface Litegate {
  url: string;
  proc: Subprocess;
  /** Spawn to the first answer to /health/liveliness. */
  startMs: number;
  /** Spawn to the first 200 to the `served` request, when one was given. */
  servedMs?: number;
  stop(): Promise<void>;
}

/** Sends the request every few milliseconds until it is answered 200: how long the gateway takes to serve it. */
async function untilServed(url: string, headers: Record<string, string>, body: string, ms = 30_000): Promise<void> {
  const start = performance.now();
  while (performance.now() - start < ms) {
    try {
      const response = await fetch(url, { method: "POST", headers, body });
      await response.arrayBuffer();
      if (response.status === 200) return;
    } catch {
      // not listening yet
    }
    await Bun.sleep(5);
  }
  throw new Error(`${url} did not answer 200 in ${ms} ms`);
}

/**
 * Starts the binary on `config`. With `served`, it then sends that chat completion until it is answered
 * 200, and `servedMs` is the time a client waits for its first answer. `env` is added to the
 * binary's environment; its stderr goes to `stderrFile` when one is named.
 */
export async function startLitegate(
  config: object, dataDir?: string, served?: { headers: Record<string, string>; body: string },
  { env = {}, stderrFile }: { env?: Record<string, string>; stderrFile?: string } = {},
): Promise<Litegate> {
  const dir = dataDir ?? tempDir("bench");
  const path = join(dir, "config.yaml");
  writeFileSync(path, stringify(config));
  const port = await freePort();
  const t0 = performance.now();
  const proc = await launch([process.env.LITEGATE_BIN ?? join(ROOT, "litegate"), "--config", path, "--port", String(port), "--host", "127.0.0.1"], env, dir, stderrFile);
  const url = `http://127.0.0.1:${port}`;
  await waitHttp(`${url}/health/liveliness`);
  const startMs = performance.now() - t0;
  if (served) await untilServed(`${url}/v1/chat/completions`, served.headers, served.body);
  return {
    url, proc, startMs, servedMs: served ? performance.now() - t0 : undefined,
    async stop() {
      proc.kill("SIGTERM");
      await proc.exited;
    },
  };
}

export function rssMb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024;
}

export interface WrkResult {
  rps: number;
  p50: number;
  p99: number;
  non2xx: number;
  maxRssMb?: number;
}

function ms(text: string | undefined): number {
  if (!text) return NaN;
  const value = parseFloat(text);
  return text.endsWith("us") ? value / 1000 : text.endsWith("ms") ? value : text.endsWith("s") ? value * 1000 : value;
}

/** wrk with the same settings for every target; samples a process's RSS while it runs. */
export async function wrk(url: string, headers: Record<string, string>, body: string, seconds: number, rssPid?: number, script?: string): Promise<WrkResult> {
  const lua = script ?? `wrk.method = "POST"\nwrk.body = ${JSON.stringify(body)}\n` +
    Object.entries(headers).map(([k, v]) => `wrk.headers[${JSON.stringify(k)}] = ${JSON.stringify(v)}`).join("\n");
  const file = join(tempDir("wrk"), "post.lua");
  writeFileSync(file, lua);
  const proc = spawn(["wrk", "-t2", "-c50", `-d${seconds}s`, "--latency", "-s", file, url], { stdout: "pipe", stderr: "pipe" });
  let maxRss = 0;
  const sampler = rssPid ? setInterval(() => (maxRss = Math.max(maxRss, rssMb(rssPid))), 200) : null;
  const out = await new Response(proc.stdout).text();
  await proc.exited;
  if (sampler) clearInterval(sampler);
  return {
    rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? 0),
    p50: ms(/\n\s+50%\s+(\S+)/.exec(out)?.[1]),
    p99: ms(/\n\s+99%\s+(\S+)/.exec(out)?.[1]),
    non2xx: Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0),
    maxRssMb: rssPid ? Math.round(maxRss) : undefined,
  };
}

/** The middle value (the upper one of an even count). */
export const median = (values: readonly number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

/** Time to the first streamed byte, median of `n` sequential requests. */
export async function ttfb(url: string, headers: Record<string, string>, body: string, n = 200): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    const response = await fetch(url, { method: "POST", headers, body });
    const reader = response.body!.getReader();
    await reader.read();
    times.push(performance.now() - t0);
    while (!(await reader.read()).done);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(n / 2)]!;
}

/** CPU time (user + system, ms) a process has used so far, from /proc (ticks of 10 ms). */
export function cpuMs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

/**
 * Open-loop load at a fixed rate: latency percentiles that do not hide queueing; with `cpuPid`, also
 * that process's CPU time per request (µs).
 */
export async function fixedRate(url: string, headers: Record<string, string>, body: string, rps: number, seconds: number, cpuPid?: number) {
  const cpuBefore = cpuPid ? cpuMs(cpuPid) : 0;
  const latencies: number[] = [];
  let errors = 0;
  const total = rps * seconds;
  const start = performance.now();
  const inflight: Promise<void>[] = [];
  for (let i = 0; i < total; i++) {
    const due = start + (i * 1000) / rps;
    const wait = due - performance.now();
    if (wait > 1) await Bun.sleep(wait);
    inflight.push((async () => {
      const t0 = performance.now();
      try {
        const response = await fetch(url, { method: "POST", headers, body });
        await response.arrayBuffer();
        if (!response.ok) errors++;
      } catch {
        errors++;
      }
      latencies.push(performance.now() - t0);
    })());
  }
  await Promise.all(inflight);
  latencies.sort((a, b) => a - b);
  const q = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))]!;
  const cpuUsPerRequest = cpuPid ? Math.round(((cpuMs(cpuPid) - cpuBefore) * 1000) / total) : undefined;
  return { p50: q(0.5), p99: q(0.99), p999: q(0.999), errors, cpuUsPerRequest };
}

export { roundTrips } from "../test/helpers/load";

/** What a run sent to Postgres and Redis, in all and per request. */
type Sent = { db: number; redis: number; counterSyncs: number };
export function roundTripsPerRequest(before: Sent, after: Sent, requests: number) {
  return {
    requests: Math.round(requests),
    postgres_statements: after.db - before.db,
    redis_round_trips: after.redis - before.redis,
    postgres_per_request: +((after.db - before.db) / requests).toFixed(4),
    redis_round_trips_per_request: +((after.redis - before.redis) / requests).toFixed(4),
    counter_syncs_per_request: +((after.counterSyncs - before.counterSyncs) / requests).toFixed(4),
  };
}
