import { afterAll, beforeAll, expect, test } from "bun:test";
import { spawn } from "bun";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { stringify } from "yaml";
import { BINARY, ensureBinary, runBinary, startBinary } from "../helpers/binary";
import { tempDir } from "../helpers/services";
import { type Upstream, startUpstream } from "../helpers/upstream";

let upstream: Upstream;
beforeAll(async () => {
  upstream = await startUpstream();
  await ensureBinary();
}, 120_000);
afterAll(() => upstream.stop());

/** Runs the binary, killing it after `ms`: a start that hangs shows as `hung`. */
async function runFor(args: string[], ms: number, cwd: string) {
  const proc = spawn([BINARY, ...args], { cwd, stdout: "pipe", stderr: "pipe" });
  let hung = false;
  const killer = setTimeout(() => {
    hung = true;
    proc.kill("SIGKILL");
  }, ms);
  const [code, stderr] = await Promise.all([proc.exited, new Response(proc.stderr).text()]);
  clearTimeout(killer);
  return { code, stderr, hung };
}

test("a database_url naming a server that is not Postgres (an HTTP port) stops the start with a clear error, not a hang", async () => {
  // What an HTTP server answers to Postgres's startup message, then it closes the connection.
  const http = Bun.listen({
    hostname: "127.0.0.1", port: 0,
    socket: { data(socket) { socket.write("HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"); socket.end(); } },
  });
  try {
    const cwd = tempDir("not-postgres");
    const url = `postgres://litegate:s3cret@127.0.0.1:${http.port}/litegate`;
    writeFileSync(join(cwd, "c.yaml"), stringify({ general_settings: { master_key: "sk-1234", database_url: url } }));
    for (const args of [["--config", "c.yaml", "--port", "0"], ["migrate", "--config", "c.yaml"]]) {
      const result = await runFor(args, 40_000, cwd);
      expect(result.hung).toBe(false);
      expect(result.code).toBe(1);
      expect(result.stderr.trim().split("\n").at(-1)).toContain("litegate: cannot open the database: general_settings.database_url: no answer from a Postgres server");
      expect(result.stderr).not.toContain("s3cret");
    }
  } finally {
    http.stop(true);
  }
}, 90_000);

test("a deployment timeout longer than the runtime's timers hold (24.8 days) waits, it does not time every request out at once", async () => {
  const gateway = await startBinary({
    config: {
      model_list: [{ model_name: "m", litellm_params: { model: "openai/test-model", api_base: upstream.url, api_key: "sk-x", timeout: 3_000_000, stream_timeout: 3_000_000 } }],
      general_settings: { master_key: "sk-1234", data_dir: join(tempDir("long-timeout"), "db") },
    },
  });
  try {
    for (const stream of [false, true]) {
      const response = await fetch(`${gateway.url}/v1/chat/completions`, {
        method: "POST", headers: { authorization: "Bearer sk-1234", "x-test-behaviour": JSON.stringify({ firstByteDelayMs: 100 }) },
        body: JSON.stringify({ model: "m", stream, messages: [{ role: "user", content: "hi" }] }),
      });
      const text = await response.text();
      expect({ stream, status: response.status }).toEqual({ stream, status: 200 });
      expect(text).toContain("Hello");
    }
  } finally {
    await gateway.stop("SIGKILL");
  }
}, 60_000);

test("budget reset passes set more than 24.8 days apart run that far apart, not every millisecond", async () => {
  const gateway = await startBinary({
    config: { general_settings: { master_key: "sk-1234", data_dir: join(tempDir("long-passes"), "db"), proxy_budget_rescheduler_min_time: 3_000_000, proxy_budget_rescheduler_max_time: 3_000_000 } },
  });
  try {
    const statements = async () => {
      const text = await (await fetch(`${gateway.url}/metrics`, { headers: { authorization: "Bearer sk-1234" } })).text();
      return Number(/^litegate_db_statements (\d+)/m.exec(text)?.[1]);
    };
    await Bun.sleep(1500); // the embedded database open
    const before = await statements();
    await Bun.sleep(1000);
    expect((await statements()) - before).toBeLessThan(10);
    expect(gateway.output()).not.toContain("TimeoutOverflowWarning");
  } finally {
    await gateway.stop("SIGKILL");
  }
}, 60_000);

test("a setting of the wrong type stops the start naming the file, the line and the key; a reload refuses it the same way", async () => {
  const cwd = tempDir("config-lines");
  const good = "model_list:\n  - model_name: m\n    litellm_params: {model: mock/m}\ngeneral_settings:\n  master_key: sk-1234\n  data_dir: ./db\n";
  const bad = `${good}litellm_settings:\n  max_budget: 100\n  budget_duration: monthly\n`;
  writeFileSync(join(cwd, "config.yaml"), bad);
  const result = await runBinary(["--config", "config.yaml", "--port", "0"], { cwd });
  expect(result.code).toBe(1);
  expect(result.stderr.trim()).toBe('litegate: invalid config: config.yaml:9: litellm_settings.budget_duration: "monthly" is not a duration (use 30s, 20m, 1h, 7d, 2w or 1mo: longer than zero, at most a century)');
  const gateway = await startBinary({ cwd, config: good });
  try {
    writeFileSync(gateway.configPath, bad);
    const reload = await fetch(`${gateway.url}/config/reload`, { method: "POST", headers: { authorization: "Bearer sk-1234" } });
    expect(reload.status).toBe(400);
    expect(((await reload.json()) as any).error.message).toContain(`${gateway.configPath}:9: litellm_settings.budget_duration: "monthly" is not a duration`);
  } finally {
    await gateway.stop("SIGKILL");
  }
}, 60_000);

test("model names a wildcard entry serves, as many as clients make up, cap the metrics' model label at 200 values, as key aliases are", async () => {
  const gateway = await startBinary({
    config: { model_list: [{ model_name: "mock/*", litellm_params: { model: "mock/*" } }], general_settings: { master_key: "sk-1234", data_dir: join(tempDir("model-labels"), "db") } },
  });
  try {
    for (let i = 0; i < 250; i++) {
      const response = await fetch(`${gateway.url}/v1/chat/completions`, {
        method: "POST", headers: { authorization: "Bearer sk-1234" },
        body: JSON.stringify({ model: `mock/made-up-${i}`, messages: [{ role: "user", content: "hi" }] }),
      });
      expect(response.status).toBe(200);
      await response.text();
    }
    const text = await (await fetch(`${gateway.url}/metrics`, { headers: { authorization: "Bearer sk-1234" } })).text();
    const models = new Set([...text.matchAll(/^litegate_requests_total\{model="([^"]*)"/gm)].map((m) => m[1]));
    expect(models.size).toBe(201);
    expect(models.has("other")).toBe(true);
    expect(text).toMatch(/^litegate_requests_total\{model="other",route="chat",status="200"\} 50$/m);
  } finally {
    await gateway.stop("SIGKILL");
  }
}, 60_000);
