import { providerDefaultMaxTokens } from "../providers";
import type { Deployment, Route } from "../providers/types";
import type { Runtime } from "./runtime";

export interface Sizing {
  promptTokens: number;
  maxTokens: number | null;
  choices: number;
}

/**
 * What a request may cost at a deployment, and the tokens it may use: its answer counts as long as the
 * provider will let it be, no more than the model can answer with, whatever max_tokens says (a request
 * asking for 1e300 would otherwise hold every shared budget).
 */
export function reservationAt(runtime: Runtime, route: Route, deployment: Deployment, body: Record<string, unknown>, sizing: Sizing) {
  const asked = sizing.maxTokens ?? providerDefaultMaxTokens(deployment.provider, body) ?? runtime.defaultCompletionTokens;
  const completion = route === "embeddings" ? 0 : Math.min(asked, runtime.pricing.outputCap(deployment)) * sizing.choices;
  return { cost: runtime.pricing.estimate(deployment, route, sizing.promptTokens, completion), tokens: sizing.promptTokens + completion };
}
