import { PATHS, type Target, baseUrl, makeTarget, paramOrEnv } from "./http";
import { messagesViaChat } from "./messages";
import { sendOpenAiShaped } from "./openai";
import type { Deployment, Provider, Route, UpstreamCall, UpstreamResult } from "./types";

// The first GA version that takes stream_options, which litegate adds to every stream for its usage.
const DEFAULT_API_VERSION = "2024-10-21";

/**
 * Whether an api-version takes `stream_options` (2024-09-01-preview and later): older ones refuse a
 * stream that carries it, so their streams go without it and are charged from litegate's own count.
 * A version not written as a date (`preview`, `v1`) is a newer API and takes it.
 */
export function takesStreamOptions(version: string): boolean {
  const date = /^(\d{4})-?(\d{2})-?(\d{2})/.exec(version);
  return date === null || `${date[1]}-${date[2]}-${date[3]}` >= "2024-09-01";
}

/** Azure OpenAI: the OpenAI API under `/openai/deployments/<name>`, keyed by `api-key`. */
export function azureAdapter(deployment: Deployment, env: Record<string, string | undefined>): Provider {
  const params = deployment.params;
  const given = params.api_base ?? env.AZURE_API_BASE;
  if (!given) throw new Error(`deployment ${deployment.id}: provider azure needs litellm_params.api_base (or AZURE_API_BASE)`);
  const base = baseUrl(given, "", deployment);
  const apiVersion = String(paramOrEnv(params, "api_version", env, "AZURE_API_VERSION") ?? DEFAULT_API_VERSION).trim();
  const version = encodeURIComponent(apiVersion);
  const askUsage = takesStreamOptions(apiVersion);
  const key = paramOrEnv(params, "api_key", env, "AZURE_API_KEY");
  const headers: Record<string, string> = key ? { "api-key": key } : {};
  const prefix = `${base}/openai/deployments/${encodeURIComponent(deployment.upstreamModel)}`;
  const target = (route: Exclude<Route, "messages">): Target => makeTarget(`${prefix}${PATHS[route]}?api-version=${version}`, headers, key);
  const targets = { chat: target("chat"), completions: target("completions"), embeddings: target("embeddings") };
  const send = (call: UpstreamCall): Promise<UpstreamResult> =>
    call.route === "messages" ? messagesViaChat(call, send) : sendOpenAiShaped(call, targets[call.route], askUsage);
  return { send };
}
