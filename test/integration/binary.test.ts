import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import OpenAI from "openai";
import { stringify } from "yaml";
import { MIGRATIONS } from "../../src/db/migrations";
import { type RunningGateway, runBinary, startBinary } from "../helpers/binary";
import { sharedPostgres, startRedis, tempDir } from "../helpers/services";
import { type Upstream, startUpstream } from "../helpers/upstream";

let upstream: Upstream;
let gateway: RunningGateway;
let client: OpenAI;

const configFor = (upstreamUrl: string, extra = "") => `
model_list:
  - model_name: test-model
    litellm_params:
      model: openai/test-model
      api_base: ${upstreamUrl}
      api_key: sk-provider-secret-123
      input_cost_per_token: 0.000001
      output_cost_per_token: 0.000002
  - model_name: renamed
    litellm_params:
      model: openai/upstream-name
      api_base: ${upstreamUrl}
  - model_name: embed
    litellm_params:
      model: openai/text-embedding-3-small
      api_base: ${upstreamUrl}
general_settings:
  master_key: sk-1234
${extra}`;

beforeAll(async () => {
  upstream = await startUpstream();
  gateway = await startBinary({ config: configFor(upstream.url) });
  client = new OpenAI({ apiKey: "sk-1234", baseURL: `${gateway.url}/v1`, maxRetries: 0 });
}, 120_000);
afterAll(async () => {
  await gateway.stop("SIGKILL");
  upstream.stop();
});

describe("the compiled binary with the openai client", () => {
  test("chat completion; unknown body fields reach the provider byte for byte", async () => {
    upstream.reset();
    const response = await client.chat.completions.create({
      model: "test-model", messages: [{ role: "user", content: "hi" }], // @ts-expect-error a field the SDK does not know
      my_new_param: { nested: [1, 2] },
    });
    expect(response.choices[0]!.message.content).toBe("Hello from the test upstream");
    expect(response.usage!.total_tokens).toBe(30);
    const seen = upstream.requests.at(-1)!;
    expect(seen.body.my_new_param).toEqual({ nested: [1, 2] });
    expect(seen.headers.authorization).toBe("Bearer sk-provider-secret-123");
  });

  test("browsers may call it from any origin, as LiteLLM allows by default: preflights and readable answers", async () => {
    for (const path of ["/v1/chat/completions", "/v1/models", "/key/generate"]) {
      const preflight = await fetch(`${gateway.url}${path}`, {
        method: "OPTIONS",
        headers: { origin: "https://app.example", "access-control-request-method": "POST", "access-control-request-headers": "authorization, content-type" },
      });
      expect(`${path} ${preflight.status}`).toBe(`${path} 204`);
      expect(preflight.headers.get("access-control-allow-origin")).toBe("*");
      expect(preflight.headers.get("access-control-allow-headers")).toBe("authorization, content-type");
    }
    const headers = { origin: "https://app.example", authorization: "Bearer sk-1234", "content-type": "application/json" };
    const chat = await fetch(`${gateway.url}/v1/chat/completions`, { method: "POST", headers, body: JSON.stringify({ model: "test-model", messages: [{ role: "user", content: "hi" }] }) });
    expect(chat.status).toBe(200);
    expect(chat.headers.get("access-control-allow-origin")).toBe("*");
    expect(chat.headers.get("access-control-expose-headers")).toBe("*");
    const refused = await fetch(`${gateway.url}/v1/chat/completions`, { method: "POST", headers: { ...headers, authorization: "Bearer nope" }, body: "{}" });
    expect(refused.status).toBe(401);
    expect(refused.headers.get("access-control-allow-origin")).toBe("*");
    const models = await fetch(`${gateway.url}/v1/models`, { headers });
    expect(models.headers.get("access-control-allow-origin")).toBe("*");
    // Without an Origin (servers, SDKs) nothing is added.
    const plain = await fetch(`${gateway.url}/v1/models`, { headers: { authorization: "Bearer sk-1234" } });
    expect(plain.headers.get("access-control-allow-origin")).toBeNull();
  });

  test("the public model name is replaced by the deployment's", async () => {
    upstream.reset();
    await client.chat.completions.create({ model: "renamed", messages: [{ role: "user", content: "hi" }] });
    expect(upstream.requests.at(-1)!.body.model).toBe("upstream-name");
  });

  test("streaming is incremental: the first chunk arrives before the provider has finished", async () => {
    upstream.reset();
    upstream.set({ chunks: 5, chunkDelayMs: 300 });
    const started = performance.now();
    const stream = await client.chat.completions.create({ model: "test-model", messages: [{ role: "user", content: "hi" }], stream: true });
    let first = 0;
    let text = "";
    for await (const chunk of stream) {
      if (!first) first = performance.now() - started;
      text += chunk.choices[0]?.delta?.content ?? "";
    }
    const total = performance.now() - started;
    expect(text).toBe("Hello from the test upstream");
    expect(first).toBeLessThan(500);
    expect(total).toBeGreaterThan(1100);
    expect(upstream.requests.at(-1)!.body.stream_options).toEqual({ include_usage: true });
    upstream.reset();
  });

  test("embeddings", async () => {
    const response = await client.embeddings.create({ model: "embed", input: "hello" });
    expect(response.data[0]!.embedding).toEqual([0.1, 0.2, 0.3]);
  });

  test("upstream errors keep the provider's status and message; the provider key never shows", async () => {
    upstream.set({ status: 503, errorMessage: "overloaded, try later" });
    const error = await client.chat.completions.create({ model: "test-model", messages: [{ role: "user", content: "hi" }] }).catch((e) => e);
    upstream.reset();
    expect(error).toBeInstanceOf(OpenAI.APIError);
    expect(error.status).toBe(503);
    expect(error.message).toContain("overloaded, try later");
    expect(JSON.stringify(error.error)).not.toContain("sk-provider-secret-123");
    expect(gateway.output()).not.toContain("sk-provider-secret-123");
  });

  test("a client that disconnects cancels the upstream request", async () => {
    upstream.reset();
    upstream.set({ chunks: 10, chunkDelayMs: 200 });
    const controller = new AbortController();
    const stream = await client.chat.completions.create({ model: "test-model", messages: [{ role: "user", content: "hi" }], stream: true }, { signal: controller.signal });
    for await (const _ of stream) {
      controller.abort();
      break;
    }
    const until = Date.now() + 3000;
    while (upstream.aborted === 0 && Date.now() < until) await Bun.sleep(50);
    expect(upstream.aborted).toBeGreaterThanOrEqual(1);
    upstream.reset();
  });

  test("a provider slower than request_timeout gets a 504 and the request's counters back", async () => {
    const slow = await startBinary({ config: configFor(upstream.url, "  request_timeout: 1\n") });
    try {
      upstream.set({ firstByteDelayMs: 3000 });
      const started = performance.now();
      const response = await fetch(`${slow.url}/v1/chat/completions`, {
        method: "POST", headers: { authorization: "Bearer sk-1234" }, body: JSON.stringify({ model: "test-model", messages: [{ role: "user", content: "x" }] }),
      });
      upstream.reset();
      expect(response.status).toBe(504);
      expect(((await response.json()) as any).error.code).toBe("504");
      expect(performance.now() - started).toBeLessThan(2900);
      // A stream is bounded by its silences, not its length: one flowing for 3.6 s is whole…
      const streamed = new OpenAI({ apiKey: "sk-1234", baseURL: `${slow.url}/v1`, maxRetries: 0 });
      const read = async () => {
        let text = "";
        const stream = await streamed.chat.completions.create({ model: "test-model", messages: [{ role: "user", content: "x" }], stream: true });
        for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? "";
        return text;
      };
      upstream.set({ chunks: 6, chunkDelayMs: 600 });
      expect(await read()).toBe("Hello from the test upstream");
      // …one that goes quiet for longer than request_timeout is cut.
      upstream.set({ chunks: 2, chunkDelayMs: 3000 });
      expect(await read().catch((error: Error) => error.message)).toContain("request_timeout");
    } finally {
      upstream.reset();
      await slow.stop("SIGKILL");
    }
  }, 30_000);

  test("unknown routes, bad JSON and unknown models answer in the OpenAI error envelope", async () => {
    const notFound = await fetch(`${gateway.url}/v1/nothing`, { headers: { authorization: "Bearer sk-1234" } });
    expect(notFound.status).toBe(404);
    expect(((await notFound.json()) as any).error.code).toBe("404");
    const bad = await fetch(`${gateway.url}/v1/chat/completions`, { method: "POST", headers: { authorization: "Bearer sk-1234" }, body: "{nope" });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as any).error.type).toBe("bad_request_error");
    const model = await client.chat.completions.create({ model: "nope", messages: [{ role: "user", content: "x" }] }).catch((e) => e);
    expect(model.status).toBe(400);
    const noKey = await fetch(`${gateway.url}/v1/chat/completions`, { method: "POST", body: "{}" });
    expect(noKey.status).toBe(401);
  });

  test("a short Host header routes like any other: admin paths are found, and no prefix reaches them", async () => {
    const raw = async (path: string, host: string) => {
      const socket = await import("node:net").then((net) => net.connect(gateway.port, "127.0.0.1"));
      let text = "";
      socket.on("data", (chunk) => void (text += chunk.toString()));
      socket.write(`GET ${path} HTTP/1.1\r\nHost: ${host}\r\nAuthorization: Bearer sk-1234\r\nConnection: close\r\n\r\n`);
      await new Promise((resolve) => socket.on("close", resolve));
      return Number(text.split(" ")[1]);
    };
    for (const host of ["x", "ab", "llm", `127.0.0.1:${gateway.port}`]) {
      expect(`${host} ${await raw("/key/list", host)}`).toBe(`${host} 200`);
      expect(`${host} ${await raw("/v1/key/list", host)}`).toBe(`${host} 404`);
      expect(`${host} ${await raw("/zz/key/list", host)}`).toBe(`${host} 404`);
      expect(`${host} ${await raw("/health/readiness", host)}`).toBe(`${host} 200`);
    }
  });

  test("bodies past max_request_size_mb get 413 in the envelope, however large and however sent", async () => {
    const huge = new Uint8Array(70 * 1024 * 1024).fill(32);
    const chunked = () => new ReadableStream<Uint8Array>({
      start(controller) {
        for (let i = 0; i < 70; i++) controller.enqueue(huge.subarray(i * 1024 * 1024, (i + 1) * 1024 * 1024));
        controller.close();
      },
    });
    for (const path of ["/v1/chat/completions", "/key/generate"]) {
      for (const body of [huge, chunked()]) {
        const response = await fetch(`${gateway.url}${path}`, { method: "POST", headers: { authorization: "Bearer sk-1234" }, body });
        const text = await response.text();
        expect(`${path} ${response.status} ${text.slice(0, 80)}`).toStartWith(`${path} 413 {"error":{"message":"Request body is larger than max_request_size_mb=`);
      }
    }
    // The gateway still answers afterwards.
    expect((await fetch(`${gateway.url}/health/liveliness`)).status).toBe(200);
  });

  test("admin fields are validated as in the source: numbers sent as text are held to their bounds", async () => {
    // The build once mangled names that the framework's schema handling relies on: a negative budget
    // sent as text was stored, and a fractional rate limit as text was a 500.
    const generate = (body: string) =>
      fetch(`${gateway.url}/key/generate`, { method: "POST", headers: { authorization: "Bearer sk-1234", "content-type": "application/json" }, body });
    for (const [body, param] of [['{"max_budget": "-5"}', "max_budget"], ['{"rpm_limit": "1.5"}', "rpm_limit"], ['{"model_rpm_limit": {"m": "Infinity"}}', "model_rpm_limit.m"]]) {
      const response = await generate(body!);
      const error = ((await response.json()) as any).error;
      expect(`${body} → ${response.status} ${error?.param}`).toBe(`${body} → 400 ${param}`);
    }
    const ok = await generate('{"max_budget": "2.5"}');
    expect(((await ok.json()) as any).max_budget).toBe(2.5);
  });
});

const MINIMAL = { model_list: [{ model_name: "m", litellm_params: { model: "mock/m", mock_response: "hi" } }] };

describe("command line", () => {
  test("--help and --version", async () => {
    expect((await runBinary(["--help"])).stdout).toContain("litegate --config PATH");
    expect((await runBinary(["--version"])).stdout).toMatch(/^litegate \d+\.\d+\.\d+/);
  });

  test("unknown flags and unreadable configs: one clear line, non-zero exit", async () => {
    const flag = await runBinary(["--config", "x.yaml", "--turbo"]);
    expect(flag.code).not.toBe(0);
    expect(flag.stderr.trim().split("\n")).toHaveLength(1);
    expect(flag.stderr).toContain("--turbo");
    const missing = await runBinary(["--config", "/nonexistent/config.yaml"]);
    expect(missing.code).not.toBe(0);
    expect(missing.stderr.trim().split("\n")).toHaveLength(1);
    expect(missing.stderr).toContain("/nonexistent/config.yaml");
    for (const [args, message] of [[["--port="], "--port needs a value"], [["--port", "0x1F90"], "--port must be an integer"], [["--port", " 1e3"], "--port must be an integer"], [["--host", ""], "--host needs a value"]] as const) {
      const bad = await runBinary(["--config", "x.yaml", ...args]);
      expect(bad.code).not.toBe(0);
      expect(bad.stderr).toContain(message);
    }
  });

  test("a port in use is one clear line and exit 1", async () => {
    const taken = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    try {
      const cwd = tempDir("port-taken");
      writeFileSync(join(cwd, "c.yaml"), stringify({ ...MINIMAL, general_settings: { master_key: "sk-1234", data_dir: join(cwd, "db") } }));
      const result = await runBinary(["--config", join(cwd, "c.yaml"), "--host", "127.0.0.1", "--port", String(taken.port)], { cwd });
      expect(result.code).toBe(1);
      const lines = result.stderr.trim().split("\n");
      expect(lines.at(-1)).toBe(`litegate: cannot listen on 127.0.0.1:${taken.port}: the port is in use`);
      expect(lines.filter((line) => /^\s+at /.test(line))).toEqual([]);
      const badHost = await runBinary(["--config", join(cwd, "c.yaml"), "--host", "999.1.1.1", "--port", "0"], { cwd });
      expect(badHost.stderr.trim().split("\n").at(-1)).toBe("litegate: cannot listen on 999.1.1.1:0: 999.1.1.1 is not an IP address (--host)");
      // The admin API on the gateway's own port: said as such, not as a port in use.
      writeFileSync(join(cwd, "same.yaml"), stringify({ ...MINIMAL, general_settings: { master_key: "sk-1234", data_dir: join(cwd, "db"), admin_port: 4917 } }));
      const same = await runBinary(["--config", join(cwd, "same.yaml"), "--host", "127.0.0.1", "--port", "4917"], { cwd });
      expect(same.code).toBe(1);
      expect(same.stderr.trim().split("\n").at(-1)).toBe("litegate: general_settings.admin_port 4917 is the port the gateway serves on (--port, PORT or 4000): give the admin API a port of its own");
      const badName = await runBinary(["--config", join(cwd, "c.yaml"), "--host", "nonexist.invalid", "--port", "0"], { cwd });
      expect(badName.stderr.trim().split("\n").at(-1)).toBe("litegate: cannot listen on nonexist.invalid:0: nonexist.invalid could not be resolved to an address (--host)");
    } finally {
      taken.stop(true);
    }
  });

  test("a database_url that is not a URL is named where it was written, its password never shown", async () => {
    const cwd = tempDir("bad-database-url");
    writeFileSync(join(cwd, "c.yaml"), stringify({ ...MINIMAL, general_settings: { master_key: "sk-1234", database_url: "postgres://litegate:s3cret@db host/litegate" } }));
    const expected = "litegate: cannot open the database: general_settings.database_url is not a valid URL (expected postgresql://user:password@host:5432/database)";
    const fromFile = await runBinary(["--config", join(cwd, "c.yaml"), "--port", "0"], { cwd });
    expect(fromFile.code).toBe(1);
    expect(fromFile.stderr.trim().split("\n").at(-1)).toBe(expected);
    expect(fromFile.stderr).not.toContain("s3cret");
    writeFileSync(join(cwd, "c.yaml"), stringify({ ...MINIMAL, general_settings: { master_key: "sk-1234" } }));
    const fromEnv = await runBinary(["--config", join(cwd, "c.yaml"), "--port", "0"], { cwd, env: { DATABASE_URL: "postgres://litegate:s3cret@db host/litegate" } });
    expect(fromEnv.stderr.trim().split("\n").at(-1)).toBe(expected.replace("general_settings.database_url", "DATABASE_URL"));
    expect(fromEnv.stderr).not.toContain("s3cret");
  });

  test("with Redis: starts without a warning on stderr; a malformed redis_url is one clear line", async () => {
    const redis = await startRedis();
    try {
      const cwd = tempDir("redis-start");
      const withRedis = await startBinary({ cwd, config: { ...JSON.parse(JSON.stringify(MINIMAL)), general_settings: { master_key: "sk-1234", data_dir: join(cwd, "db"), redis_url: redis.url } } });
      const health = (await (await fetch(`${withRedis.url}/health/readiness`)).json()) as any;
      expect(await withRedis.stop()).toBe(0);
      expect(health).toMatchObject({ cache: "connected", litellm_version: "0.1.0", success_callbacks: [] });
      expect(withRedis.output()).not.toMatch(/warning/i);
    } finally {
      await redis.stop();
    }
    const cwd = tempDir("redis-bad");
    const path = join(cwd, "config.yaml");
    await Bun.write(path, `general_settings:\n  master_key: sk-1234\n  data_dir: ./db\n  redis_url: "127.0.0.1:6379"\n`);
    const bad = await runBinary(["--config", path], { cwd });
    expect(bad.code).toBe(1);
    expect(bad.stderr.trim().split("\n")).toHaveLength(1);
    expect(bad.stderr).toContain("redis_url is not a URL: expected redis://");
  });

  test("migrate applies the migrations and exits", async () => {
    const cwd = tempDir("migrate");
    const path = join(cwd, "config.yaml");
    await Bun.write(path, "general_settings:\n  master_key: sk-1234\n  data_dir: ./db\n");
    const result = await runBinary(["migrate", "--config", path], { cwd });
    expect(result.code).toBe(0);
    expect(result.stdout).toContain("migrations up to date");
  });

  test("Swagger UI at / and the OpenAPI document", async () => {
    const page = await fetch(`${gateway.url}/`);
    expect(page.headers.get("content-type")).toContain("text/html");
    expect(await page.text()).toContain("swagger");
    const spec = (await (await fetch(`${gateway.url}/openapi.json`)).json()) as any;
    expect(spec.paths["/v1/chat/completions"]).toBeDefined();
  });

  test("bad configs fail fast naming the problem", async () => {
    const dir = join(import.meta.dir, "../fixtures/config/bad");
    for (const file of readdirSync(dir).slice(0, 5)) {
      const expected = /^# expect: (.+)$/m.exec(readFileSync(join(dir, file), "utf8"))![1]!;
      const result = await runBinary(["--config", join(dir, file)]);
      expect(result.code).toBe(1);
      expect(result.stderr).toContain(expected);
    }
  });
});

describe("lifecycle", () => {
  test("PGlite: data survives a restart, and a warm start is fast", async () => {
    const cwd = tempDir("pglite");
    const config = configFor(upstream.url);
    const first = await startBinary({ config, cwd });
    const created = await fetch(`${first.url}/key/generate`, { method: "POST", headers: { authorization: "Bearer sk-1234" }, body: '{"key_alias": "kept"}' });
    const { key } = (await created.json()) as any;
    expect(await first.stop()).toBe(0);
    const started = performance.now();
    const second = await startBinary({ config, cwd });
    const warm = performance.now() - started;
    const info = await fetch(`${second.url}/key/info?key=${key}`, { headers: { authorization: "Bearer sk-1234" } });
    expect(((await info.json()) as any).info.key_alias).toBe("kept");
    expect(await second.stop()).toBe(0);
    expect(warm).toBeLessThan(3000);
  });

  test("the allocator keeps freed memory for reuse: set by the binary itself, in the same process, unless the operator set it", async () => {
    const environOf = (pid: number) => readFileSync(`/proc/${pid}/environ`, "utf8").split("\0");
    // The gateway started by beforeAll: the process that answers is the one spawned, now with the setting.
    expect(environOf(gateway.proc.pid)).toContain("MIMALLOC_PURGE_DELAY=-1");
    const health = await fetch(`${gateway.url}/health/liveliness`);
    expect(health.status).toBe(200);
    // LiteLLM's answer, a JSON string, from the server's static route.
    expect(health.headers.get("content-type")).toContain("application/json");
    expect(await health.json()).toBe("I'm alive!");
    const own = await startBinary({ config: configFor(upstream.url), env: { MIMALLOC_PURGE_DELAY: "25" } });
    try {
      expect(environOf(own.proc.pid)).toContain("MIMALLOC_PURGE_DELAY=25");
      expect(environOf(own.proc.pid)).not.toContain("MIMALLOC_PURGE_DELAY=-1");
    } finally {
      expect(await own.stop()).toBe(0);
    }
  });

  test("two instances migrate one Postgres database at once", async () => {
    const url = await (await sharedPostgres()).newDatabase();
    const config = configFor(upstream.url, `  database_url: ${url}\n`);
    const [a, b] = await Promise.all([startBinary({ config }), startBinary({ config })]);
    for (const g of [a, b]) expect((await fetch(`${g.url}/health/readiness`)).status).toBe(200);
    const applied = `${a.output()}\n${b.output()}`.match(/migration applied/g) ?? [];
    expect(applied.length).toBe(MIGRATIONS.length);
    await Promise.all([a.stop(), b.stop()]);
  });

  test("SIGTERM lets an in-flight stream finish, flushes its spend and exits 0", async () => {
    const url = await (await sharedPostgres()).newDatabase();
    const g = await startBinary({ config: configFor(upstream.url, `  database_url: ${url}\n`) });
    upstream.set({ chunks: 6, chunkDelayMs: 250 });
    const streamClient = new OpenAI({ apiKey: "sk-1234", baseURL: `${g.url}/v1`, maxRetries: 0 });
    const stream = await streamClient.chat.completions.create({ model: "test-model", messages: [{ role: "user", content: "hi" }], stream: true });
    const exited = (async () => {
      await Bun.sleep(300);
      return g.stop("SIGTERM");
    })();
    let text = "";
    for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? "";
    expect(text).toBe("Hello from the test upstream");
    expect(await exited).toBe(0);
    upstream.reset();
    const { default: postgres } = await import("postgres");
    const sql = postgres(url);
    const [row] = await sql`select count(*)::int as n, sum(spend) as s from spend_logs`;
    await sql.end();
    expect(row!.n).toBe(1);
    expect(row!.s).toBeCloseTo(10 * 0.000001 + 20 * 0.000002, 12);
  });

  test("SIGTERM: a request whose client leaves during the drain is still charged its prompt before the gateway exits", async () => {
    const url = await (await sharedPostgres()).newDatabase();
    const g = await startBinary({ config: configFor(upstream.url, `  database_url: ${url}\n`) });
    upstream.set({ firstByteDelayMs: 2500 });
    const leaving = new AbortController();
    const answer = fetch(`${g.url}/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: "Bearer sk-1234", "content-type": "application/json" },
      body: JSON.stringify({ model: "test-model", messages: [{ role: "user", content: "a prompt the provider has already read" }] }),
      signal: leaving.signal,
    }).catch((error: Error) => error.name);
    await Bun.sleep(300);
    const exited = g.stop("SIGTERM");
    await Bun.sleep(700);
    leaving.abort();
    expect(await answer).toBe("AbortError");
    expect(await exited).toBe(0);
    upstream.reset();
    const { default: postgres } = await import("postgres");
    const sql = postgres(url);
    const rows = await sql`select status, spend, prompt_tokens from spend_logs`;
    const [gateway] = await sql`select spend from gateway_spend`;
    await sql.end();
    expect(rows.map((row) => row.status)).toEqual(["client_disconnected"]);
    expect(rows[0]!.prompt_tokens).toBeGreaterThan(0);
    expect(rows[0]!.spend).toBeCloseTo(rows[0]!.prompt_tokens * 0.000001, 12);
    expect(gateway!.spend).toBeCloseTo(rows[0]!.spend, 12);
  }, 30_000);
});
