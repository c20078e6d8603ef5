import { createHash } from "node:crypto";
import { SUPPORTED_PROVIDERS, envReference, plainBase } from "../providers";
import type { Deployment } from "../providers/types";
import { type Config, providerOf } from "./schema";
import { ConfigError } from "./load";

export { ConfigError, loadConfig, parseConfig, pathName, validateConfig } from "./load";
export { providerOf } from "./schema";
export type { Config, GeneralSettings, KeyDefaults, KeyUpperBounds, LitellmSettings, ModelEntry, RouterSettings } from "./schema";

type Env = Record<string, string | undefined>;

/**
 * Model names whose every entry was left out of routing (warned about at load), each with why, as the
 * refusal of a request for one says it: the provider litegate does not support, or the unset variable
 * its api_base names (of the first such entry).
 */
export function unsupportedModels(config: Config): Map<string, string> {
  const served = new Set(deploymentsOf(config).map((d) => d.modelName));
  const out = new Map<string, string>();
  for (const entry of config.model_list) {
    if (served.has(entry.model_name) || out.has(entry.model_name)) continue;
    const unsetBase = envReference(entry.litellm_params.api_base);
    out.set(entry.model_name, unsetBase
      ? `config.yaml's api_base for it names the environment variable ${unsetBase}, which is not set`
      : `config.yaml serves it with provider "${providerOf(entry.litellm_params.model)}", which litegate does not support`);
  }
  return out;
}

/**
 * One deployment per model_list entry: `provider/model` split, `openai` when no provider is named.
 * Entries of a provider litegate does not support, or whose api_base names an unset environment
 * variable, are left out (warned about at load).
 */
export function deploymentsOf(config: Config): Deployment[] {
  // A deployment's id without model_info.id comes from what it is (its model's name, and the provider's
  // model, base, version and key it calls), not from its place: a reload adding, removing or reordering
  // entries leaves every other id as it was, and with it what is kept by id (slots in use, rpm/tpm
  // windows, cooldowns). Identical entries take -1, -2, … in their order; no id is another entry's.
  const used = new Set(config.model_list.flatMap((entry) => (entry.model_info?.id === undefined ? [] : [entry.model_info.id])));
  const defaultId = (entry: Config["model_list"][number]) => {
    const p = entry.litellm_params as Record<string, unknown>;
    const what = [entry.model_name, p.model, p.api_base, p.api_version, p.api_key].map((v) => (v == null ? "" : String(v))).join("\n");
    const base = `${entry.model_name}#${createHash("sha256").update(what).digest("hex").slice(0, 8)}`;
    let id = base;
    for (let n = 1; used.has(id); n++) id = `${base}-${n}`;
    used.add(id);
    return id;
  };
  return config.model_list.flatMap((entry) => {
    const id = entry.model_info?.id ?? defaultId(entry);
    const model = entry.litellm_params.model;
    const slash = model.indexOf("/");
    if (!SUPPORTED_PROVIDERS.includes(providerOf(model))) return [];
    // An api_base still `os.environ/NAME` names a variable that is unset: there is nowhere to send to.
    if (envReference(entry.litellm_params.api_base)) return [];
    return [{
      id,
      modelName: entry.model_name,
      provider: providerOf(model),
      upstreamModel: slash > 0 ? model.slice(slash + 1) : model,
      params: entry.litellm_params as Record<string, unknown>,
      modelInfo: (entry.model_info ?? {}) as Record<string, unknown>,
      apiBase: plainBase(entry.litellm_params.api_base),
    }];
  });
}

export function databaseUrlOf(config: Config, env: Env): string | undefined {
  return config.general_settings.database_url || env.DATABASE_URL || undefined;
}

/**
 * `redis_url`, `REDIS_URL`, then LiteLLM's router_settings / cache_params host, port and password. A
 * Redis cache (`cache: true`, cache_params.type redis or left out) takes what they leave out from
 * REDIS_HOST, REDIS_PORT and REDIS_PASSWORD, as LiteLLM reads them there.
 */
export function redisUrlOf(config: Config, env: Env): string | undefined {
  const direct = config.general_settings.redis_url || config.router_settings.redis_url || env.REDIS_URL;
  if (direct) return direct;
  const r = config.router_settings;
  const l = config.litellm_settings;
  const c = l.cache_params;
  const fromEnv = l.cache === true && (c?.type ?? "redis") === "redis";
  const host = r.redis_host ?? c?.host ?? (fromEnv ? env.REDIS_HOST || undefined : undefined);
  if (!host) return undefined;
  const envPort = fromEnv ? env.REDIS_PORT || undefined : undefined;
  const port = r.redis_port ?? c?.port ?? envPort ?? 6379;
  const portName = r.redis_port !== undefined ? "router_settings.redis_port" : c?.port !== undefined ? "litellm_settings.cache_params.port" : "REDIS_PORT";
  if (!/^\d+$/.test(String(port)) || Number(port) < 1 || Number(port) > 65535) {
    throw new ConfigError([`${portName}: must be a port number from 1 to 65535 (got ${JSON.stringify(port)})`]);
  }
  const password = r.redis_password ?? c?.password ?? (fromEnv ? env.REDIS_PASSWORD || undefined : undefined);
  return `redis://${password ? `:${encodeURIComponent(password)}@` : ""}${host}:${port}`;
}
