import { anthropicProvider } from "./anthropic";
import { mockProvider } from "./mock";
import { azureProvider, openAiProvider } from "./openai";
import type { Deployment, Provider } from "./types";

export type * from "./types";

/** Provider prefixes that speak the OpenAI API (through `api_base` for self-hosted servers). */
const OPENAI_COMPATIBLE = ["openai", "text-completion-openai", "hosted_vllm", "vllm", "ollama", "ollama_chat", "groq", "together_ai", "deepseek", "mistral", "openrouter", "fireworks_ai", "perplexity", "xai", "lm_studio", "custom_openai"];

export const SUPPORTED_PROVIDERS = [...OPENAI_COMPATIBLE, "azure", "anthropic", "mock"];

/** One adapter per provider kind, shared by all deployments of that kind. */
export function createProviders() {
  const openai = openAiProvider();
  const adapters = new Map<string, Provider>([["azure", azureProvider()], ["anthropic", anthropicProvider()], ["mock", mockProvider()]]);
  for (const name of OPENAI_COMPATIBLE) adapters.set(name, openai);
  return {
    forDeployment(deployment: Deployment): Provider {
      const adapter = adapters.get(deployment.provider);
      if (!adapter) throw new Error(`unknown provider "${deployment.provider}" (supported: ${SUPPORTED_PROVIDERS.join(", ")})`);
      return adapter;
    },
  };
}
