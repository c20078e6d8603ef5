import { Value } from "@sinclair/typebox/value";
import { readFileSync } from "node:fs";
import { dirname } from "node:path";
import { LineCounter, parseDocument, type Tags } from "yaml";
import { matchesPattern } from "../governance/access";
import { parseDuration } from "../governance/duration";
import { SUPPORTED_PROVIDERS, envReference } from "../providers";
import { ConfigError } from "./errors";
import { readIncludes } from "./include";
import { type FileLines, linesOf, pathName, withLines } from "./lines";
import { type Config, ConfigSchema, KNOWN_KEYS, SERVED_MODES, providerOf } from "./schema";

export { ConfigError };

type Env = Record<string, string | undefined>;
const SECTIONS = ["model_list", "general_settings", "litellm_settings", "router_settings", "environment_variables"];

export { pathName };

/**
 * Replaces every `os.environ/NAME` string. A missing provider api_key only warns and stays as written:
 * the deployment fails at request time rather than fall back to the provider's default variable
 * (OPENAI_API_KEY), a key the operator did not name for it. A missing api_base warns and stays as
 * written too: that entry is left out (see deploymentsOf), as LiteLLM starts with the others.
 */
function substitute(value: unknown, path: (string | number)[], env: Env, problems: string[], warnings: string[]): unknown {
  if (typeof value === "string") {
    const name = envReference(value);
    if (!name) return value;
    const resolved = env[name];
    // Set but empty is as good as unset: `database_url: ""` would quietly mean the embedded database.
    if (resolved !== undefined && resolved !== "") return resolved;
    const unset = resolved === undefined ? "is not set" : "is empty";
    const isApiKey = path[0] === "model_list" && path[2] === "litellm_params" && path[3] === "api_key";
    if (isApiKey) {
      warnings.push(`${pathName(path)}: environment variable ${name} ${unset}; requests to this deployment will fail until it is set`);
      return value;
    }
    const isApiBase = path[0] === "model_list" && path[2] === "litellm_params" && path[3] === "api_base";
    if (isApiBase) {
      warnings.push(`${pathName(path)}: environment variable ${name} ${unset}; this entry is left out, and requests no other entry serves are refused until it is set (a reload reads it again)`);
      return value;
    }
    problems.push(`${pathName(path)}: environment variable ${name} ${unset}`);
    return value;
  }
  if (Array.isArray(value)) return value.map((item, i) => substitute(item, [...path, i], env, problems, warnings));
  if (value && typeof value === "object") {
    const out: Record<string, unknown> = {};
    for (const [key, item] of Object.entries(value)) {
      const next = substitute(item, [...path, key], env, problems, warnings);
      if (next !== undefined) out[key] = next;
    }
    return out;
  }
  return value;
}

function warnUnknown(object: unknown, known: readonly string[], path: string, warnings: string[]): void {
  if (!object || typeof object !== "object" || Array.isArray(object)) return;
  for (const key of Object.keys(object)) {
    if (!known.includes(key)) warnings.push(`${path}.${key}: not supported by litegate, ignored`);
  }
}

const isMapping = (value: unknown): value is Record<string, unknown> => !!value && typeof value === "object" && !Array.isArray(value);

/** Drops a mapping's keys written empty or `null`. */
function dropNull(object: unknown): void {
  if (!isMapping(object)) return;
  for (const [key, value] of Object.entries(object)) if (value === null) delete object[key];
}

/**
 * A setting written empty or `null` (`max_budget: null`, `budget_duration:`) is unset, as LiteLLM reads
 * None: its default applies. Only settings: a null inside metadata stays as written.
 */
function dropNullSettings(tree: Record<string, unknown>): void {
  for (const section of ["general_settings", "litellm_settings", "router_settings"]) {
    const settings = tree[section];
    dropNull(settings);
    if (!isMapping(settings)) continue;
    for (const nested of ["upperbound_key_generate_params", "default_key_generate_params", "cache_params"]) dropNull(settings[nested]);
  }
  if (!Array.isArray(tree.model_list)) return;
  for (const entry of tree.model_list) {
    dropNull(entry);
    if (isMapping(entry)) for (const nested of ["litellm_params", "model_info"]) dropNull(entry[nested]);
  }
}

/**
 * `litellm_settings.max_user_budget`, the older name LiteLLM's documents give the budget of a `user`
 * sent in requests, is read as `max_end_user_budget`; when both are set the newer name wins.
 */
function readOldNames(settings: unknown, warnings: string[]): boolean {
  if (!settings || typeof settings !== "object" || Array.isArray(settings)) return false;
  const l = settings as Record<string, unknown>;
  if (!("max_user_budget" in l)) return false;
  const read = l.max_end_user_budget === undefined;
  if (read) {
    l.max_end_user_budget = l.max_user_budget;
  } else {
    warnings.push("litellm_settings.max_user_budget: ignored, max_end_user_budget is set (both name the budget of a `user` sent in requests)");
  }
  delete l.max_user_budget;
  return read;
}

/**
 * The master key comes from LITELLM_MASTER_KEY when general_settings has none, as LiteLLM reads it
 * (environment_variables included). True when it did.
 */
function masterKeyFallback(settings: unknown, env: Env): boolean {
  if (!settings || typeof settings !== "object" || Array.isArray(settings)) return false;
  const g = settings as Record<string, unknown>;
  const fromEnv = env.LITELLM_MASTER_KEY;
  if ((g.master_key !== undefined && g.master_key !== null) || !fromEnv) return false;
  g.master_key = fromEnv;
  return true;
}

/** Keys LiteLLM configs carry that litegate reads without acting on: said once at load, not silently dropped. */
function warnAccepted(config: Config, warnings: string[]): void {
  const ignored = (path: string, why: string) => warnings.push(`${path}: accepted but not used by litegate (${why})`);
  const r = config.router_settings as Record<string, unknown>;
  const l = config.litellm_settings as Record<string, unknown>;
  if (r.retry_after !== undefined) ignored("router_settings.retry_after", "retries go to another deployment at once");
  if (r.routing_strategy !== undefined && r.routing_strategy !== "simple-shuffle") ignored("router_settings.routing_strategy", "deployments are picked by weight and rpm/tpm headroom");
  if (l.cache === true) ignored("litellm_settings.cache", "responses are not cached; a Redis cache's settings connect the instances' shared budgets and limits");
  if (l.drop_params !== undefined) ignored("litellm_settings.drop_params", "request bodies reach the provider as sent");
  if (l.set_verbose !== undefined) ignored("litellm_settings.set_verbose", "use general_settings.log_level");
  // Only a customer's header is read (proxy/customer.ts): an internal user is the key's user, whatever a header says.
  const mappings = config.general_settings.user_header_mappings;
  [mappings ?? []].flat().forEach((mapping, i) => {
    if (mapping.litellm_user_role.toLowerCase() === "customer") return;
    ignored(`general_settings.user_header_mappings${Array.isArray(mappings) ? `[${i}]` : ""}`,
      `litellm_user_role "${mapping.litellm_user_role}": only "customer" is read, a request's user is its key's user_id`);
  });
  config.model_list.forEach((entry, i) => {
    if ((entry.litellm_params as Record<string, unknown>).max_retries !== undefined) {
      ignored(`model_list[${i}].litellm_params.max_retries`, "use num_retries in litellm_settings or router_settings");
    }
    const mode = entry.model_info?.mode;
    if (mode !== undefined && !SERVED_MODES.includes(mode)) {
      warnings.push(`model_list[${i}].model_info.mode: "${mode}" has no route in litegate (it serves ${SERVED_MODES.join(", ")}); `
        + `requests for ${entry.model_name} go through /chat/completions, /completions, /embeddings and /v1/messages only`);
    }
  });
}

/**
 * Settings that hold a secret (a key, a password, a URL with one in it): an error about one names the
 * setting and what it should be, never what it holds, which goes to logs and to `/config/reload` answers.
 */
const SECRET_SETTING = /(?:key|password|secret|token|_url)$/;

/** An api_base as an error shows it: without a password or a query, which may hold a token. */
const shownBase = (base: string) => base.replace(/\/\/[^/@\s]*@/, "//").replace(/[?#].*$/, "");

function schemaMessage(error: { message: string; schema: Record<string, any>; value: unknown }, secret: boolean): string {
  if (error.value === undefined) return "required";
  const got = secret ? "" : ` (got ${JSON.stringify(error.value)})`;
  if (typeof error.schema.problem === "string") return `${error.schema.problem}${got}`;
  const choices = Array.isArray(error.schema.anyOf) && error.schema.anyOf.every((option: any) => option.const !== undefined)
    ? error.schema.anyOf.map((option: any) => JSON.stringify(option.const)) : null;
  if (choices) return `must be one of ${choices.join(", ")}${got}`;
  if (error.schema.minimum !== undefined && typeof error.value === "number" && error.value < error.schema.minimum) return `must be >= ${error.schema.minimum}`;
  if (error.schema.exclusiveMinimum !== undefined && typeof error.value === "number") return `must be > ${error.schema.exclusiveMinimum}`;
  return `${error.message.replace(/^Expected/, "expected")}${secret ? ` (got ${Array.isArray(error.value) ? "a list" : typeof error.value})` : got}`;
}

function checkSemantics(config: Config, problems: string[], warnings: string[], masterKeyPath: string): void {
  const g = config.general_settings;
  const l = config.litellm_settings;
  if (g.master_key !== undefined && !g.master_key.startsWith("sk-")) problems.push(`${masterKeyPath}: must start with "sk-"`);
  if (g.proxy_budget_rescheduler_min_time > g.proxy_budget_rescheduler_max_time) {
    problems.push("general_settings.proxy_budget_rescheduler_min_time: must not be greater than proxy_budget_rescheduler_max_time");
  }
  const durations = [
    ["litellm_settings.budget_duration", l.budget_duration], ["litellm_settings.internal_user_budget_duration", l.internal_user_budget_duration],
    ...(["upperbound_key_generate_params", "default_key_generate_params"] as const).flatMap((params) =>
      (["budget_duration", "duration"] as const).map((field) => [`litellm_settings.${params}.${field}`, l[params]?.[field]] as const)),
  ];
  for (const [path, value] of durations) {
    if (value !== undefined && !parseDuration(value)) problems.push(`${path}: "${value}" is not a duration (use 30s, 20m, 1h, 7d, 2w or 1mo: longer than zero, at most a century)`);
  }
  const names = new Set(config.model_list.map((m) => m.model_name));
  const ids = new Set<string>();
  config.model_list.forEach((m, i) => {
    const model = m.litellm_params.model;
    const provider = providerOf(model);
    // LiteLLM serves many more providers: a config written for it still starts, serving what litegate can.
    if (!SUPPORTED_PROVIDERS.includes(provider)) {
      warnings.push(`model_list[${i}].litellm_params.model: provider "${provider}" is not supported by litegate (supported: ${SUPPORTED_PROVIDERS.join(", ")}); `
        + `this entry of ${m.model_name} is left out, and requests no other entry serves are refused`);
    }
    if (model.endsWith("/")) problems.push(`model_list[${i}].litellm_params.model: "${model}" names no model after the provider (e.g. ${model}gpt-4o-mini)`);
    const base = m.litellm_params.api_base;
    if (base !== undefined && !envReference(base) && !/^https?:\/\/[^\s]+$/.test(base)) problems.push(`model_list[${i}].litellm_params.api_base: must be an http(s) URL (got "${shownBase(base)}")`);
    const id = m.model_info?.id;
    if (id !== undefined) {
      if (ids.has(id)) problems.push(`model_list[${i}].model_info.id: "${id}" is used by another entry`);
      ids.add(id);
    }
  });
  // A name a wildcard entry serves is served too; `*` as the source is LiteLLM's default fallback (for any model without its own).
  const patterns = [...names].filter((name) => name.includes("*"));
  const served = (name: string) => names.has(name) || patterns.some((pattern) => matchesPattern(pattern, name));
  const aliases = new Map(Object.entries(config.router_settings.model_group_alias ?? {}).map(([alias, target]) => [alias, typeof target === "string" ? target : target.model]));
  for (const [alias, model] of aliases) {
    const path = `router_settings.model_group_alias.${alias}`;
    // A pattern is no model a request could be sent to: every request for the alias would be refused.
    if (model.includes("*")) problems.push(`${path}: "${model}" is a wildcard pattern; an alias names one model (such as "${model.replace(/\*/g, "some-model")}")`);
    else if (!served(model)) problems.push(`${path}: model "${model}" is not in model_list`);
    if (names.has(alias)) warnings.push(`${path}: the alias has the name of a model_list entry; requests for "${alias}" are served by "${model}", not by that entry`);
  }
  for (const section of ["litellm_settings", "router_settings"] as const) {
    const settings = config[section];
    for (const name of settings.default_fallbacks ?? []) if (!served(name) && !aliases.has(name)) problems.push(`${section}.default_fallbacks: model "${name}" is not in model_list`);
    for (const kind of ["fallbacks", "context_window_fallbacks"] as const) {
      settings[kind]?.forEach((entry, i) => {
        for (const [from, targets] of Object.entries(entry)) {
          for (const name of from === "*" ? targets : [from, ...targets]) {
            // An alias stands for the model it names (see proxy/runtime.ts).
            if (!served(name) && !aliases.has(name)) problems.push(`${section}.${kind}[${i}]: model "${name}" is not in model_list`);
          }
        }
      });
    }
  }
}

/** Validates a parsed YAML tree. Problems name their path; warnings list ignored keys. */
export function validateConfig(raw: unknown, env: Env = process.env): { config: Config; warnings: string[] } {
  const problems: string[] = [];
  const warnings: string[] = [];
  const root = (raw ?? {}) as Record<string, unknown>;
  if (typeof root !== "object" || Array.isArray(root)) throw new ConfigError(["config: must be a mapping of sections"]);
  for (const key of Object.keys(root)) {
    // `include` is read (and taken away) before: see include.ts.
    if (!SECTIONS.includes(key)) problems.push(`${key}: unknown top-level key (expected one of ${[...SECTIONS, "include"].join(", ")})`);
  }
  // environment_variables are seen by the config's own `os.environ/` references at once, but set in
  // the process only once the config is taken: a refused config (a reload) changes nothing.
  const variables = root.environment_variables;
  const ownVariables: Record<string, string> = {};
  if (variables && typeof variables === "object" && !Array.isArray(variables)) {
    for (const [name, value] of Object.entries(variables)) {
      if (value !== null && value !== undefined) ownVariables[name] = String(value);
    }
  }
  const processEnv = env;
  env = { ...env, ...ownVariables };
  const tree: Record<string, unknown> = {};
  for (const section of SECTIONS) {
    const value = root[section];
    tree[section] = value === null || value === undefined ? (section === "model_list" ? [] : {}) : value;
  }
  // A list (`- NAME=value`) is not the mapping LiteLLM reads: refused, not read as variables "0", "1", ….
  if (Array.isArray(tree.environment_variables)) problems.push("environment_variables: must be a mapping of NAME: value (got a list)");
  else if (tree.environment_variables && typeof tree.environment_variables === "object") {
    tree.environment_variables = Object.fromEntries(Object.entries(tree.environment_variables).map(([k, v]) => [k, String(v)]));
  }
  if (!Array.isArray(tree.model_list)) problems.push("model_list: must be a list of models, each entry starting with \"- \"");
  dropNullSettings(tree);
  const substituted = substitute(tree, [], env, problems, warnings) as Record<string, unknown>;
  const oldName = readOldNames(substituted.litellm_settings, warnings);
  const masterKeyFromEnv = masterKeyFallback(substituted.general_settings, env);
  // Numbers and booleans written as text ("100", "true"), as environment variables always are, count as such.
  const withDefaults = Value.Default(ConfigSchema, Value.Convert(ConfigSchema, Value.Clone(substituted))) as Config;
  for (const error of Value.Errors(ConfigSchema, withDefaults)) {
    const parts = error.path.split("/").filter(Boolean);
    if (parts.length === 1 && !SECTIONS.includes(parts[0]!)) continue;
    const path = pathName(parts);
    problems.push(`${oldName && path === "litellm_settings.max_end_user_budget" ? "litellm_settings.max_user_budget" : path}: ${schemaMessage(error, SECRET_SETTING.test(parts.at(-1)!))}`);
  }
  if (problems.length > 0) throw new ConfigError([...new Set(problems)]);
  checkSemantics(withDefaults, problems, warnings, masterKeyFromEnv ? "LITELLM_MASTER_KEY (the master key when general_settings.master_key is unset)" : "general_settings.master_key");
  if (problems.length > 0) throw new ConfigError(problems);
  withDefaults.model_list.forEach((entry, i) => {
    warnUnknown(entry, KNOWN_KEYS.model_entry, `model_list[${i}]`, warnings);
    warnUnknown(entry.litellm_params, KNOWN_KEYS.litellm_params, `model_list[${i}].litellm_params`, warnings);
    warnUnknown(entry.model_info, KNOWN_KEYS.model_info, `model_list[${i}].model_info`, warnings);
  });
  for (const section of ["general_settings", "litellm_settings", "router_settings"] as const) {
    warnUnknown(withDefaults[section], KNOWN_KEYS[section], section, warnings);
  }
  for (const params of ["upperbound_key_generate_params", "default_key_generate_params"] as const) {
    warnUnknown(withDefaults.litellm_settings[params], KNOWN_KEYS[params], `litellm_settings.${params}`, warnings);
  }
  warnAccepted(withDefaults, warnings);
  Object.assign(processEnv, ownVariables);
  return { config: withDefaults, warnings };
}

export interface ParseOptions {
  /**
   * A reload refuses a document with nothing in it (an empty file, or one of comments only): taken,
   * it would switch every model and the gateway budget off, most likely as a file being rewritten.
   */
  reload?: boolean;
}

const TIMESTAMP = "tag:yaml.org,2002:timestamp";
const BOOL = "tag:yaml.org,2002:bool";
/** PyYAML's booleans: YAML 1.1's without the single letters (`y`, `n` stay text). */
const PY_TRUE = /^(?:[Yy]es|YES|[Tt]rue|TRUE|[Oo]n|ON)$/;
const PY_FALSE = /^(?:[Nn]o|NO|[Ff]alse|FALSE|[Oo]ff|OFF)$/;

/**
 * Scalars read as PyYAML, which LiteLLM reads its config with, reads them (YAML 1.1): `1_000_000` is a
 * number, `yes`/`on`/`off` booleans. Dates stay text: a date-like `api_version: 2024-02-01` is sent as
 * written (LiteLLM sends the date object as that same text).
 */
function pyYamlTags(tags: Tags): Tags {
  const out: Tags = [];
  for (const tag of tags) {
    if (typeof tag === "string") out.push(tag);
    else if (tag.tag === BOOL && "test" in tag && tag.test) out.push({ ...tag, test: tag.test.test("true") ? PY_TRUE : PY_FALSE });
    else if (NUMBER_TAGS.includes(tag.tag) && "resolve" in tag && typeof tag.resolve === "function") out.push({ ...tag, resolve: numberOrText(tag.resolve as Resolve) } as Tags[number]);
    else if (tag.tag !== TIMESTAMP) out.push(tag);
  }
  return out;
}

const NUMBER_TAGS = ["tag:yaml.org,2002:float", "tag:yaml.org,2002:int"];
const NAN = /^\.(?:nan|NaN|NAN)$/;
/**
 * A number tag's reading, except that text it makes no number of stays text: YAML 1.1's float
 * pattern takes `e5`, `e500` or `.` (a model's name, an api key), which PyYAML reads as text.
 */
type Resolve = (source: string, ...rest: unknown[]) => unknown;
function numberOrText(resolve: Resolve): Resolve {
  return (source, ...rest) => {
    const value = resolve(source, ...rest);
    // A float with a fraction comes as a node holding the number.
    const number = value !== null && typeof value === "object" && "value" in value ? value.value : value;
    return typeof number === "number" && Number.isNaN(number) && !NAN.test(source) ? source : value;
  };
}

/** Reads one file; with `files`, adds where each of its settings was written. */
function readYaml(text: string, source: string, files?: FileLines[]): unknown {
  const counter = new LineCounter();
  // Merge keys (`<<: *defaults`) as PyYAML resolves them.
  const document = parseDocument(text, { prettyErrors: true, uniqueKeys: true, merge: true, version: "1.1", customTags: pyYamlTags, lineCounter: counter });
  if (document.errors.length > 0) {
    throw new ConfigError(document.errors.map((error) => {
      const at = error.linePos?.[0];
      return `${source}${at ? `:${at.line}:${at.col}` : ""}: YAML syntax error: ${error.message.split("\n")[0]}`;
    }));
  }
  try {
    const tree = document.toJS();
    files?.push(linesOf(document, counter, source));
    return tree;
  } catch (error) {
    // An alias expanded past the parser's bound (a "billion laughs" document), or one it cannot resolve.
    throw new ConfigError([`${source}: YAML error: ${error instanceof Error ? error.message : String(error)}`]);
  }
}

/** Reads a config's text; files named by its `include:` are read relative to the directory of `source`. */
export function parseConfig(text: string, env: Env = process.env, source = "config.yaml", options: ParseOptions = {}): { config: Config; warnings: string[] } {
  const files: FileLines[] = [];
  const tree = readYaml(text, source, files);
  if (options.reload && (tree === null || tree === undefined || (typeof tree === "object" && Object.keys(tree).length === 0))) {
    throw new ConfigError([`${source}: the file holds no config (it is empty or only comments); a reload needs one`]);
  }
  const warnings: string[] = [];
  const merged = readIncludes(tree, dirname(source), (included, path) => readYaml(included, path, files), warnings);
  try {
    const loaded = validateConfig(merged, env);
    return { config: loaded.config, warnings: [...warnings, ...loaded.warnings] };
  } catch (error) {
    throw error instanceof ConfigError ? withLines(error, files) : error;
  }
}

export function loadConfig(path: string, env: Env = process.env, options: ParseOptions = {}): { config: Config; warnings: string[] } {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    const code = (error as { code?: string }).code;
    throw new ConfigError([`${path}: cannot read the config file (${code === "ENOENT" ? "no such file" : code ?? String(error)})`]);
  }
  return parseConfig(text, env, path, options);
}

