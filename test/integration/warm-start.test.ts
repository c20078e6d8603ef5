import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { hashKey } from "../../src/auth/keys";
import { buildBatch, savedBatch } from "../../src/spend/batch";
import { spawn } from "bun";
import { BINARY, ensureBinary, runBinary, startBinary } from "../helpers/binary";
import { freePort, tempDir } from "../helpers/services";
import { until } from "../helpers/until";
import { type Upstream, startUpstream } from "../helpers/upstream";

// On PGlite a start serves what it knows (a new directory's emptiness, or what a clean stop saved)
// while the database opens behind it (src/warm.ts). These tests hold it to the database's truth.

let upstream: Upstream;
beforeAll(async () => {
  upstream = await startUpstream();
}, 60_000);
afterAll(() => upstream.stop());

const admin = { authorization: "Bearer sk-1234", "content-type": "application/json" };
/** Each request costs 10 × 0.01 + 20 × 0.01 = 0.30 (the test upstream reports 10 + 20 tokens). */
const config = (dataDir: string) => `
model_list:
  - model_name: m
    litellm_params:
      model: openai/m
      api_base: ${upstream.url}
      input_cost_per_token: 0.01
      output_cost_per_token: 0.01
general_settings:
  master_key: sk-1234
  data_dir: ${dataDir}
`;

function chat(url: string, key: string, user?: string) {
  return fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    body: JSON.stringify({ model: "m", messages: [{ role: "user", content: "hi" }], user }),
  });
}

async function newKey(url: string, body: object): Promise<string> {
  const response = await fetch(`${url}/key/generate`, { method: "POST", headers: admin, body: JSON.stringify(body) });
  expect(response.status).toBe(200);
  return ((await response.json()) as { key: string }).key;
}

async function spendOf(url: string, key: string): Promise<number> {
  const response = await fetch(`${url}/key/info?key=${key}`, { headers: admin });
  return ((await response.json()) as { info: { spend: number } }).info.spend;
}

/** A gateway on a new directory that gets a key, uses it once and stops cleanly: the directory now holds a saved state. */
async function stoppedWithKey(name: string) {
  const cwd = tempDir(name);
  const dataDir = join(cwd, "data");
  const first = await startBinary({ config: config(dataDir), cwd });
  const key = await newKey(first.url, {});
  expect((await chat(first.url, key)).status).toBe(200);
  expect(await first.stop("SIGTERM")).toBe(0);
  return { cwd, dataDir, key, configPath: first.configPath };
}

/**
 * A directory stopped cleanly (a saved state) whose database then cannot be opened: a damaged catalogue
 * map, while the control file (the saved state's fingerprint) still matches. `repair` puts it back.
 */
async function damaged(name: string) {
  const stopped = await stoppedWithKey(name);
  const map = join(stopped.dataDir, "global", "pg_filenode.map");
  const intact = readFileSync(map);
  writeFileSync(map, "");
  return { ...stopped, repair: () => writeFileSync(map, intact) };
}

/** The position of a log line, or -1. */
const lineOf = (output: string, pattern: RegExp) => output.split("\n").findIndex((line) => pattern.test(line));

describe("starting on the embedded database", () => {
  test("a restart serves the keys it knew before the database is open, with their spend as the database has it", async () => {
    const cwd = tempDir("warm");
    const dataDir = join(cwd, "data");
    const first = await startBinary({ config: config(dataDir), cwd });
    const capped = await newKey(first.url, { max_budget: 0.5 });
    const open = await newKey(first.url, { max_budget: 100 });
    // Both keys are cached by their first request, at a spend of 0; the spend after it must be what is kept.
    for (const key of [capped, capped, open]) expect((await chat(first.url, key)).status).toBe(200);
    expect((await chat(first.url, capped)).status).toBe(400); // 0.60 spent of 0.50
    // A customer with a budget, cached at a spend of 0 too.
    expect((await fetch(`${first.url}/customer/new`, { method: "POST", headers: admin, body: JSON.stringify({ user_id: "acme", max_budget: 0.5 }) })).status).toBe(200);
    for (let i = 0; i < 2; i++) expect((await chat(first.url, open, "acme")).status).toBe(200);
    expect((await chat(first.url, open, "acme")).status).toBe(400);
    expect(await first.stop("SIGTERM")).toBe(0);
    expect(existsSync(join(dataDir, "litegate-warm.json"))).toBe(true);

    const second = await startBinary({ config: config(dataDir), cwd });
    expect(existsSync(join(dataDir, "litegate-warm.json"))).toBe(false); // removed once listening
    const refused = await chat(second.url, capped);
    const customerRefused = await chat(second.url, open, "acme");
    const served = await chat(second.url, open);
    expect(refused.status).toBe(400);
    expect(((await refused.json()) as { error: { message: string } }).error.message).toContain("Spend=0.6");
    expect(customerRefused.status).toBe(400);
    expect(((await customerRefused.json()) as { error: { message: string } }).error.message).toContain("End User=acme");
    expect(served.status).toBe(200);
    await second.waitForOutput(/database open/);
    // Both answers came before the database was open: from the saved state, not from a query.
    const output = second.output();
    const opened = lineOf(output, /database open/);
    const refusals = output.split("\n").flatMap((line, i) => (/request refused/.test(line) ? [i] : []));
    expect(refusals.length).toBe(2);
    for (const line of refusals) expect(line).toBeLessThan(opened);
    expect(lineOf(output, /INFO\s+request .*status=200/)).toBeLessThan(opened);
    // The spend of the request served before the database opened is written once it is.
    // (at the first flush after the open, 100 ms or so: polled rather than read once right after the log line)
    await until("the spend served before the database opened", async () => Math.abs((await spendOf(second.url, open)) - 1.2) < 1e-6, 3000);
    expect(await spendOf(second.url, capped)).toBeCloseTo(0.6, 6);
    expect(await second.stop("SIGTERM")).toBe(0);
  }, 90_000);

  test("`litegate migrate` before a start, as the systemd unit runs it, leaves the database and the saved state as they were", async () => {
    const { cwd, dataDir, key, configPath } = await stoppedWithKey("warm-migrate");
    const control = readFileSync(join(dataDir, "global", "pg_control"));
    const migrated = await runBinary(["migrate", "--config", configPath], { cwd });
    expect(migrated.code).toBe(0);
    expect(migrated.stdout).toContain("migrations up to date");
    expect(readFileSync(join(dataDir, "global", "pg_control")).equals(control)).toBe(true); // not opened
    const second = await startBinary({ config: config(dataDir), cwd });
    expect((await chat(second.url, key)).status).toBe(200);
    await second.waitForOutput(/database open/);
    expect(lineOf(second.output(), /INFO\s+request .*status=200/)).toBeLessThan(lineOf(second.output(), /database open/));
    await second.stop("SIGTERM");
  }, 90_000);

  test("a saved state older than the database is not used", async () => {
    const { cwd, dataDir, key } = await stoppedWithKey("warm-stale");
    const saved = join(dataDir, "litegate-warm.json");
    const stale = join(cwd, "stale.json");
    copyFileSync(saved, stale);

    // A run in between blocks the key; its own saved state is then replaced by the older one.
    const second = await startBinary({ config: config(dataDir), cwd });
    expect((await chat(second.url, key)).status).toBe(200);
    expect((await fetch(`${second.url}/key/block`, { method: "POST", headers: admin, body: JSON.stringify({ key }) })).status).toBe(200);
    expect((await chat(second.url, key)).status).toBe(403);
    await second.stop("SIGTERM");
    expect(readFileSync(saved, "utf8")).not.toBe(readFileSync(stale, "utf8"));
    copyFileSync(stale, saved);

    // The older state knew the key unblocked; the database has it blocked, and the database wins.
    const third = await startBinary({ config: config(dataDir), cwd });
    expect((await chat(third.url, key)).status).toBe(403);
    await third.stop("SIGTERM");
  }, 90_000);

  test("spend a shutdown saved to spend-pending is written before the next start serves, though a state was saved", async () => {
    const { cwd, dataDir, key } = await stoppedWithKey("warm-pending");
    expect(existsSync(join(dataDir, "litegate-warm.json"))).toBe(true);
    // As a stop that could not reach the database leaves it: a batch of 1.00 more for the key.
    const batch = buildBatch("pending-1", [{
      requestId: "pending-request", model: "m", deployment: "m#0", route: "chat", cost: 1, start: Date.now(), end: Date.now(), status: "success", metadata: {},
      usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 },
      targets: { token: hashKey(key), keyPeriod: null, user: null, team: null, member: null, customer: null, keyModel: null, gatewayPeriod: null },
    }]);
    mkdirSync(join(dataDir, "spend-pending"));
    writeFileSync(join(dataDir, "spend-pending", "spend-pending-1.json"), JSON.stringify(savedBatch(batch, Date.now(), "database unreachable at shutdown")));
    const second = await startBinary({ config: config(dataDir), cwd });
    expect(await spendOf(second.url, key)).toBeCloseTo(1.3, 6);
    expect(existsSync(join(dataDir, "spend-pending", "spend-pending-1.json"))).toBe(false);
    await second.stop("SIGTERM");
  }, 90_000);

  test("a database that fails to open behind a warm start: what the gateway served is saved to spend-pending and written at the next start", async () => {
    const { cwd, dataDir, key, repair } = await damaged("warm-fails"); // 0.30 spent
    upstream.set({ firstByteDelayMs: 1500 });
    let statuses: number[];
    try {
      const gateway = await startBinary({ config: config(dataDir), cwd });
      // Requests from the moment it listens until it stops taking them: those admitted are in flight when the open fails.
      const answers: Promise<number>[] = [];
      while (gateway.proc.exitCode === null && answers.length < 40) {
        answers.push(chat(gateway.url, key).then((response) => response.status, () => 0));
        await Bun.sleep(10);
      }
      statuses = await Promise.all(answers);
      expect(await gateway.proc.exited).toBe(1);
      expect(gateway.output()).toContain("cannot open the database");
      expect(gateway.output()).not.toContain("database open");
    } finally {
      upstream.reset();
    }
    const served = statuses.filter((status) => status === 200).length;
    expect(served).toBeGreaterThan(0);
    for (const status of statuses) expect([200, 0]).toContain(status); // served in full, or never taken
    expect(readdirSync(join(dataDir, "spend-pending")).length).toBeGreaterThan(0);

    repair();
    const next = await startBinary({ config: config(dataDir), cwd });
    expect(await spendOf(next.url, key)).toBeCloseTo(0.3 * (1 + served), 6);
    expect(readdirSync(join(dataDir, "spend-pending"))).toEqual([]);
    await next.stop("SIGTERM");
  }, 90_000);

  test("a stop asked for while the database opens behind a warm start, which then fails: the failure is said (exit 1) and what was served saved at once", async () => {
    const { cwd, dataDir, key, repair } = await damaged("warm-fails-stop"); // 0.30 spent
    upstream.set({ firstByteDelayMs: 600 });
    try {
      const gateway = await startBinary({ config: config(dataDir), cwd });
      const served = chat(gateway.url, key);
      await Bun.sleep(20);
      gateway.proc.kill("SIGTERM");
      expect((await served).status).toBe(200);
      const started = performance.now();
      expect(await gateway.proc.exited).toBe(1);
      expect(performance.now() - started).toBeLessThan(5000); // no flush retried against a database that will not open
      expect(gateway.output()).toContain("cannot open the database");
    } finally {
      upstream.reset();
    }
    repair();
    const next = await startBinary({ config: config(dataDir), cwd });
    expect(await spendOf(next.url, key)).toBeCloseTo(0.6, 6);
    await next.stop("SIGTERM");
  }, 90_000);

  test("a run that is killed leaves no saved state, and the next start reads the database", async () => {
    const { cwd, dataDir, key } = await stoppedWithKey("warm-kill");
    const second = await startBinary({ config: config(dataDir), cwd });
    expect((await chat(second.url, key)).status).toBe(200);
    await until("the spend written", async () => Math.abs((await spendOf(second.url, key)) - 0.6) < 1e-9);
    await second.stop("SIGKILL");
    expect(existsSync(join(dataDir, "litegate-warm.json"))).toBe(false);
    const third = await startBinary({ config: config(dataDir), cwd });
    expect((await chat(third.url, key)).status).toBe(200);
    expect(await spendOf(third.url, key)).toBeCloseTo(0.6, 6);
    // Read from the database: the key's answer came after it was open.
    const output = third.output();
    expect(lineOf(output, /database open/)).toBe(-1); // an ordinary start opens the database before it listens
    await third.stop("SIGTERM");
  }, 90_000);

  test("a start that cannot listen leaves the saved state for the next one", async () => {
    const { cwd, dataDir, key, configPath } = await stoppedWithKey("warm-port");
    const taken = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: () => new Response() });
    try {
      const refused = await runBinary(["--config", configPath, "--port", String(taken.port), "--host", "127.0.0.1"], { cwd });
      expect(refused.code).toBe(1);
      expect(refused.stderr).toContain("the port is in use");
    } finally {
      taken.stop(true);
    }
    expect(existsSync(join(dataDir, "litegate-warm.json"))).toBe(true);
    const second = await startBinary({ config: config(dataDir), cwd });
    expect((await chat(second.url, key)).status).toBe(200);
    await second.waitForOutput(/database open/);
    expect(lineOf(second.output(), /INFO\s+request .*status=200/)).toBeLessThan(lineOf(second.output(), /database open/));
    expect(existsSync(join(dataDir, "litegate-warm.json"))).toBe(false); // gone once listening
    await second.stop("SIGTERM");
  }, 90_000);

  test("SIGTERM while a start opens the database stops it cleanly: the database closed, the directory released, exit 0", async () => {
    const cwd = tempDir("warm-term");
    const dataDir = join(cwd, "data");
    const first = await startBinary({ config: config(dataDir), cwd });
    const key = await newKey(first.url, {});
    await first.stop("SIGKILL"); // no saved state: the next start opens the database before it listens
    expect(existsSync(join(dataDir, "litegate.lock"))).toBe(true);
    await ensureBinary();
    const proc = spawn([BINARY, "--config", first.configPath, "--port", String(await freePort()), "--host", "127.0.0.1", "--debug"], { cwd, stdout: "pipe", stderr: "pipe" });
    let output = "";
    void (async () => {
      for await (const chunk of proc.stdout as ReadableStream<Uint8Array>) output += new TextDecoder().decode(chunk);
    })();
    // Logged just before the database is opened, which takes most of a second.
    await until("the config read", () => /config read/.test(output), 10_000);
    proc.kill("SIGTERM");
    expect(await proc.exited).toBe(0);
    await until("the output read", () => /stopped while starting/.test(output), 2000);
    expect(output).toContain("shutting down: stopping the start once its current step ends signal=SIGTERM");
    expect(output).not.toContain("listening");
    expect(existsSync(join(dataDir, "litegate.lock"))).toBe(false);
    const next = await startBinary({ config: config(dataDir), cwd });
    expect((await chat(next.url, key)).status).toBe(200);
    expect(await next.stop("SIGTERM")).toBe(0);
  }, 90_000);

  test("on a new data directory a gateway-wide budget with a period holds from the first request", async () => {
    const cwd = tempDir("warm-global");
    const gateway = await startBinary({ config: `${config(join(cwd, "data"))}litellm_settings:\n  max_budget: 0.5\n  budget_duration: 30d\n`, cwd });
    expect((await chat(gateway.url, "sk-1234")).status).toBe(200);
    expect((await chat(gateway.url, "sk-1234")).status).toBe(200); // 0.30 then 0.60 spent of 0.50
    const refused = await chat(gateway.url, "sk-1234");
    expect(refused.status).toBe(400);
    expect(((await refused.json()) as { error: { message: string } }).error.message).toContain("Spend=0.6");
    await gateway.stop("SIGTERM");
  }, 90_000);

  test("a second gateway on the same directory is refused while the first runs; after a kill -9 the next start takes it", async () => {
    const cwd = tempDir("warm-lock");
    const dataDir = join(cwd, "data");
    const first = await startBinary({ config: config(dataDir), cwd });
    const configPath = join(cwd, "second.yaml");
    writeFileSync(configPath, config(dataDir));
    const second = await runBinary(["--config", configPath, "--port", "0"], { cwd });
    expect(second.code).toBe(1);
    expect(second.stderr).toContain(`in use by another litegate (pid ${first.proc.pid})`);
    expect((await chat(first.url, "sk-1234")).status).toBe(200); // the first is untouched
    const migrate = await runBinary(["migrate", "--config", configPath], { cwd });
    expect(migrate.code).toBe(1);
    await first.stop("SIGKILL");
    const third = await startBinary({ config: config(dataDir), cwd });
    expect((await chat(third.url, "sk-1234")).status).toBe(200);
    expect(await third.stop("SIGTERM")).toBe(0);
    expect(existsSync(join(dataDir, "litegate.lock"))).toBe(false); // released at a clean stop
  }, 90_000);

  test("a new data directory serves the master key while the database is created", async () => {
    const cwd = tempDir("warm-new");
    const gateway = await startBinary({ config: config(join(cwd, "data")), cwd });
    const starting = await fetch(`${gateway.url}/health/readiness`);
    expect(starting.status).toBe(503);
    expect(await starting.json()).toMatchObject({ status: "starting", db: "opening" });
    expect((await chat(gateway.url, "sk-1234")).status).toBe(200);
    const key = await newKey(gateway.url, { max_budget: 1 }); // waits for the database
    expect((await chat(gateway.url, key)).status).toBe(200);
    await gateway.waitForOutput(/database open/);
    expect(lineOf(gateway.output(), /key=master.*status=200/)).toBeLessThan(lineOf(gateway.output(), /database open/));
    const ready = await fetch(`${gateway.url}/health/readiness`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ status: "healthy", db: "connected" });
    await gateway.stop("SIGTERM");
  }, 90_000);
});
