import type { Config } from "../config";
import type { BudgetDefaults } from "../governance";
import type { Pricing } from "../pricing";
import type { Deployment, Provider } from "../providers/types";
import { ModelRouter } from "./router";

/** Everything a request reads from config.yaml, swapped as one object when the config is reloaded. */
export interface Runtime {
  config: Config;
  router: ModelRouter;
  pricing: Pricing;
  providerFor(deployment: Deployment): Provider;
  maxBodyBytes: number;
  defaultCompletionTokens: number;
  rejectUnpriced: boolean;
  requestTimeoutMs: number;
  /** Budget settings; the gateway's stored spend is read through `gatewayState`. */
  budgetDefaults(): BudgetDefaults;
}

/** The gateway's own stored spend, refreshed by the budget scheduler. */
export interface GatewayState {
  spend: number;
  budgetResetAt: Date | null;
  createdAt: Date | null;
}

export function createRuntime(
  config: Config,
  deployments: Deployment[],
  pricing: Pricing,
  providerFor: (d: Deployment) => Provider,
  gateway: GatewayState,
): Runtime {
  const g = config.general_settings;
  const l = config.litellm_settings;
  return {
    config,
    router: new ModelRouter(deployments),
    pricing,
    providerFor,
    maxBodyBytes: Math.floor(g.max_request_size_mb * 1024 * 1024),
    defaultCompletionTokens: g.default_completion_tokens,
    rejectUnpriced: g.reject_unpriced_models,
    requestTimeoutMs: g.request_timeout * 1000,
    budgetDefaults: () => ({
      maxBudget: l.max_budget ?? undefined,
      budgetDuration: l.budget_duration ?? undefined,
      maxEndUserBudget: l.max_end_user_budget ?? undefined,
      maxInternalUserBudget: l.max_internal_user_budget ?? undefined,
      internalUserBudgetDuration: l.internal_user_budget_duration ?? undefined,
      gatewaySpend: gateway.spend,
      gatewayResetAt: gateway.budgetResetAt,
      gatewayCreatedAt: gateway.createdAt,
    }),
  };
}
