import { afterAll, beforeAll } from "bun:test";
import { hashKey, keyName } from "../../src/auth/keys";
import { manualClock } from "../../src/clock";
import { parseConfig } from "../../src/config";
import { type Database, migrate, openDatabase } from "../../src/db";
import { buildGateway, type GatewayOptions } from "../../src/gateway";
import { createLogger, silentLogger } from "../../src/log";
import { sharedPostgres, tempDir } from "./services";

export const MASTER = "sk-1234";

/**
 * The real gateway built in-process (real database, real counters, injected clock), driven through
 * `app.handle` — for behaviour that needs to move time without sleeping.
 */
export async function inProcessGateway(yaml: string, options: { db?: Database; start?: number } & Partial<GatewayOptions> = {}) {
  // Directories removed with the run (see tempDir): an embedded database is some 15 MB.
  const db = options.db ?? (await openDatabase({ dataDir: tempDir("test") }));
  await migrate(db);
  // Counters shared through Redis keep real time (their leases and windows expire by it), so a gateway
  // using them must too: a frozen clock would keep planning a rate window the counters have left.
  const realTime = () => {
    throw new Error("this gateway shares Redis counters and runs on real time: its clock cannot be moved");
  };
  const clock = options.counters ? { now: () => Date.now(), advance: realTime, set: realTime } : manualClock(options.start ?? Date.now());
  const { config } = parseConfig(yaml, {});
  // Files the gateway keeps (spend saved at shutdown) go to a directory of the test's own.
  if (!/^\s*data_dir:/m.test(yaml)) config.general_settings.data_dir = tempDir("test-data");
  // LITEGATE_TEST_LOG=1 prints the gateway's warnings and errors (an unhandled error's stack behind a 500).
  const gateway = await buildGateway({ ...options, config, db, clock, log: process.env.LITEGATE_TEST_LOG ? createLogger({ level: "warn" }) : silentLogger, spendIntervalMs: 60_000 });

  const call = (path: string, body?: unknown, key: string | null = MASTER, init: RequestInit = {}) => {
    const headers: Record<string, string> = { "content-type": "application/json" };
    if (key) headers.authorization = `Bearer ${key}`;
    return gateway.app.handle(new Request(`http://litegate.test${path}`, {
      method: body === undefined ? "GET" : "POST",
      headers,
      body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
      ...init,
    }));
  };

  /** A virtual key written straight to the database (the admin API has its own tests). */
  const createKey = async (fields: Record<string, unknown> = {}): Promise<string> => {
    const raw = `sk-test-${crypto.randomUUID()}`;
    const columns = ["token", "key_name", ...Object.keys(fields)];
    const values = [hashKey(raw), keyName(raw), ...Object.values(fields).map((v) => (v && typeof v === "object" && !Array.isArray(v) && !(v instanceof Date) ? JSON.stringify(v) : v))];
    await db.query(`insert into keys (${columns.join(", ")}) values (${columns.map((_, i) => `$${i + 1}`).join(", ")})`, values);
    return raw;
  };

  const chat = (key: string, extra: Record<string, unknown> = {}, model = "mock") =>
    call("/v1/chat/completions", { model, messages: [{ role: "user", content: "Hello there" }], ...extra }, key);

  return {
    db, clock, gateway, call, chat, createKey,
    async flush() {
      await gateway.spend.flush();
    },
    async close() {
      await gateway.close();
      if (!options.db) await db.close();
    },
  };
}

export const MOCK_CONFIG = `
model_list:
  - model_name: mock
    litellm_params:
      model: mock/litegate-mock
      mock_response: "Hello from the mock model of litegate"
      input_cost_per_token: 0.000001
      output_cost_per_token: 0.000002
  - model_name: slow
    litellm_params:
      model: mock/slow
      mock_response: "one two three four five six seven eight nine ten"
      mock_delay_ms: 40
      input_cost_per_token: 0.000001
      output_cost_per_token: 0.000002
  - model_name: gpt-4o
    litellm_params:
      model: mock/gpt-4o
      input_cost_per_token: 0.0000025
      output_cost_per_token: 0.00001
general_settings:
  master_key: sk-1234
`;

export type Harness = Awaited<ReturnType<typeof inProcessGateway>>;

/**
 * The in-process gateway of a describe block, on the embedded database or on a fresh Postgres
 * database: made before its tests, closed after them. `json` calls it (as the master key unless
 * another key is given) and reads the answer.
 */
export function gatewayFor(kind: "pglite" | "postgres", yaml = MOCK_CONFIG) {
  let h: Harness | undefined;
  beforeAll(async () => {
    const db = kind === "postgres" ? await openDatabase({ url: await (await sharedPostgres()).newDatabase(), dataDir: "" }) : undefined;
    h = await inProcessGateway(yaml, { db });
  }, 120_000);
  afterAll(async () => {
    await h?.close();
    if (kind === "postgres") await h?.db.close();
  });
  return {
    get h(): Harness {
      return h!;
    },
    async json(path: string, body?: unknown, key: string = MASTER) {
      const response = await h!.call(path, body, key);
      return { status: response.status, body: (await response.json()) as any };
    },
  };
}

/** A config with one OpenAI-compatible model `m` at `url`, priced per token. */
/** A `model_list` entry of the mock provider named `name`, answering `response` after `delayMs`, at 1e-6 and 2e-6 USD a token. */
export const mockModelEntry = (name: string, delayMs: number, response = "one two three four five six seven eight nine ten") => `
  - model_name: ${name}
    litellm_params:
      model: mock/${name}
      mock_response: "${response}"
      mock_delay_ms: ${delayMs}
      input_cost_per_token: 0.000001
      output_cost_per_token: 0.000002`;

export const oneModelConfig = (url: string, input: number, output: number) => `
model_list:
  - model_name: m
    litellm_params: {model: openai/m, api_base: "${url}", api_key: sk-upstream, input_cost_per_token: ${input}, output_cost_per_token: ${output}}
general_settings:
  master_key: sk-1234
`;

/** A config with one Anthropic model `claude` at a local fake provider, priced per token; `general` adds general_settings lines. */
export const anthropicConfig = (port: number | undefined, general = "") => `
model_list:
  - model_name: claude
    litellm_params:
      model: anthropic/claude-test
      api_base: http://127.0.0.1:${port}
      api_key: sk-ant-test
      input_cost_per_token: 0.000003
      output_cost_per_token: 0.000015
general_settings:
  master_key: sk-1234
${general}`;
