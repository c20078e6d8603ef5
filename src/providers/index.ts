import { anthropicAdapter } from "./anthropic";
import { defaultMaxTokens as anthropicDefaultMaxTokens } from "./anthropic/request";
import { azureAdapter } from "./azure";
import { mockAdapter } from "./mock";
import { openAiAdapter } from "./openai";
import type { Deployment, Provider } from "./types";

export type * from "./types";

type Env = Record<string, string | undefined>;
type Adapter = (deployment: Deployment, env: Env) => Provider;

/** Provider prefixes that speak the OpenAI API (self-hosted ones at their `api_base`). */
const OPENAI_COMPATIBLE = [
  "openai", "text-completion-openai", "custom_openai", "hosted_vllm", "vllm", "ollama", "ollama_chat", "lm_studio",
  "groq", "together_ai", "deepseek", "mistral", "openrouter", "fireworks_ai", "perplexity", "xai",
];

const ADAPTERS = new Map<string, Adapter>([
  ...OPENAI_COMPATIBLE.map((name) => [name, openAiAdapter] as const),
  ["azure", azureAdapter],
  ["anthropic", anthropicAdapter],
  ["mock", mockAdapter],
]);

export const SUPPORTED_PROVIDERS = [...ADAPTERS.keys()];

/** The max_tokens a provider's adapter sends when the request gives none (Anthropic requires one, thinking included). */
export function providerDefaultMaxTokens(provider: string, body: Record<string, unknown>): number | undefined {
  return provider === "anthropic" ? anthropicDefaultMaxTokens(body) : undefined;
}

/** An `api_base` without what could be a credential in it: user and password, query, fragment. */
export function plainBase(value: unknown): string | undefined {
  if (typeof value !== "string") return undefined;
  try {
    const url = new URL(value);
    return `${url.protocol}//${url.host}${url.pathname}`;
  } catch {
    return undefined;
  }
}

/** The variable an `os.environ/NAME` value names, or null for any other value. */
export function envReference(value: unknown): string | null {
  return typeof value === "string" ? (/^os\.environ\/([A-Za-z_][A-Za-z0-9_]*)$/.exec(value.trim())?.[1] ?? null) : null;
}

/**
 * A deployment whose api_key names an environment variable that is unset (config.yaml keeps the
 * `os.environ/NAME` text) sends nothing: its requests fail, and the provider's default key, which the
 * operator did not give it, never goes to its api_base. A 500 lets the model's other deployments serve.
 */
function unsetKeyProvider(deployment: Deployment): Provider | null {
  const name = envReference(deployment.params.api_key);
  if (!name) return null;
  const message = `deployment ${deployment.modelName}: its api_key is os.environ/${name}, and ${name} is not set in the gateway's environment; nothing was sent to the provider`;
  return { send: async () => ({ kind: "error", status: 500, type: "internal_server_error", message }) };
}

export interface Providers {
  /** The adapter for a deployment, built once per deployment; throws on an unknown provider or a bad api_base. */
  forDeployment(deployment: Deployment): Provider;
}

/**
 * Adapters know their deployment's URL and headers from the start, so a request only builds its body.
 * `env` supplies the keys LiteLLM reads when config.yaml gives none (OPENAI_API_KEY, AZURE_API_KEY…).
 */
export function createProviders(env: Env = process.env): Providers {
  const built = new WeakMap<Deployment, Provider>();
  return {
    forDeployment(deployment) {
      let provider = built.get(deployment);
      if (provider) return provider;
      const adapter = ADAPTERS.get(deployment.provider);
      if (!adapter) {
        throw new Error(`deployment ${deployment.id}: unknown provider "${deployment.provider}" (supported: ${SUPPORTED_PROVIDERS.join(", ")})`);
      }
      provider = unsetKeyProvider(deployment) ?? adapter(deployment, env);
      built.set(deployment, provider);
      return provider;
    },
  };
}
