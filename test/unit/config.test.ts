import { describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConfigError, databaseUrlOf, deploymentsOf, loadConfig, parseConfig, redisUrlOf } from "../../src/config";
import { createPricing } from "../../src/pricing";
import { createRuntime } from "../../src/proxy/runtime";
import { problemsOf } from "../helpers/config-problems";

const BAD = join(import.meta.dir, "../fixtures/config/bad");

describe("bad configs fail with a message naming the problem", () => {
  for (const file of readdirSync(BAD)) {
    test(file, () => {
      const text = readFileSync(join(BAD, file), "utf8");
      const expected = /^# expect: (.+)$/m.exec(text)![1]!;
      let error: unknown;
      try {
        loadConfig(join(BAD, file), {});
      } catch (caught) {
        error = caught;
      }
      expect(error).toBeInstanceOf(ConfigError);
      expect((error as Error).message).toContain(expected);
    });
  }
});

describe("good configs", () => {
  test("config.example.yaml loads on a machine without OPENAI_API_KEY, warning about it", () => {
    const { config, warnings } = loadConfig(join(import.meta.dir, "../../config.example.yaml"), {});
    expect(config.general_settings.master_key).toBe("sk-1234");
    expect(config.model_list.map((m) => m.model_name)).toContain("mock");
    expect(warnings.join("\n")).toContain("OPENAI_API_KEY is not set");
    expect(config.general_settings.proxy_budget_rescheduler_min_time).toBe(597);
    expect(config.general_settings.max_request_size_mb).toBe(32);
  });

  test("a refused config sets none of its environment_variables; an empty variable is refused as an unset one; an alias bomb is a clear error", () => {
    const env: Record<string, string | undefined> = { EMPTY: "" };
    expect(() => parseConfig("environment_variables:\n  FROM_REFUSED: x\nrouter_settings:\n  cooldown_time: -1\n", env)).toThrow(ConfigError);
    expect(env.FROM_REFUSED).toBeUndefined();
    try {
      parseConfig("general_settings:\n  database_url: os.environ/EMPTY\n", env);
      throw new Error("expected a ConfigError");
    } catch (error) {
      expect((error as ConfigError).problems).toEqual(["config.yaml:2: general_settings.database_url: environment variable EMPTY is empty"]);
    }
    const bomb = ["a: &a [x, x, x, x, x, x, x, x, x, x]", ...Array.from({ length: 8 }, (_, i) => `${String.fromCharCode(98 + i)}: &${String.fromCharCode(98 + i)} [*${String.fromCharCode(97 + i)}, *${String.fromCharCode(97 + i)}, *${String.fromCharCode(97 + i)}, *${String.fromCharCode(97 + i)}, *${String.fromCharCode(97 + i)}, *${String.fromCharCode(97 + i)}, *${String.fromCharCode(97 + i)}, *${String.fromCharCode(97 + i)}, *${String.fromCharCode(97 + i)}, *${String.fromCharCode(97 + i)}]`)].join("\n");
    expect(() => parseConfig(`environment_variables:\n  ${bomb.replaceAll("\n", "\n  ")}\n`, env)).toThrow(ConfigError);
  });

  test("os.environ/ is replaced anywhere; environment_variables count; unknown nested keys only warn", () => {
    const env: Record<string, string | undefined> = { DB: "postgres://db/x" };
    const { config, warnings } = parseConfig(`
environment_variables:
  KEY_FROM_CONFIG: sk-abc
  PORT_NUMBER: 6380
model_list:
  - model_name: m
    litellm_params:
      model: azure/deployment-1
      api_key: os.environ/KEY_FROM_CONFIG
      api_base: https://example.test
      tags: [os.environ/DB]
general_settings:
  master_key: sk-1
  database_url: os.environ/DB
  ui_access_mode: all
litellm_settings:
  success_callback: ["langfuse"]
router_settings:
  redis_host: cache.local
  redis_port: os.environ/PORT_NUMBER
  redis_password: p@ss
`, env);
    expect(config.model_list[0]!.litellm_params.api_key).toBe("sk-abc");
    expect((config.model_list[0]!.litellm_params as any).tags).toEqual(["postgres://db/x"]);
    expect(env.KEY_FROM_CONFIG).toBe("sk-abc");
    expect(warnings).toContain("general_settings.ui_access_mode: not supported by litegate, ignored");
    expect(warnings).toContain("litellm_settings.success_callback: not supported by litegate, ignored");
    expect(databaseUrlOf(config, {})).toBe("postgres://db/x");
    expect(redisUrlOf(config, {})).toBe("redis://:p%40ss@cache.local:6380");
    expect(redisUrlOf(config, { REDIS_URL: "redis://other:1" })).toBe("redis://other:1");
    const [d] = deploymentsOf(config);
    expect(d).toMatchObject({ id: expect.stringMatching(/^m#[0-9a-f]{8}$/), modelName: "m", provider: "azure", upstreamModel: "deployment-1" });
  });

  test("upperbound_key_generate_params and default_key_generate_params are read, not warned about as ignored; keys they do not know are", () => {
    const { config, warnings } = parseConfig(`
litellm_settings:
  upperbound_key_generate_params: {max_budget: "5", rpm_limit: 10, duration: 30d, models: [a]}
  default_key_generate_params: {max_budget: 1, models: [m], metadata: {team: x}, duration: 7d}
`, {});
    expect(config.litellm_settings.upperbound_key_generate_params).toMatchObject({ max_budget: 5, rpm_limit: 10, duration: "30d" });
    expect(config.litellm_settings.default_key_generate_params).toMatchObject({ max_budget: 1, models: ["m"], metadata: { team: "x" } });
    expect(warnings).toEqual(["litellm_settings.upperbound_key_generate_params.models: not supported by litegate, ignored"]);
    expect(() => parseConfig("litellm_settings:\n  upperbound_key_generate_params: {max_budget: -1}\n", {}))
      .toThrow(/litellm_settings\.upperbound_key_generate_params\.max_budget: must be >= 0/);
  });

  test("LITELLM_MASTER_KEY (or environment_variables) is the master key when general_settings has none", () => {
    expect(parseConfig("model_list: []\n", { LITELLM_MASTER_KEY: "sk-env" }).config.general_settings.master_key).toBe("sk-env");
    expect(parseConfig("environment_variables:\n  LITELLM_MASTER_KEY: sk-own\n", {}).config.general_settings.master_key).toBe("sk-own");
    expect(parseConfig("general_settings:\n  master_key: sk-file\n", { LITELLM_MASTER_KEY: "sk-env" }).config.general_settings.master_key).toBe("sk-file");
    expect(parseConfig("model_list: []\n", { LITELLM_MASTER_KEY: "" }).config.general_settings.master_key).toBeUndefined();
    expect(() => parseConfig("model_list: []\n", { LITELLM_MASTER_KEY: "1234" })).toThrow(/^LITELLM_MASTER_KEY \(the master key when general_settings\.master_key is unset\): must start with "sk-"$/);
  });

  test("litellm_settings.max_user_budget, the documents' older name, is the end-user budget", () => {
    const models = "model_list:\n  - model_name: m\n    litellm_params: {model: mock/m}\n";
    const old = parseConfig(`${models}litellm_settings:\n  max_budget: 10\n  max_user_budget: 0.0001\n`, {});
    expect(old.config.litellm_settings.max_end_user_budget).toBe(0.0001);
    expect(old.warnings.join("\n")).not.toContain("max_user_budget");
    const both = parseConfig(`${models}litellm_settings:\n  max_user_budget: 1\n  max_end_user_budget: 2\n`, {});
    expect(both.config.litellm_settings.max_end_user_budget).toBe(2);
    expect(both.warnings).toContain("litellm_settings.max_user_budget: ignored, max_end_user_budget is set (both name the budget of a `user` sent in requests)");
    expect(() => parseConfig(`${models}litellm_settings:\n  max_user_budget: -1\n`, {})).toThrow(/litellm_settings\.max_user_budget: must be >= 0/);
  });

  test("LiteLLM-style configs: numbers and booleans as text or from the environment, merge keys", () => {
    const { config } = parseConfig(`
model_list:
  - model_name: a
    litellm_params: &base
      model: mock/a
      rpm: "100"
      input_cost_per_token: os.environ/PRICE
  - model_name: b
    litellm_params:
      <<: *base
      model: mock/b
general_settings:
  master_key: sk-1234
  database_connection_pool_limit: "10"
  shutdown_grace_seconds: os.environ/GRACE
  metrics_public: "true"
litellm_settings:
  max_budget: os.environ/MAXB
`, { PRICE: "0.000001", GRACE: "5", MAXB: "5" });
    expect(config.model_list[0]!.litellm_params.rpm).toBe(100);
    expect(config.model_list[0]!.litellm_params.input_cost_per_token).toBe(0.000001);
    expect(config.model_list[1]!.litellm_params).toMatchObject({ model: "mock/b", rpm: 100 });
    expect(config.general_settings).toMatchObject({ database_connection_pool_limit: 10, shutdown_grace_seconds: 5, metrics_public: true });
    expect(config.litellm_settings.max_budget).toBe(5);
  });

  test("a model_list that is not a list, and a value outside a fixed set, are named with what is expected", () => {
    for (const text of ["model_list:\n  model_name: gpt-4o\n  litellm_params: {model: mock/x}\n", "model_list: {}\n"]) {
      expect(() => parseConfig(text, {})).toThrow(/model_list: must be a list of models/);
    }
    expect(() => parseConfig("model_list: []\ngeneral_settings:\n  log_level: DEBUG\n", {})).toThrow(/general_settings.log_level: must be one of "debug", "info", "warn", "error" \(got "DEBUG"\)/);
  });

  test("LiteLLM keys litegate does not act on are named at load; LiteLLM's timeout names set the request deadline", () => {
    const { config, warnings } = parseConfig(`model_list:
  - model_name: a
    litellm_params: {model: mock/a, max_retries: 2}
litellm_settings: {drop_params: true, set_verbose: false, request_timeout: 5}
router_settings: {retry_after: 1, routing_strategy: usage-based-routing, timeout: 3}
`, {});
    for (const path of ["router_settings.retry_after", "router_settings.routing_strategy", "litellm_settings.drop_params", "litellm_settings.set_verbose", "model_list[0].litellm_params.max_retries"]) {
      expect(warnings.some((w) => w.startsWith(`${path}: accepted but not used by litegate`))).toBe(true);
    }
    const deployments = deploymentsOf(config);
    const runtime = createRuntime(config, deployments, createPricing(deployments), () => ({}) as any, { spend: 0, budgetResetAt: null, createdAt: null });
    expect(runtime.requestTimeoutMs).toBe(3000);
    // user_header_mappings: only the customer's header is read.
    const mapped = (text: string) => parseConfig(`model_list: []\ngeneral_settings:\n  user_header_mappings: ${text}\n`, {}).warnings;
    expect(mapped("[{header_name: x-user, litellm_user_role: internal_user}, {header_name: x-tenant, litellm_user_role: customer}]")).toEqual([
      'general_settings.user_header_mappings[0]: accepted but not used by litegate (litellm_user_role "internal_user": only "customer" is read, a request\'s user is its key\'s user_id)',
    ]);
    expect(mapped("{header_name: x-user, litellm_user_role: internal_user}")[0]).toStartWith("general_settings.user_header_mappings: accepted but not used");
    expect(mapped("{header_name: x-tenant, litellm_user_role: Customer}")).toEqual([]);
  });

  test("request_timeout: an unwritten general_settings.request_timeout does not cut LiteLLM's longer one at 600 s", () => {
    const timeoutOf = (yaml: string) => {
      const { config } = parseConfig(`model_list: []\n${yaml}`, {});
      return createRuntime(config, [], createPricing([]), () => ({}) as any, { spend: 0, budgetResetAt: null, createdAt: null }).requestTimeoutMs;
    };
    expect(timeoutOf("litellm_settings: {request_timeout: 1200}\n")).toBe(1_200_000);
    expect(timeoutOf("router_settings: {timeout: 900}\n")).toBe(900_000);
    expect(timeoutOf("")).toBe(600_000);
    expect(timeoutOf("general_settings: {request_timeout: 700}\nlitellm_settings: {request_timeout: 1200}\n")).toBe(700_000);
    expect(timeoutOf("general_settings: {request_timeout: 1200}\nrouter_settings: {timeout: 30}\n")).toBe(30_000);
  });

  test("a Redis port that is not a port is named where it was written", () => {
    const redis = (section: string) => parseConfig(`model_list: []\n${section}`, {}).config;
    expect(() => redisUrlOf(redis("router_settings:\n  redis_host: h\n  redis_port: \"63x79\"\n"), {})).toThrow(/router_settings.redis_port: must be a port number from 1 to 65535 \(got "63x79"\)/);
    expect(() => redisUrlOf(redis("litellm_settings:\n  cache_params: {host: h, port: 70000}\n"), {})).toThrow(/litellm_settings.cache_params.port: must be a port number/);
    expect(redisUrlOf(redis("router_settings:\n  redis_host: h\n  redis_port: \"6380\"\n"), {})).toBe("redis://h:6380");
  });

  test("a Redis cache takes REDIS_HOST, REDIS_PORT and REDIS_PASSWORD for what its cache_params leave out, as LiteLLM does", () => {
    const env = { REDIS_HOST: "redis.internal", REDIS_PORT: "6390", REDIS_PASSWORD: "s3cret/" };
    const load = (section: string) => parseConfig(`model_list: []\n${section}`, {});
    const cache = load("litellm_settings:\n  cache: true\n  cache_params: {type: redis}\n");
    expect(redisUrlOf(cache.config, env)).toBe("redis://:s3cret%2F@redis.internal:6390");
    expect(cache.warnings).toEqual(["litellm_settings.cache: accepted but not used by litegate (responses are not cached; a Redis cache's settings connect the instances' shared budgets and limits)"]);
    expect(redisUrlOf(load("litellm_settings:\n  cache: true\n").config, { REDIS_HOST: "r" })).toBe("redis://r:6379");
    expect(redisUrlOf(load("litellm_settings:\n  cache: true\n  cache_params: {type: redis, host: given, port: 7000}\n").config, env)).toBe("redis://:s3cret%2F@given:7000");
    // Without a Redis cache, variables of that name set for something else do not make litegate use Redis.
    expect(redisUrlOf(load("litellm_settings:\n  cache: true\n  cache_params: {type: local}\n").config, env)).toBeUndefined();
    expect(redisUrlOf(load("").config, env)).toBeUndefined();
    expect(() => redisUrlOf(cache.config, { REDIS_HOST: "h", REDIS_PORT: "x" })).toThrow(/^REDIS_PORT: must be a port number from 1 to 65535 \(got "x"\)$/);
  });

  test("an empty document is a config at start (every default), and refused on reload", () => {
    for (const text of ["", "  \n", "# only a comment\n"]) {
      expect(parseConfig(text, {}).config.model_list).toEqual([]);
      expect(() => parseConfig(text, {}, "cfg.yaml", { reload: true })).toThrow("cfg.yaml: the file holds no config (it is empty or only comments); a reload needs one");
    }
    expect(parseConfig("model_list: []\n", {}, "cfg.yaml", { reload: true }).config.model_list).toEqual([]);
  });

  test("a timeout of 0, under any of its names, is refused with one message: it would abort every request", () => {
    const message = "must be a number of seconds above 0 (0 would time every request out at once) (got 0)";
    const cases = [
      ["general_settings:\n  request_timeout: 0\n", "general_settings.request_timeout"],
      ["litellm_settings:\n  request_timeout: 0\n", "litellm_settings.request_timeout"],
      ["router_settings:\n  timeout: 0\n", "router_settings.timeout"],
      ["model_list:\n  - model_name: m\n    litellm_params: {model: mock/m, timeout: 0}\n", "model_list[0].litellm_params.timeout"],
      ["model_list:\n  - model_name: m\n    litellm_params: {model: mock/m, stream_timeout: \"0\"}\n", "model_list[0].litellm_params.stream_timeout"],
    ];
    for (const [text, path] of cases) expect(() => parseConfig(text!, {})).toThrow(`${path}: ${message}`);
    expect(parseConfig("router_settings:\n  timeout: 0.5\n", {}).config.router_settings.timeout).toBe(0.5);
  });

  test("every problem is reported at once", () => {
    try {
      parseConfig("model_list:\n  - model_name: [1]\n    litellm_params: {}\ngeneral_settings:\n  max_request_size_mb: -1\n", {});
      throw new Error("expected a ConfigError");
    } catch (error) {
      expect((error as ConfigError).problems.length).toBeGreaterThanOrEqual(3);
    }
  });
});

describe("problems name the file and line their setting was written on", () => {
  test("in the config, in an included file whose value is taken, and at the entry of a model_list counted across files", () => {
    const dir = mkdtempSync(join(tmpdir(), "litegate-lines-"));
    writeFileSync(join(dir, "models.yaml"), "model_list:\n  - model_name: b\n    litellm_params:\n      model: mock/b\n      rpm: lots\nlitellm_settings:\n  budget_duration: soon\n");
    const text = [
      "include: [models.yaml]",
      "model_list:",
      "  - model_name: a",
      "    litellm_params: {model: mock/a}",
      "  - model_name: c",
      "litellm_settings:",
      "  max_budget: abc",
      "  budget_duration: 30d",
      "router_settings:",
      "  model_group_alias: {gpt-3.5-turbo: nowhere}",
      "",
    ].join("\n");
    const source = join(dir, "config.yaml");
    expect(problemsOf(() => parseConfig(text, {}, source)).sort()).toEqual([
      `${source}:5: model_list[1].litellm_params: required`,
      `${source}:7: litellm_settings.max_budget: expected number (got "abc")`,
      `${join(dir, "models.yaml")}:5: model_list[2].litellm_params.rpm: expected integer (got "lots")`,
    ].sort());
    writeFileSync(join(dir, "models.yaml"), readFileSync(join(dir, "models.yaml"), "utf8").replace("rpm: lots", "rpm: 1"));
    expect(problemsOf(() => parseConfig(text.replace(/  max_budget: abc\n|  - model_name: c\n/g, ""), {}, source))).toEqual([
      `${join(dir, "models.yaml")}:7: litellm_settings.budget_duration: "soon" is not a duration (use 30s, 20m, 1h, 7d, 2w or 1mo: longer than zero, at most a century)`,
      `${source}:8: router_settings.model_group_alias.gpt-3.5-turbo: model "nowhere" is not in model_list`,
    ]);
    rmSync(dir, { recursive: true });
  });
});

test("an empty data_dir and environment_variables written as a list are refused naming the setting, not taken as no directory and as variables 0, 1", () => {
  expect(problemsOf(() => parseConfig('general_settings:\n  data_dir: ""\n', {}))).toEqual([
    'config.yaml:2: general_settings.data_dir: expected string length greater or equal to 1 (got "")',
  ]);
  expect(problemsOf(() => parseConfig("environment_variables:\n  - OPENAI_API_KEY=sk-x\n", {}))).toEqual([
    'config.yaml:1: environment_variables: must be a mapping of NAME: value (got a list)',
  ]);
});
