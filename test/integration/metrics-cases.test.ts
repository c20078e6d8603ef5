import { expect, test } from "bun:test";
import { readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { runBinary, startBinary } from "../helpers/binary";
import { startPostgres, tempDir } from "../helpers/services";
import { startUpstream } from "../helpers/upstream";

const MODEL = `model_list:
  - model_name: m
    litellm_params: {model: mock/m, mock_response: "hi"}
`;

test("a config error never shows a secret written in the wrong shape: the master key, a provider key, a password or a URL holding one", async () => {
  const cwd = tempDir("secret-config");
  const cases: Array<[string, string]> = [
    ["general_settings: {master_key: [sk-SECRET-master]}", "general_settings.master_key"],
    [`model_list:\n  - model_name: m\n    litellm_params: {model: openai/m, api_key: [sk-SECRET-provider]}\ngeneral_settings: {master_key: sk-1234}`, "model_list[0].litellm_params.api_key"],
    [`model_list:\n  - model_name: m\n    litellm_params: {model: openai/m, api_key: sk-x, api_base: "ftp://user:SECRET-base@host/v1?token=SECRET-query"}\ngeneral_settings: {master_key: sk-1234}`, "model_list[0].litellm_params.api_base"],
    ["general_settings: {master_key: sk-1234, database_url: [\"postgres://u:SECRET-db@h/db\"]}", "general_settings.database_url"],
    ["general_settings: {master_key: sk-1234, redis_url: {url: \"redis://:SECRET-redis@h:6379\"}}", "general_settings.redis_url"],
    ["router_settings: {redis_host: h, redis_port: 6379, redis_password: {pw: SECRET-router}}\ngeneral_settings: {master_key: sk-1234}", "router_settings.redis_password"],
    ["litellm_settings: {cache: true, cache_params: {type: redis, host: h, port: 6379, password: [SECRET-cache]}}\ngeneral_settings: {master_key: sk-1234}", "litellm_settings.cache_params.password"],
  ];
  for (const [yaml, path] of cases) {
    writeFileSync(join(cwd, "c.yaml"), `${yaml}\n`);
    const result = await runBinary(["--config", join(cwd, "c.yaml"), "--port", "0"], { cwd });
    expect(result.code).toBe(1);
    // The setting is named, as every config error names it; what it holds is not shown.
    expect(result.stderr).toContain(path);
    expect(result.stderr).not.toContain("SECRET");
  }
});

test("with log_format json every line the binary writes is JSON, the error that stops a start included", async () => {
  const cwd = tempDir("json-fatal");
  const taken = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  try {
    const jsonLines = (text: string) => text.trim().split("\n").filter(Boolean).map((line) => {
      try {
        return JSON.parse(line);
      } catch {
        throw new Error(`not a JSON line: ${line}`);
      }
    });
    writeFileSync(join(cwd, "c.yaml"), `${MODEL}general_settings: {master_key: sk-1234, data_dir: ${join(cwd, "db")}, log_format: json}\n`);
    const inUse = await runBinary(["--config", join(cwd, "c.yaml"), "--host", "127.0.0.1", "--port", String(taken.port)], { cwd });
    expect(inUse.code).toBe(1);
    expect(jsonLines(inUse.stdout + inUse.stderr).at(-1)).toMatchObject({ level: "error", msg: `cannot listen on 127.0.0.1:${taken.port}: the port is in use` });
    // --log-format json holds before the config is read too: a config that cannot be read is a JSON line.
    const missing = await runBinary(["--config", join(cwd, "missing.yaml"), "--log-format", "json"], { cwd });
    expect(missing.code).toBe(1);
    expect(jsonLines(missing.stderr).at(-1)).toMatchObject({ level: "error" });
    expect(jsonLines(missing.stderr).at(-1).msg).toContain("missing.yaml");
  } finally {
    taken.stop(true);
  }
});

test("a proxy_admin_viewer, who reads all spend, reads /metrics too; other keys get 401", async () => {
  const gateway = await startBinary({ config: `${MODEL}general_settings:\n  master_key: sk-1234\n` });
  try {
    const admin = { authorization: "Bearer sk-1234" };
    const keyOf = async (role: string) => (await (await fetch(`${gateway.url}/user/new`, { method: "POST", headers: admin, body: JSON.stringify({ user_role: role }) })).json() as { key: string }).key;
    const viewer = await keyOf("proxy_admin_viewer");
    const user = await keyOf("internal_user");
    expect((await fetch(`${gateway.url}/global/spend`, { headers: { authorization: `Bearer ${viewer}` } })).status).toBe(200);
    const scrape = await fetch(`${gateway.url}/metrics`, { headers: { authorization: `Bearer ${viewer}` } });
    expect(scrape.status).toBe(200);
    expect(await scrape.text()).toContain("litegate_requests_total");
    expect((await fetch(`${gateway.url}/metrics`, { headers: { authorization: `Bearer ${user}` } })).status).toBe(401);
  } finally {
    await gateway.stop();
  }
});

test("SIGTERM while Postgres hangs: the spend it cannot take is saved within the deadline, the gateway exits, and the next start writes it once", async () => {
  const pg = await startPostgres();
  const url = await pg.newDatabase();
  const cwd = tempDir("hung-stop");
  const config = `${MODEL.replace('mock_response: "hi"}', 'mock_response: "hi", input_cost_per_token: 0.001, output_cost_per_token: 0.001}')}general_settings:\n  master_key: sk-1234\n  database_url: ${url}\n`;
  const admin = { authorization: "Bearer sk-1234" };
  let gateway = await startBinary({ config, cwd });
  let paused = false;
  try {
    const { key } = (await (await fetch(`${gateway.url}/key/generate`, { method: "POST", headers: admin, body: "{}" })).json()) as { key: string };
    let cost = 0;
    // Answered just before the server stops answering: their spend is not written yet.
    for (let i = 0; i < 3; i++) {
      const answer = await fetch(`${gateway.url}/v1/chat/completions`, { method: "POST", headers: { authorization: `Bearer ${key}` }, body: JSON.stringify({ model: "m", messages: [{ role: "user", content: "hi" }] }) });
      cost += Number(answer.headers.get("x-litellm-response-cost"));
    }
    pg.pause();
    paused = true;
    const started = Date.now();
    const code = await Promise.race([gateway.stop("SIGTERM"), Bun.sleep(30_000).then(() => "still running")]);
    if (code === "still running") gateway.proc.kill("SIGKILL");
    // 10 s for the database to take the spend, then 5 s at most to close its connections.
    expect(code).toBe(0);
    expect(Date.now() - started).toBeLessThan(20_000);
    expect(readdirSync(join(cwd, "litegate-data", "spend-pending")).length).toBeGreaterThan(0);
    pg.resume();
    paused = false;
    gateway = await startBinary({ config, cwd });
    const info = (await (await fetch(`${gateway.url}/key/info?key=${key}`, { headers: admin })).json()) as { info: { spend: number } };
    expect(info.info.spend).toBeCloseTo(cost, 12);
    expect(readdirSync(join(cwd, "litegate-data", "spend-pending"))).toEqual([]);
  } finally {
    if (paused) pg.resume();
    await gateway.stop("SIGKILL");
    // Its own server only: the suite's shared Postgres serves the test files after this one.
    await pg.stop();
  }
}, 90_000);

test("a client that leaves is no provider failure: litegate_upstream_errors_total counts what providers did, requests_total shows the 499s", async () => {
  const upstream = await startUpstream({ firstByteDelayMs: 300, chunks: 5, chunkDelayMs: 200 });
  const gateway = await startBinary({ config: `model_list:
  - model_name: m
    litellm_params: {model: openai/m, api_base: "${upstream.url}", api_key: sk-up, input_cost_per_token: 0.000001, output_cost_per_token: 0.000002}
general_settings:
  master_key: sk-1234
` });
  try {
    const admin = { authorization: "Bearer sk-1234" };
    const leave = async (stream: boolean) => {
      const controller = new AbortController();
      const answer = fetch(`${gateway.url}/v1/chat/completions`, { method: "POST", headers: admin, signal: controller.signal, body: JSON.stringify({ model: "m", stream, messages: [{ role: "user", content: "hi" }] }) });
      if (stream) await (await answer).body!.getReader().read();
      else await Bun.sleep(100);
      controller.abort();
      await answer.catch(() => {});
    };
    await leave(false);
    await leave(true);
    upstream.set({ firstByteDelayMs: 0, status: 503, errorMessage: "overloaded" });
    await (await fetch(`${gateway.url}/v1/chat/completions`, { method: "POST", headers: admin, body: JSON.stringify({ model: "m", messages: [{ role: "user", content: "hi" }] }) })).text();
    let scrape = "";
    for (const until = Date.now() + 5000; Date.now() < until; await Bun.sleep(100)) {
      scrape = await (await fetch(`${gateway.url}/metrics`, { headers: admin })).text();
      if (/litegate_requests_total\{model="m",route="chat",status="499"\} 2/.test(scrape)) break;
    }
    expect(scrape).toMatch(/litegate_requests_total\{model="m",route="chat",status="499"\} 2/);
    const errors = scrape.split("\n").filter((line) => line.startsWith("litegate_upstream_errors_total{"));
    expect(errors).toEqual([expect.stringMatching(/^litegate_upstream_errors_total\{deployment="m#[0-9a-f]+",status="503"\} 1$/)]);
  } finally {
    await gateway.stop();
    upstream.stop();
  }
});

test("a reload while Postgres is down swaps models and prices (it needs no database); one that needs it is a 503, not an invalid config", async () => {
  const pg = await startPostgres();
  const url = await pg.newDatabase();
  const config = (answer: string, extra = "") => `model_list:
  - model_name: m
    litellm_params: {model: mock/m, mock_response: "${answer}"}
${extra}general_settings:
  master_key: sk-1234
  database_url: ${url}
`;
  const gateway = await startBinary({ config: config("before") });
  const admin = { authorization: "Bearer sk-1234" };
  const answer = async () => ((await (await fetch(`${gateway.url}/v1/chat/completions`, { method: "POST", headers: admin, body: JSON.stringify({ model: "m", messages: [{ role: "user", content: "hi" }] }) })).json()) as any).choices[0].message.content;
  try {
    expect(await answer()).toBe("before");
    await pg.stop();
    writeFileSync(gateway.configPath, config("after"));
    const reload = await fetch(`${gateway.url}/config/reload`, { method: "POST", headers: admin });
    expect(reload.status).toBe(200);
    expect(await answer()).toBe("after");
    // A default budget duration changed: its periods start in the database, which cannot be reached now.
    writeFileSync(gateway.configPath, config("later", "litellm_settings: {internal_user_budget_duration: 1d}\n"));
    const refused = await fetch(`${gateway.url}/config/reload`, { method: "POST", headers: admin });
    expect(refused.status).toBe(503);
    expect(((await refused.json()) as any).error).toMatchObject({ type: "service_unavailable", code: "503" });
    expect(await answer()).toBe("after");
    // A server that hangs rather than refuses: answered 503 within seconds, as other admin calls are, not held.
    await pg.start();
    for (let ok = false; !ok; await Bun.sleep(100)) ok = (await fetch(`${gateway.url}/health/readiness`)).status === 200;
    pg.pause();
    const started = Date.now();
    const held = await Promise.race([fetch(`${gateway.url}/config/reload`, { method: "POST", headers: admin }), Bun.sleep(20_000).then(() => null)]);
    pg.resume();
    expect(held?.status).toBe(503);
    expect(Date.now() - started).toBeLessThan(15_000);
  } finally {
    pg.resume();
    await gateway.stop("SIGKILL");
    await pg.stop();
  }
}, 90_000);

test("/health checks a wildcard entry with its model_info.health_check_model, as LiteLLM does, not with the pattern", async () => {
  const upstream = await startUpstream();
  const gateway = await startBinary({ config: `model_list:
  - model_name: "openai/*"
    litellm_params: {model: "openai/*", api_base: "${upstream.url}", api_key: sk-up}
    model_info: {health_check_model: openai/gpt-4o-mini}
  - model_name: "other/*"
    litellm_params: {model: "openai/*", api_base: "${upstream.url}", api_key: sk-up}
general_settings:
  master_key: sk-1234
` });
  try {
    const body = (await (await fetch(`${gateway.url}/health`, { headers: { authorization: "Bearer sk-1234" } })).json()) as any;
    // The one with a health_check_model is called with it; the other has no model to call: said so, nothing sent.
    expect(upstream.requests.map((r) => r.body.model)).toEqual(["gpt-4o-mini"]);
    expect(body.healthy_endpoints.map((e: any) => e.model_name)).toEqual(["openai/*"]);
    expect(body.unhealthy_endpoints).toEqual([expect.objectContaining({ model_name: "other/*", error: expect.stringContaining("health_check_model") })]);
    expect(gateway.output()).not.toContain("health_check_model: not supported");
  } finally {
    await gateway.stop();
    upstream.stop();
  }
});
