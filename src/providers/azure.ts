import { PATHS, type Target, baseUrl, makeTarget, paramOrEnv } from "./http";
import { sendOpenAiShaped } from "./openai";
import type { Deployment, Provider, Route } from "./types";

// The first GA version that takes stream_options, which litegate adds to every stream for its usage.
const DEFAULT_API_VERSION = "2024-10-21";

/** Azure OpenAI: the OpenAI API under `/openai/deployments/<name>`, keyed by `api-key`. */
export function azureAdapter(deployment: Deployment, env: Record<string, string | undefined>): Provider {
  const params = deployment.params;
  const given = params.api_base ?? env.AZURE_API_BASE;
  if (!given) throw new Error(`deployment ${deployment.id}: provider azure needs litellm_params.api_base (or AZURE_API_BASE)`);
  const base = baseUrl(given, "", deployment);
  const version = encodeURIComponent(paramOrEnv(params, "api_version", env, "AZURE_API_VERSION") ?? DEFAULT_API_VERSION);
  const key = paramOrEnv(params, "api_key", env, "AZURE_API_KEY");
  const headers: Record<string, string> = key ? { "api-key": key } : {};
  const prefix = `${base}/openai/deployments/${encodeURIComponent(deployment.upstreamModel)}`;
  const target = (route: Route): Target => makeTarget(`${prefix}${PATHS[route]}?api-version=${version}`, headers, key);
  const targets = { chat: target("chat"), completions: target("completions"), embeddings: target("embeddings") };
  return { send: (call) => sendOpenAiShaped(call, targets[call.route]) };
}
