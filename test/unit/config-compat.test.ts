import { describe, expect, test } from "bun:test";
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { ConfigError, deploymentsOf, loadConfig, parseConfig } from "../../src/config";
import { createPricing } from "../../src/pricing";
import { createRuntime } from "../../src/proxy/runtime";
import { problemsOf } from "../helpers/config-problems";
import { tempDir } from "../helpers/services";

/** Writes files into a fresh directory; the first is the main config. */
function files(contents: Record<string, string>): string {
  const dir = tempDir("config");
  for (const [name, text] of Object.entries(contents)) {
    mkdirSync(dirname(join(dir, name)), { recursive: true });
    writeFileSync(join(dir, name), text);
  }
  return join(dir, Object.keys(contents)[0]!);
}

describe("include: (LiteLLM's list of files read into the config)", () => {
  test("model_list entries are appended, sections merged, paths relative to the main config's directory", () => {
    const path = files({
      "config.yaml": "include: [models.yaml, settings/limits.yaml]\nmodel_list:\n  - model_name: a\n    litellm_params: {model: mock/a}\ngeneral_settings:\n  master_key: sk-main\n",
      "models.yaml": "model_list:\n  - model_name: b\n    litellm_params: {model: mock/b, api_key: os.environ/B_KEY}\n",
      "settings/limits.yaml": "litellm_settings:\n  max_budget: 5\ngeneral_settings:\n  log_level: warn\n",
    });
    const { config, warnings } = loadConfig(path, { B_KEY: "sk-b" });
    expect(config.model_list.map((m) => m.model_name)).toEqual(["a", "b"]);
    expect(config.model_list[1]!.litellm_params.api_key).toBe("sk-b");
    expect(config.general_settings).toMatchObject({ master_key: "sk-main", log_level: "warn" });
    expect(config.litellm_settings.max_budget).toBe(5);
    expect(warnings).toEqual([]);
  });

  test("a missing file, a nested include and a key set twice are named", () => {
    const missing = files({ "config.yaml": "include: [nowhere.yaml]\n" });
    expect(problemsOf(() => loadConfig(missing, {}))).toEqual([`include: cannot read ${join(missing, "../nowhere.yaml")} (no such file)`]);
    const nested = files({ "config.yaml": "include: [a.yaml]\n", "a.yaml": "include: [b.yaml]\n", "b.yaml": "model_list: []\n" });
    expect(problemsOf(() => loadConfig(nested, {}))[0]).toContain("a.yaml: include: an included file may not include others");
    const twice = files({ "config.yaml": "include: [a.yaml]\ngeneral_settings: {log_level: info}\n", "a.yaml": "general_settings: {log_level: error}\n" });
    const { config, warnings } = loadConfig(twice, {});
    expect(config.general_settings.log_level).toBe("error");
    expect(warnings).toContain("general_settings.log_level: set in the config and again in a.yaml; the value in a.yaml is taken");
    const syntax = files({ "config.yaml": "include: [a.yaml]\n", "a.yaml": "model_list: [\n" });
    expect(problemsOf(() => loadConfig(syntax, {}))[0]).toContain(`${join(syntax, "../a.yaml")}:`);
    // At a start too: an empty file where models or settings were expected is more likely a mistake than a wish.
    const empty = files({ "config.yaml": "include: [a.yaml]\n", "a.yaml": "# nothing yet\n" });
    expect(problemsOf(() => loadConfig(empty, {}))).toEqual([`${join(empty, "../a.yaml")}: an included file holds nothing (it is empty or only comments)`]);
  });
});

test("model_info.mode takes any of LiteLLM's modes; those litegate has no route for are warned about", () => {
  const modes = ["chat", "embedding", "image_generation", "rerank", "responses", "audio_transcription", "audio_speech", "moderation"];
  const text = `model_list:\n${modes.map((mode) => `  - model_name: ${mode}\n    litellm_params: {model: mock/${mode}}\n    model_info: {mode: ${mode}}\n`).join("")}`;
  const { config, warnings } = parseConfig(text, {});
  expect(config.model_list.map((m) => m.model_info?.mode)).toEqual(modes);
  expect(warnings).toHaveLength(6);
  expect(warnings[0]).toBe('model_list[2].model_info.mode: "image_generation" has no route in litegate (it serves chat, completion, embedding); requests for image_generation go through /chat/completions, /completions, /embeddings and /v1/messages only');
});

test("entries of providers litegate does not support are warned about and left out; the rest serves; a request for one is told why", () => {
  const { config, warnings } = parseConfig(`model_list:
  - {model_name: claude, litellm_params: {model: bedrock/anthropic.claude-3-sonnet}}
  - {model_name: gemini-pro, litellm_params: {model: vertex_ai/gemini-pro}}
  - {model_name: flash, litellm_params: {model: gemini/gemini-1.5-flash}}
  - {model_name: flash, litellm_params: {model: mock/flash}}
  - {model_name: "bedrock/*", litellm_params: {model: "bedrock/*"}}
  - {model_name: mock, litellm_params: {model: mock/m}}
`, {});
  expect(warnings.filter((w) => w.includes("is not supported by litegate"))).toHaveLength(4);
  expect(warnings[0]).toStartWith('model_list[0].litellm_params.model: provider "bedrock" is not supported by litegate (supported: openai,');
  expect(warnings[0]).toEndWith("this entry of claude is left out, and requests no other entry serves are refused");
  const deployments = deploymentsOf(config);
  expect(deployments.map((d) => d.id)).toEqual([expect.stringMatching(/^flash#[0-9a-f]{8}$/), expect.stringMatching(/^mock#[0-9a-f]{8}$/)]);
  const runtime = createRuntime(config, deployments, createPricing(deployments), () => ({}) as any, { spend: 0, budgetResetAt: null, createdAt: null });
  expect(runtime.router.names()).toEqual(["flash", "mock"]);
  expect(runtime.unservedReason("claude")).toBe('Invalid model name passed in model=claude: config.yaml serves it with provider "bedrock", which litegate does not support (the entry was left out when the config was loaded)');
  expect(runtime.unservedReason("bedrock/titan")).toContain('provider "bedrock"');
  expect(runtime.unservedReason("flash")).toBeUndefined();
  expect(runtime.unservedReason("nothing")).toBeUndefined();
  // Every entry unsupported: still a config, with nothing to serve.
  const none = parseConfig("model_list:\n  - {model_name: claude, litellm_params: {model: bedrock/x}}\n", {});
  expect(deploymentsOf(none.config)).toEqual([]);
});

test("an api_base naming an unset (or empty) variable warns and leaves its entry out, as LiteLLM starts; another entry of the model still serves", () => {
  const { config, warnings } = parseConfig(`model_list:
  - {model_name: gpt, litellm_params: {model: openai/gpt-4o, api_key: k}}
  - {model_name: azure, litellm_params: {model: azure/gpt-4o, api_base: os.environ/AZURE_API_BASE, api_key: k}}
  - {model_name: gpt, litellm_params: {model: openai/gpt-4o, api_base: os.environ/EMPTY_BASE, api_key: k}}
`, { EMPTY_BASE: "" });
  expect(warnings).toEqual([
    "model_list[1].litellm_params.api_base: environment variable AZURE_API_BASE is not set; this entry is left out, and requests no other entry serves are refused until it is set (a reload reads it again)",
    "model_list[2].litellm_params.api_base: environment variable EMPTY_BASE is empty; this entry is left out, and requests no other entry serves are refused until it is set (a reload reads it again)",
  ]);
  const deployments = deploymentsOf(config);
  expect(deployments.map((d) => d.id)).toEqual([expect.stringMatching(/^gpt#[0-9a-f]{8}$/)]);
  const runtime = createRuntime(config, deployments, createPricing(deployments), () => ({}) as any, { spend: 0, budgetResetAt: null, createdAt: null });
  expect(runtime.unservedReason("azure")).toBe("Invalid model name passed in model=azure: config.yaml's api_base for it names the environment variable AZURE_API_BASE, which is not set (the entry was left out when the config was loaded)");
  expect(runtime.unservedReason("gpt")).toBeUndefined();
  // Set, it is a deployment like any other.
  const set = parseConfig("model_list:\n  - {model_name: azure, litellm_params: {model: azure/gpt-4o, api_base: os.environ/AZURE_API_BASE, api_key: k}}\n", { AZURE_API_BASE: "https://a.example/" });
  expect(deploymentsOf(set.config).map((d) => d.params.api_base)).toEqual(["https://a.example/"]);
  // A value that is neither a variable nor a URL is still refused.
  expect(() => parseConfig("model_list:\n  - {model_name: m, litellm_params: {model: openai/m, api_base: not-a-url, api_key: k}}\n", {})).toThrow("must be an http(s) URL");
});

test("a setting written null or empty is unset, as LiteLLM reads None; a null inside metadata stays", () => {
  const { config } = parseConfig(`model_list:
  - model_name: m
    litellm_params: {model: mock/m, api_base: null, rpm: ~}
    model_info: null
general_settings:
  master_key: sk-1
  database_url: null
  proxy_budget_rescheduler_min_time: null
litellm_settings:
  max_budget: null
  budget_duration:
  max_end_user_budget:
  default_key_generate_params: {max_budget: null, metadata: {team: null}}
router_settings:
  num_retries: null
`, {});
  expect(config.litellm_settings).not.toHaveProperty("max_budget");
  expect(config.litellm_settings).not.toHaveProperty("budget_duration");
  expect(config.litellm_settings).not.toHaveProperty("max_end_user_budget");
  expect(config.litellm_settings.default_key_generate_params).toEqual({ metadata: { team: null } });
  expect(config.general_settings.database_url).toBeUndefined();
  expect(config.general_settings.proxy_budget_rescheduler_min_time).toBe(597);
  expect(config.router_settings.num_retries).toBeUndefined();
  expect(config.model_list[0]).toEqual({ model_name: "m", litellm_params: { model: "mock/m" } });
});

test("YAML 1.1 scalars as PyYAML reads them: 1_000_000, yes/on/off, True; y, n and dates stay text", () => {
  const { config } = parseConfig(`model_list:
  - model_name: y
    litellm_params: {model: azure/gpt, api_base: "https://x.test", api_version: 2024-02-01, tpm: 1_000_000, rpm: 0x10}
general_settings:
  enforce_user_param: yes
  reject_unpriced_models: on
  metrics_public: True
  allow_requests_on_db_unavailable: off
environment_variables:
  FLAG: n
`, {});
  expect(config.model_list[0]!.model_name).toBe("y");
  expect(config.model_list[0]!.litellm_params).toMatchObject({ api_version: "2024-02-01", tpm: 1_000_000, rpm: 16 });
  expect(config.general_settings).toMatchObject({ enforce_user_param: true, reject_unpriced_models: true, metrics_public: true, allow_requests_on_db_unavailable: false });
  expect(config.environment_variables.FLAG).toBe("n");
});

test("text YAML 1.1's float pattern takes but makes no number of stays text (a model named e5, an api key e123, a lone dot); .nan and 1e5 are numbers", () => {
  const { config } = parseConfig(`model_list:
  - {model_name: e5, litellm_params: {model: openai/e5, api_base: "https://x.test", api_key: e123, rpm: 1e5}}
  - {model_name: e500, litellm_params: {model: openai/e500, api_base: "https://x.test", api_key: ., tpm: 1_000}}
  - {model_name: E3, litellm_params: {model: openai/E3, api_base: "https://x.test", api_key: 0_}}
`, {});
  expect(config.model_list.map((m) => [m.model_name, m.litellm_params.api_key])).toEqual([["e5", "e123"], ["e500", "."], ["E3", "0_"]]);
  expect(config.model_list[0]!.litellm_params.rpm).toBe(100_000);
  expect(config.model_list[1]!.litellm_params.tpm).toBe(1000);
  expect(deploymentsOf(config).map((d) => d.modelName)).toEqual(["e5", "e500", "E3"]);
});

test("model_group_alias: an alias may be a fallback (standing for its group); a pattern is no alias target; an alias named as a model entry is warned about", () => {
  const models = `model_list:
  - model_name: real-a
    litellm_params: {model: mock/a}
  - model_name: real-b
    litellm_params: {model: mock/b}
  - model_name: "oa/*"
    litellm_params: {model: "mock/*"}
`;
  const { config, warnings } = parseConfig(`${models}router_settings:
  model_group_alias: {gpt-4: real-a, backup: real-b}
  fallbacks: [{gpt-4: [backup]}, {real-b: [gpt-4]}]
`, {});
  expect(warnings).toEqual([]);
  const deployments = deploymentsOf(config);
  const runtime = createRuntime(config, deployments, createPricing(deployments), () => ({}) as any, { spend: 0, budgetResetAt: null, createdAt: null });
  expect(runtime.fallbacksOf("real-a")).toEqual(["real-b"]);
  expect(runtime.fallbacksOf("real-b")).toEqual(["real-a"]);
  expect(problemsOf(() => parseConfig(`${models}router_settings:\n  model_group_alias: {star: "oa/*"}\n`, {}))).toEqual([
    'config.yaml:9: router_settings.model_group_alias.star: "oa/*" is a wildcard pattern; an alias names one model (such as "oa/some-model")',
  ]);
  expect(parseConfig(`${models}router_settings:\n  model_group_alias: {one: "oa/one"}\n`, {}).warnings).toEqual([]);
  expect(parseConfig(`${models}router_settings:\n  model_group_alias: {real-b: real-a}\n`, {}).warnings).toEqual([
    'router_settings.model_group_alias.real-b: the alias has the name of a model_list entry; requests for "real-b" are served by "real-a", not by that entry',
  ]);
});

test("default_fallbacks (either section) serve every model without fallbacks of its own, after any `*` ones; context_window_fallbacks are read as fallbacks are; a name no entry serves is refused", () => {
  const models = `model_list:
  - model_name: a
    litellm_params: {model: mock/a}
  - model_name: b
    litellm_params: {model: mock/b}
  - model_name: c
    litellm_params: {model: mock/c}
`;
  const { config, warnings } = parseConfig(`${models}litellm_settings:
  default_fallbacks: [b]
router_settings:
  fallbacks: [{a: [c]}]
  default_fallbacks: [c]
  context_window_fallbacks: [{a: [b]}, {"*": [c]}]
`, {});
  expect(warnings).toEqual([]);
  const deployments = deploymentsOf(config);
  const runtime = createRuntime(config, deployments, createPricing(deployments), () => ({}) as any, { spend: 0, budgetResetAt: null, createdAt: null });
  expect(runtime.fallbacksOf("a")).toEqual(["c"]);
  expect(runtime.fallbacksOf("b")).toEqual(["c"]);
  expect(runtime.fallbacksOf("c")).toEqual(["b"]);
  expect(runtime.contextWindowFallbacksOf("a")).toEqual(["b"]);
  expect(runtime.contextWindowFallbacksOf("b")).toEqual(["c"]);
  expect(runtime.contextWindowFallbacksOf("c")).toEqual([]);
  expect(problemsOf(() => parseConfig(`${models}litellm_settings:\n  context_window_fallbacks: [{a: [nowhere]}]\n`, {}))).toEqual([
    'config.yaml:9: litellm_settings.context_window_fallbacks[0]: model "nowhere" is not in model_list',
  ]);
  expect(problemsOf(() => parseConfig(`${models}router_settings:\n  default_fallbacks: [nowhere]\n`, {}))).toEqual([
    'config.yaml:9: router_settings.default_fallbacks: model "nowhere" is not in model_list',
  ]);
});

test("a deployment's default id is what it is, not where it is: adding, removing or reordering entries leaves the others' ids", () => {
  const entries = {
    a: "  - {model_name: m, litellm_params: {model: openai/x, api_base: 'http://a.test/v1'}}",
    b: "  - {model_name: m, litellm_params: {model: openai/x, api_base: 'http://b.test/v1', max_parallel_requests: 1}}",
    other: "  - {model_name: other, litellm_params: {model: mock/o}}",
  };
  const ids = (...lines: string[]) => deploymentsOf(parseConfig(`model_list:\n${lines.join("\n")}\n`, {}).config).map((d) => d.id);
  const [a, b] = ids(entries.a, entries.b);
  expect(a).not.toBe(b);
  expect(ids(entries.other, entries.b, entries.a)).toEqual([ids(entries.other)[0], b, a]);
  expect(ids(entries.b)).toEqual([b]);
  // Identical entries each have one; an explicit id equal to a default one keeps it, and the default moves aside.
  expect(ids(entries.a, entries.a)).toEqual([a, `${a}-1`]);
  expect(ids(entries.a, `  - {model_name: n, litellm_params: {model: mock/n}, model_info: {id: '${a}'}}`)).toEqual([`${a}-1`, a]);
});
