import { anthropicAdapter } from "./anthropic";
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
      provider = adapter(deployment, env);
      built.set(deployment, provider);
      return provider;
    },
  };
}
