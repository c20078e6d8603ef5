import { expect, test } from "bun:test";
import { spawn } from "bun";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { MIGRATIONS } from "../../src/db";
import { BINARY, ensureBinary, runBinary, startBinary } from "../helpers/binary";
import { freePort, sharedPostgres, tempDir } from "../helpers/services";

/** How the binary starts from what its environment and command line say. */

const MODELS = `
model_list:
  - model_name: m
    litellm_params: {model: mock/m, mock_response: hi, input_cost_per_token: 0.000001, output_cost_per_token: 0.000001}
`;

const generate = (url: string, key: string) =>
  fetch(`${url}/key/generate`, { method: "POST", headers: { authorization: `Bearer ${key}` }, body: "{}" });

test("LITELLM_MASTER_KEY is the master key when config.yaml sets none; without either, the start warns that the admin API is unusable", async () => {
  const fromEnv = await startBinary({ config: MODELS, env: { LITELLM_MASTER_KEY: "sk-from-env" } });
  try {
    expect((await generate(fromEnv.url, "sk-from-env")).status).toBe(200);
    expect(fromEnv.output()).not.toContain("no master key");
  } finally {
    await fromEnv.stop();
  }
  const configured = await startBinary({ config: `${MODELS}general_settings:\n  master_key: sk-from-config\n`, env: { LITELLM_MASTER_KEY: "sk-from-env" } });
  try {
    expect((await generate(configured.url, "sk-from-config")).status).toBe(200);
    expect((await generate(configured.url, "sk-from-env")).status).toBe(401);
  } finally {
    await configured.stop();
  }
  const none = await startBinary({ config: MODELS, env: { LITELLM_MASTER_KEY: "" } });
  try {
    await none.waitForOutput(/no master key \(general_settings\.master_key or LITELLM_MASTER_KEY\): the admin API refuses/);
  } finally {
    await none.stop();
  }
}, 60_000);

test("LiteLLM's command line: the config path alone, PORT and HOST from the environment, --detailed_debug, --num_workers warned about", async () => {
  await ensureBinary();
  const cwd = tempDir("cli");
  writeFileSync(join(cwd, "config.yaml"), `${MODELS}general_settings:\n  master_key: sk-1234\n  data_dir: ${join(cwd, "db")}\n`);
  const port = await freePort();
  const proc = spawn([BINARY, "config.yaml", "--detailed_debug", "--num_workers", "4"], {
    cwd, env: { ...process.env, PORT: String(port), HOST: "127.0.0.1" }, stdout: "pipe", stderr: "pipe",
  });
  try {
    let up = false;
    for (let tries = 0; tries < 300 && !up && proc.exitCode === null; tries++) {
      up = await fetch(`http://127.0.0.1:${port}/health/liveliness`).then((r) => r.ok, () => false);
      if (!up) await Bun.sleep(50);
    }
    expect(up).toBe(true);
  } finally {
    proc.kill("SIGTERM");
    await proc.exited;
  }
  const output = (await new Response(proc.stdout).text()) + (await new Response(proc.stderr).text());
  expect(output).toMatch(/DEBUG config read path=config\.yaml models=1/);
  expect(output).toContain("--num_workers 4: litegate runs as one process");
  expect(output).toContain(`listening url=http://127.0.0.1:${port}`);
}, 60_000);

/** Whether a process catches or ignores SIGHUP (bit 1 of the masks /proc shows): its start has reached its first handler. */
function hangupHandled(pid: number): boolean {
  let status: string;
  try {
    status = readFileSync(`/proc/${pid}/status`, "utf8");
  } catch {
    return false;
  }
  const mask = (name: string) => BigInt(`0x${new RegExp(`^${name}:\\s*([0-9a-f]+)$`, "m").exec(status)?.[1] ?? "0"}`);
  return ((mask("SigCgt") | mask("SigIgn")) & 1n) !== 0n;
}

test("a SIGHUP while the gateway starts is ignored, also across the process replacing itself with the allocator setting", async () => {
  await ensureBinary();
  for (const delayMs of [0, 10, 30]) {
    const cwd = tempDir("hangup");
    writeFileSync(join(cwd, "config.yaml"), `${MODELS}general_settings:\n  master_key: sk-1234\n`);
    const port = await freePort();
    // Without the setting in the environment, the process replaces itself (early.ts).
    const env: Record<string, string | undefined> = { ...process.env };
    delete env.MIMALLOC_PURGE_DELAY;
    const proc = spawn([BINARY, "--config", "config.yaml", "--port", String(port), "--host", "127.0.0.1"], { cwd, env, stdout: "ignore", stderr: "pipe" });
    try {
      // Before the runtime has started JavaScript nothing can catch it (the README says so): from the first handler on.
      while (!hangupHandled(proc.pid) && proc.exitCode === null) await Bun.sleep(1);
      await Bun.sleep(delayMs);
      let up = false;
      for (let tries = 0; tries < 3000 && !up && proc.exitCode === null; tries++) {
        proc.kill("SIGHUP");
        up = await fetch(`http://127.0.0.1:${port}/health/liveliness`).then((r) => r.ok, () => false);
        if (!up) await Bun.sleep(5);
      }
      expect({ delayMs, up, signal: proc.signalCode }).toEqual({ delayMs, up: true, signal: null });
    } finally {
      proc.kill("SIGKILL");
      await proc.exited;
    }
  }
}, 90_000);

test("with JSON logs, a SIGHUP ignored while starting is logged as a JSON line", async () => {
  await ensureBinary();
  const cwd = tempDir("hangup-json");
  // On Postgres the start waits on the network (connecting, migrating), when the signal is handled.
  writeFileSync(join(cwd, "config.yaml"), `${MODELS}general_settings:\n  master_key: sk-1234\n  database_url: ${await (await sharedPostgres()).newDatabase()}\n`);
  const port = await freePort();
  // With the allocator setting given (as the systemd unit gives it) the process does not replace itself,
  // whose new image would inherit the signal ignored and never see it.
  const env = { ...process.env, MIMALLOC_PURGE_DELAY: "-1" };
  const proc = spawn([BINARY, "--config", "config.yaml", "--port", String(port), "--host", "127.0.0.1", "--log-format", "json"], { cwd, env, stdout: "pipe", stderr: "pipe" });
  try {
    while (!hangupHandled(proc.pid) && proc.exitCode === null) await Bun.sleep(1);
    let up = false;
    for (let tries = 0; tries < 3000 && !up && proc.exitCode === null; tries++) {
      proc.kill("SIGHUP");
      up = await fetch(`http://127.0.0.1:${port}/health/liveliness`).then((r) => r.ok, () => false);
      if (!up) await Bun.sleep(2);
    }
    expect(up).toBe(true);
  } finally {
    proc.kill("SIGTERM");
    await proc.exited;
  }
  const lines = ((await new Response(proc.stdout).text()) + (await new Response(proc.stderr).text())).split("\n").filter(Boolean);
  expect(lines.filter((line) => !line.startsWith("{"))).toEqual([]);
  const ignored = lines.map((line) => JSON.parse(line)).filter((entry) => /SIGHUP while starting/.test(entry.msg));
  expect(ignored.length).toBeGreaterThan(0);
  expect(ignored[0].level).toBe("warn");
}, 60_000);

test("`litegate migrate` says how many migrations it applied, and that they are up to date only when it applied none", async () => {
  const cwd = tempDir("migrate-count");
  writeFileSync(join(cwd, "config.yaml"), `general_settings:\n  master_key: sk-1234\n  database_url: ${await (await sharedPostgres()).newDatabase()}\n`);
  const first = await runBinary(["migrate", "--config", "config.yaml"], { cwd });
  expect(first.code).toBe(0);
  expect(first.stdout).toEndWith(`\napplied ${MIGRATIONS.length} migrations\n`); // after a log line for each
  const again = await runBinary(["migrate", "--config", "config.yaml"], { cwd });
  expect(again.code).toBe(0);
  expect(again.stdout).toEndWith("migrations up to date\n");
  expect(again.stdout).not.toContain("applied");
}, 60_000);
