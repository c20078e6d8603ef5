import { type Subprocess, spawn } from "bun";
import { afterAll, beforeAll, expect } from "bun:test";
import { existsSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { stringify } from "yaml";
import { type RedisServer, freePort, sharedPostgres, startRedis, tempDir } from "./services";
import { type Upstream, startUpstream } from "./upstream";

export const ROOT = resolve(import.meta.dir, "../..");
export const BINARY = join(ROOT, "litegate");

function newestSource(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestSource(path) : statSync(path).mtimeMs);
  }
  return newest;
}

let built: Promise<void> | null = null;
/** The compiled binary, built once per test run when missing or older than the sources. */
export function ensureBinary(): Promise<void> {
  built ??= (async () => {
    const stale = !existsSync(BINARY) || statSync(BINARY).mtimeMs < Math.max(newestSource(join(ROOT, "src")), newestSource(join(ROOT, "sql")));
    if (!stale) return;
    const proc = spawn(["./node_modules/.bin/bun", "run", "build"], { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
    if ((await proc.exited) !== 0) throw new Error(`build failed: ${await new Response(proc.stderr).text()}`);
  })();
  return built;
}

export async function runBinary(args: string[], options: { cwd?: string; env?: Record<string, string> } = {}) {
  await ensureBinary();
  const proc = spawn([BINARY, ...args], { cwd: options.cwd ?? tempDir("cwd"), env: { ...process.env, ...options.env }, stdout: "pipe", stderr: "pipe" });
  const [code, stdout, stderr] = await Promise.all([proc.exited, new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
  return { code, stdout, stderr };
}

export interface RunningGateway {
  url: string;
  port: number;
  proc: Subprocess;
  configPath: string;
  output(): string;
  waitForOutput(pattern: RegExp, ms?: number): Promise<void>;
  /** Sends a signal and waits for the exit code. */
  stop(signal?: "SIGTERM" | "SIGINT" | "SIGKILL"): Promise<number>;
}

const running = new Set<Subprocess>();
process.on("exit", () => {
  for (const proc of running) proc.kill("SIGKILL");
});

/** Starts `./litegate --config <file>` on a free port and waits until it answers. */
export async function startBinary(options: { config: string | object; env?: Record<string, string>; cwd?: string; port?: number }): Promise<RunningGateway> {
  await ensureBinary();
  const cwd = options.cwd ?? tempDir("gw");
  const configPath = join(cwd, `config-${crypto.randomUUID()}.yaml`);
  writeFileSync(configPath, typeof options.config === "string" ? options.config : stringify(options.config));
  const port = options.port ?? (await freePort());
  const proc = spawn([BINARY, "--config", configPath, "--port", String(port), "--host", "127.0.0.1"], {
    cwd, env: { ...process.env, ...options.env }, stdout: "pipe", stderr: "pipe",
  });
  running.add(proc);
  let output = "";
  const drain = async (stream: ReadableStream<Uint8Array>) => {
    const decoder = new TextDecoder();
    for await (const chunk of stream) output += decoder.decode(chunk);
  };
  void drain(proc.stdout as ReadableStream<Uint8Array>);
  void drain(proc.stderr as ReadableStream<Uint8Array>);
  const url = `http://127.0.0.1:${port}`;
  const until = Date.now() + 30_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`litegate exited with ${proc.exitCode}:\n${output}`);
    try {
      if ((await fetch(`${url}/health/liveliness`)).ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > until) throw new Error(`litegate did not start in 30 s:\n${output}`);
    await Bun.sleep(50);
  }
  return {
    url, port, proc, configPath,
    output: () => output,
    async waitForOutput(pattern, ms = 10_000) {
      const end = Date.now() + ms;
      while (!pattern.test(output)) {
        if (Date.now() > end) throw new Error(`output never matched ${pattern}:\n${output}`);
        await Bun.sleep(25);
      }
    },
    async stop(signal = "SIGTERM") {
      proc.kill(signal);
      const code = await proc.exited;
      running.delete(proc);
      return code;
    },
  };
}

/**
 * The binary on a new database of the suite's Postgres, with the master key sk-1234: `config` holds
 * every section but general_settings; `after` follows general_settings' own lines (more of them,
 * indented, or other sections).
 */
export async function startOnPostgres(config: string, after = ""): Promise<{ gateway: RunningGateway; dbUrl: string }> {
  const dbUrl = await (await sharedPostgres()).newDatabase();
  const gateway = await startBinary({ config: `${config}\ngeneral_settings:\n  master_key: sk-1234\n  database_url: ${dbUrl}\n${after}` });
  return { gateway, dbUrl };
}

/** The binary with the master key sk-1234 on Postgres (see `startOnPostgres`) or on the embedded database: `config` as there. */
export async function startOn(database: "postgres" | "embedded", config: string): Promise<RunningGateway> {
  if (database === "postgres") return (await startOnPostgres(config)).gateway;
  return startBinary({ config: `${config}\ngeneral_settings:\n  master_key: sk-1234\n` });
}

/** A new virtual key from a gateway started with the master key `sk-1234`, with `fields` (none: no limits of its own). */
export async function newKeyOn(url: string, fields: Record<string, unknown> = {}): Promise<{ key: string; token: string }> {
  const response = await fetch(`${url}/key/generate`, { method: "POST", headers: { authorization: "Bearer sk-1234" }, body: JSON.stringify(fields) });
  return (await response.json()) as { key: string; token: string };
}

/** What a before-all hook set, once it has. */
export function started<T>(value: T | undefined): T {
  if (value === undefined) throw new Error("used before the file's before-all hook started it");
  return value;
}

/** An admin call with the master key sk-1234 that must answer 200 (GET without a body, POST with one): its JSON. */
export async function adminCall(url: string, path: string, body?: object): Promise<any> {
  const headers = { authorization: "Bearer sk-1234", "content-type": "application/json" };
  const response = await fetch(`${url}${path}`, body ? { method: "POST", headers, body: JSON.stringify(body) } : { headers });
  expect(response.status).toBe(200);
  return response.json();
}

/**
 * For the describe block that calls it: a test upstream, and the binary in front of it on `database`
 * (see `startOn`) with the config `config` gives for the upstream's URL, started before the block's
 * tests and killed after them.
 */
export function binaryOnUpstream(database: "postgres" | "embedded", config: (upstreamUrl: string) => string): { readonly gateway: RunningGateway; readonly upstream: Upstream } {
  let upstream: Upstream | undefined;
  let gateway: RunningGateway | undefined;
  beforeAll(async () => {
    upstream = await startUpstream();
    gateway = await startOn(database, config(upstream.url));
  }, 120_000);
  afterAll(async () => {
    await gateway?.stop("SIGKILL");
    upstream?.stop();
  });
  return {
    get gateway() {
      return started(gateway);
    },
    get upstream() {
      return started(upstream);
    },
  };
}

/**
 * For the test file that calls it: a test upstream and a Redis server, started before its tests; after
 * them the gateways pushed to `gateways` are killed, then both are stopped.
 */
export function upstreamAndRedis(): { readonly upstream: Upstream; readonly redis: RedisServer; readonly gateways: RunningGateway[] } {
  let upstream: Upstream | undefined;
  let redis: RedisServer | undefined;
  const gateways: RunningGateway[] = [];
  beforeAll(async () => {
    upstream = await startUpstream();
    redis = await startRedis();
  }, 120_000);
  afterAll(async () => {
    for (const gateway of gateways) await gateway.stop("SIGKILL");
    upstream?.stop();
    await redis?.stop();
  });
  return {
    gateways,
    get upstream() {
      return started(upstream);
    },
    get redis() {
      return started(redis);
    },
  };
}

/**
 * For the test file that calls it: `count` instances of the binary sharing one new Postgres database
 * and `shared`'s Redis, serving one model per entry of `caps` (its name, and its deployment's
 * `max_parallel_requests`) at the test upstream, started before its tests and killed after them.
 */
export function instancesOnOneRedis(shared: ReturnType<typeof upstreamAndRedis>, count: number, caps: Record<string, number>): RunningGateway[] {
  const gateways: RunningGateway[] = [];
  beforeAll(async () => {
    const dbUrl = await (await sharedPostgres()).newDatabase();
    const models = Object.entries(caps).map(([name, cap]) =>
      `  - model_name: ${name}\n    litellm_params: {model: openai/${name}, api_base: "${shared.upstream.url}", max_parallel_requests: ${cap}, input_cost_per_token: 0.000001, output_cost_per_token: 0.000002}`);
    const config = `model_list:\n${models.join("\n")}\ngeneral_settings:\n  master_key: sk-1234\n  database_url: ${dbUrl}\n  redis_url: ${shared.redis.url}\n`;
    for (let i = 0; i < count; i++) gateways.push(await startBinary({ config }));
    shared.gateways.push(...gateways);
  }, 120_000);
  return gateways;
}
