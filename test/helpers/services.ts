import { type Subprocess, spawn, spawnSync } from "bun";
import { spawn as spawnDetached } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, readFileSync, readdirSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** A free loopback port, chosen by the kernel. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

const cleanups: (() => void)[] = [];
/** Throwaway directories (data of the servers, the binaries, the embedded databases), removed once the servers stop. */
const dirs: string[] = [];

/** Stops every server these helpers started, then removes their directories (`bun test` runs it after the last test; see test/setup.ts). */
export function stopServices(): void {
  for (const cleanup of cleanups.splice(0).reverse()) {
    try {
      cleanup();
    } catch {
      // best effort at exit
    }
  }
  if (dirs.length === 0) return;
  // By a process of its own, which may outlive this one: a whole run leaves a few gigabytes of them, whose
  // removal here took minutes on a loaded machine, past the timeout of the hook that runs this.
  spawnDetached("rm", ["-rf", "--", ...dirs.splice(0)], { detached: true, stdio: "ignore" }).unref();
}
// Scripts (bench, chaos) exit normally; `bun test` does not fire this, hence the hook in test/setup.ts.
process.on("exit", stopServices);

export function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), `litegate-${prefix}-`));
  dirs.push(dir);
  return dir;
}

async function waitFor(check: () => Promise<boolean> | boolean, what: string, ms = 20_000): Promise<void> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (await check()) return;
    await Bun.sleep(50);
  }
  throw new Error(`${what} did not become ready in ${ms} ms`);
}

export interface RedisServer {
  port: number;
  url: string;
  start(): Promise<void>;
  stop(): Promise<void>;
  /** Stops answering with its connections open (SIGSTOP), until `resume`. */
  pause(): void;
  resume(): void;
}

/** A real redis-server on a random loopback port, without persistence. */
export async function startRedis(): Promise<RedisServer> {
  if (!Bun.which("redis-server")) throw new Error("redis-server not found: install it (Debian: apt-get install redis-server) or run `bash .ci/run`");
  const port = await freePort();
  const dir = tempDir("redis");
  let proc: Subprocess | null = null;
  const server: RedisServer = {
    port,
    url: `redis://127.0.0.1:${port}`,
    async start() {
      proc = spawn(["redis-server", "--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir], { stdout: "ignore", stderr: "ignore" });
      const started = proc;
      cleanups.push(() => started.kill("SIGKILL"));
      await waitFor(() => spawnSync(["redis-cli", "-p", String(port), "ping"]).stdout.toString().includes("PONG"), "redis-server");
    },
    async stop() {
      proc?.kill("SIGCONT");
      proc?.kill("SIGKILL");
      await proc?.exited;
      proc = null;
    },
    pause: () => proc?.kill("SIGSTOP"),
    resume: () => proc?.kill("SIGCONT"),
  };
  await server.start();
  return server;
}

function pgBin(name: string): string {
  const root = "/usr/lib/postgresql";
  if (existsSync(root)) {
    for (const version of readdirSync(root).sort().reverse()) {
      const path = join(root, version, "bin", name);
      if (existsSync(path)) return path;
    }
  }
  return name;
}

export interface PostgresServer {
  port: number;
  url(database?: string): string;
  newDatabase(): Promise<string>;
  start(): Promise<void>;
  stop(): Promise<void>;
  /** Stops answering with its connections open (SIGSTOP to the server and its backends), until `resume`: a hung server or a network cut. */
  pause(): void;
  resume(): void;
}

/** A real Postgres cluster on a random port, run as the unprivileged `postgres` user (it refuses root). */
export async function startPostgres(): Promise<PostgresServer> {
  if (!existsSync(pgBin("initdb")) && !Bun.which("initdb")) {
    throw new Error("PostgreSQL server binaries not found: install them (Debian: apt-get install postgresql) or run `bash .ci/run`");
  }
  const port = await freePort();
  const dir = tempDir("pg");
  chmodSync(dir, 0o777);
  const asRoot = process.getuid?.() === 0;
  const run = (args: string[]) => (asRoot ? ["runuser", "-u", "postgres", "--", ...args] : args);
  const data = join(dir, "data");
  const init = spawnSync(run([pgBin("initdb"), "-D", data, "-U", "postgres", "-A", "trust", "--no-sync"]));
  if (init.exitCode !== 0) throw new Error(`initdb failed: ${init.stderr.toString()}`);
  let counter = 0;
  const ctl = (action: string, extra: string[] = []) => {
    const result = spawnSync(run([pgBin("pg_ctl"), "-D", data, "-w", "-l", join(dir, "log"), ...extra, action]));
    if (result.exitCode !== 0 && action === "start") throw new Error(`pg_ctl start failed: ${result.stderr.toString()}`);
  };
  const server: PostgresServer = {
    port,
    url: (database = "postgres") => `postgres://postgres@127.0.0.1:${port}/${database}`,
    async newDatabase() {
      const name = `t${process.pid}_${++counter}_${Math.floor(Math.random() * 1e6)}`;
      const result = spawnSync(["psql", "-h", "127.0.0.1", "-p", String(port), "-U", "postgres", "-c", `create database ${name}`]);
      if (result.exitCode !== 0) throw new Error(`create database failed: ${result.stderr.toString()}`);
      return server.url(name);
    },
    async start() {
      ctl("start", ["-o", `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c max_connections=300`]);
    },
    async stop() {
      ctl("stop", ["-m", "fast"]);
    },
    pause: () => signalServer("SIGSTOP"),
    resume: () => signalServer("SIGCONT"),
  };
  /** The postmaster (first line of its pid file) and every backend it started. */
  const signalServer = (signal: "SIGSTOP" | "SIGCONT") => {
    const main = readFileSync(join(data, "postmaster.pid"), "utf8").split("\n")[0]!.trim();
    const children = spawnSync(["pgrep", "-P", main]).stdout.toString().split("\n").filter(Boolean);
    for (const pid of [main, ...children]) process.kill(Number(pid), signal);
  };
  await server.start();
  cleanups.push(() => signalServer("SIGCONT"));
  cleanups.push(() => spawnSync(run([pgBin("pg_ctl"), "-D", data, "-m", "immediate", "stop"])));
  return server;
}

let sharedPg: Promise<PostgresServer> | null = null;
/** One Postgres per test process; each test file takes fresh databases from it. */
export function sharedPostgres(): Promise<PostgresServer> {
  sharedPg ??= startPostgres();
  return sharedPg;
}
