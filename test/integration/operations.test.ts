import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { type RunningGateway, startBinary } from "../helpers/binary";
import { type Upstream, startUpstream } from "../helpers/upstream";

let upstream: Upstream;
let gateway: RunningGateway;

const config = (price: number, rpm = 1000) => `
model_list:
  - model_name: m
    litellm_params: {model: openai/m, api_base: "${upstream.url}", input_cost_per_token: ${price}, output_cost_per_token: ${price}}
general_settings:
  master_key: sk-1234
  log_format: json
`;

const chat = (key = "sk-1234") =>
  fetch(`${gateway.url}/v1/chat/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    body: JSON.stringify({ model: "m", messages: [{ role: "user", content: "hi" }] }),
  });

beforeAll(async () => {
  upstream = await startUpstream();
  gateway = await startBinary({ config: config(0.000001) });
}, 120_000);
afterAll(async () => {
  await gateway.stop("SIGKILL");
  upstream.stop();
});

describe("operations", () => {
  test("one JSON log line per request with its id, never the key; the id comes back in x-litellm-call-id", async () => {
    const created = await fetch(`${gateway.url}/key/generate`, { method: "POST", headers: { authorization: "Bearer sk-1234" }, body: '{"key_alias": "ops-key"}' });
    const { key } = (await created.json()) as any;
    const response = await chat(key);
    const id = response.headers.get("x-litellm-call-id")!;
    expect(id).toMatch(/^[0-9a-f-]{36}$/);
    await gateway.waitForOutput(new RegExp(id));
    const line = gateway.output().split("\n").find((l) => l.includes(id))!;
    const entry = JSON.parse(line);
    expect(entry).toMatchObject({ msg: "request", request_id: id, key: "ops-key", model: "m", status: 200, prompt_tokens: 10, completion_tokens: 20 });
    expect(entry.cost).toBeCloseTo(30 * 0.000001, 12);
    expect(gateway.output()).not.toContain(key);
  });

  test("SIGHUP reloads prices live; an invalid file is refused and the running config kept", async () => {
    expect(Number((await chat()).headers.get("x-litellm-response-cost"))).toBeCloseTo(30 * 0.000001, 12);
    writeFileSync(gateway.configPath, config(0.00001));
    gateway.proc.kill("SIGHUP");
    await gateway.waitForOutput(/config reloaded/);
    expect(Number((await chat()).headers.get("x-litellm-response-cost"))).toBeCloseTo(30 * 0.00001, 12);
    // Limits too: a gateway budget of 0 set by a reload refuses the next request.
    writeFileSync(gateway.configPath, `${config(0.00001)}litellm_settings:\n  max_budget: 0\n`);
    gateway.proc.kill("SIGHUP");
    await gateway.waitForOutput(/config reloaded[\s\S]*config reloaded/);
    const refused = await chat();
    expect(refused.status).toBe(400);
    expect(((await refused.json()) as any).error.message).toContain("Proxy over budget");
    writeFileSync(gateway.configPath, config(0.00001));
    gateway.proc.kill("SIGHUP");
    await gateway.waitForOutput(/config reloaded[\s\S]*config reloaded[\s\S]*config reloaded/);
    expect((await chat()).status).toBe(200);
    writeFileSync(gateway.configPath, "model_list: [{model_name: broken}]\n");
    const invalid = await fetch(`${gateway.url}/config/reload`, { method: "POST", headers: { authorization: "Bearer sk-1234" } });
    expect(invalid.status).toBe(400);
    expect(((await invalid.json()) as any).error.message).toContain("litellm_params");
    expect((await chat()).status).toBe(200);
    // An empty file (as while it is being rewritten) would switch every model off: refused too, by SIGHUP as well.
    for (const empty of ["", "# nothing yet\n"]) {
      writeFileSync(gateway.configPath, empty);
      const refused = await fetch(`${gateway.url}/config/reload`, { method: "POST", headers: { authorization: "Bearer sk-1234" } });
      expect(refused.status).toBe(400);
      expect(((await refused.json()) as any).error).toMatchObject({ type: "invalid_config", message: expect.stringContaining("the file holds no config") });
    }
    gateway.proc.kill("SIGHUP");
    await gateway.waitForOutput(/config reload refused[^\n]*the file holds no config[\s\S]*config reload refused[^\n]*the file holds no config[\s\S]*config reload refused[^\n]*the file holds no config/);
    expect((await chat()).status).toBe(200);
  });

  test("metrics: a Prometheus scrape after traffic shows requests, tokens, spend and rejections", async () => {
    await chat("sk-not-a-key");
    const scrape = await (await fetch(`${gateway.url}/metrics`, { headers: { authorization: "Bearer sk-1234" } })).text();
    expect(scrape).toMatch(/litegate_requests_total\{model="m",route="chat",status="200"\} \d+/);
    expect(scrape).toMatch(/litegate_tokens_total\{[^}]*kind="prompt"\} \d+/);
    expect(scrape).toMatch(/litegate_spend_usd_total\{[^}]*\} [\d.e-]+/);
    expect(scrape).toMatch(/litegate_rejections_total\{reason="auth_error"\} [1-9]/);
    expect(scrape).toContain("litegate_spend_backlog_requests");
    expect((await fetch(`${gateway.url}/metrics`)).status).toBe(401);
  });
});

describe("admin API placement", () => {
  test("admin_api: disabled serves inference only; admin_port moves the admin API to its own port", async () => {
    const disabled = await startBinary({ config: config(0.000001).replace("  log_format: json\n", "  admin_api: disabled\n") });
    const refused = await fetch(`${disabled.url}/key/generate`, { method: "POST", headers: { authorization: "Bearer sk-1234" }, body: "{}" });
    expect(refused.status).toBe(404);
    expect((await fetch(`${disabled.url}/v1/chat/completions`, {
      method: "POST", headers: { authorization: "Bearer sk-1234" }, body: JSON.stringify({ model: "m", messages: [{ role: "user", content: "hi" }] }),
    })).status).toBe(200);
    await disabled.stop();

    const { freePort } = await import("../helpers/services");
    const adminPort = await freePort();
    const split = await startBinary({ config: config(0.000001).replace("  log_format: json\n", `  admin_port: ${adminPort}\n`) });
    expect((await fetch(`${split.url}/key/generate`, { method: "POST", headers: { authorization: "Bearer sk-1234" }, body: "{}" })).status).toBe(404);
    const created = await fetch(`http://127.0.0.1:${adminPort}/key/generate`, { method: "POST", headers: { authorization: "Bearer sk-1234" }, body: "{}" });
    expect(created.status).toBe(200);
    const { key } = (await created.json()) as any;
    expect((await fetch(`${split.url}/v1/chat/completions`, {
      method: "POST", headers: { authorization: `Bearer ${key}` }, body: JSON.stringify({ model: "m", messages: [{ role: "user", content: "hi" }] }),
    })).status).toBe(200);
    await split.stop();
  }, 60_000);
});
