import { type Config, unsupportedModels } from "../config";
import type { BudgetDefaults } from "../governance";
import { matchesPattern } from "../governance/access";
import type { Pricing } from "../pricing";
import type { Deployment, Provider, Route } from "../providers/types";
import { type DeploymentUsage, ModelRouter } from "./router";
import { DeploymentSlots } from "./slots";

/** Everything a request reads from config.yaml, swapped as one object when the config is reloaded. */
export interface Runtime {
  config: Config;
  router: ModelRouter;
  pricing: Pricing;
  providerFor(deployment: Deployment): Provider;
  maxBodyBytes: number;
  defaultCompletionTokens: number;
  /**
   * A deployment of `model` for `route` (ModelRouter.pick): with `reject_unpriced_models`, only one
   * priced for it (a fallback or a retry never lands on a deployment that would cost nothing).
   */
  pick(model: string, route: Route, tried?: ReadonlySet<string>): Deployment | null;
  /**
   * A deployment of `model` for `route` to retry at once every one was tried: as `pick` chooses, among
   * those not cooling down (one that failed too often, or asked to be left for a while, is not called again).
   */
  pickAgain(model: string, route: Route): Deployment | null;
  /** The deployments of `model` a request for `route` may also wait for a slot at (ModelRouter.alternatives). */
  alternatives(model: string, route: Route, tried: ReadonlySet<string>): Deployment[];
  /** With `reject_unpriced_models`, why `model` has no deployment for `route`: the price it lacks. */
  unpricedReason(model: string, route: Route): string | undefined;
  requestTimeoutMs: number;
  /**
   * Budget settings and the gateway's stored spend: the same object until the scheduler changes that
   * spend, so a plan kept for it stays valid exactly as long (compared by identity).
   */
  budgetDefaults(): BudgetDefaults;
  /**
   * How many times a model is retried after a retryable error, and whether a retry may go back to a
   * deployment already tried: with `num_retries` set, as LiteLLM's router retries the model group; by
   * default, each other deployment is tried once.
   */
  retriesOf(model: string): { times: number; again: boolean };
  /** Other model names to try when all of a model's deployments failed. */
  fallbacksOf(model: string): string[];
  /** Model names to try when a model answered that the prompt is longer than it takes (`context_window_fallbacks`). */
  contextWindowFallbacksOf(model: string): string[];
  /** Why a model no deployment serves is refused, when config.yaml names it for a provider litegate does not support. */
  unservedReason(model: string): string | undefined;
  /** The model group an alias names (`router_settings.model_group_alias`), or undefined for any other name. */
  aliasOf(model: string): string | undefined;
  /** Aliases `/v1/models` lists (those not `hidden`), with the group each names. */
  listedAliases: ReadonlyArray<[alias: string, model: string]>;
  calls: ProviderCalls;
}

/** What each provider call did, for metrics: one the gateway retried elsewhere still counts. */
export interface ProviderCalls {
  /** A call that ended in an error (its status; 502 when it threw, 499 when it was abandoned). */
  failed(deployment: Deployment, status: number): void;
  /** The call whose result went to the client: how long it took, to its whole answer or to a stream's start. */
  answered(deployment: Deployment, seconds: number): void;
}

const NO_CALLS: ProviderCalls = { failed() {}, answered() {} };

/** Seconds a request may wait on its provider, when no timeout is set. */
const DEFAULT_REQUEST_TIMEOUT = 600;

function requestTimeoutOf(...set: Array<number | undefined>): number {
  const shortest = Math.min(...set.map((seconds) => seconds ?? Infinity));
  return Number.isFinite(shortest) ? shortest : DEFAULT_REQUEST_TIMEOUT;
}

/** The gateway's own stored spend, refreshed by the budget scheduler. */
export interface GatewayState {
  spend: number;
  budgetResetAt: Date | null;
  createdAt: Date | null;
  /** When its budget's current chain of periods began (see sql/0011_budget_anchor.sql), if stored. */
  anchorAt?: Date | null;
}

export function createRuntime(
  config: Config,
  deployments: Deployment[],
  pricing: Pricing,
  providerFor: (d: Deployment) => Provider,
  gateway: GatewayState,
  now: () => number = Date.now,
  calls: ProviderCalls = NO_CALLS,
  slots: DeploymentSlots = new DeploymentSlots(),
  usage?: DeploymentUsage,
): Runtime {
  const g = config.general_settings;
  const l = config.litellm_settings;
  const r = config.router_settings;
  const router = new ModelRouter(deployments, {
    allowedFails: r.allowed_fails ?? 3, cooldownSeconds: r.cooldown_time, defaultMaxParallel: r.default_max_parallel_requests ?? undefined,
  }, now, slots, usage);
  const aliases = new Map(Object.entries(r.model_group_alias ?? {}).map(([alias, target]) => [alias, typeof target === "string" ? { model: target, hidden: false } : { model: target.model, hidden: target.hidden === true }]));
  // Fallbacks go from and to model groups: an alias named in them stands for the group it names.
  const groupOf = (name: string) => aliases.get(name)?.model ?? name;
  const fallbackMap = (entries: ReadonlyArray<Record<string, string[]>>) => {
    const map = new Map<string, string[]>();
    for (const entry of entries) {
      for (const [from, to] of Object.entries(entry)) {
        const source = from === "*" ? from : groupOf(from);
        map.set(source, [...(map.get(source) ?? []), ...to.map(groupOf)]);
      }
    }
    return map;
  };
  const defaultFallbacks = [...(l.default_fallbacks ?? []), ...(r.default_fallbacks ?? [])];
  const fallbacks = fallbackMap([...(l.fallbacks ?? []), ...(r.fallbacks ?? []), ...(defaultFallbacks.length > 0 ? [{ "*": defaultFallbacks }] : [])]);
  const wider = fallbackMap([...(l.context_window_fallbacks ?? []), ...(r.context_window_fallbacks ?? [])]);
  const configuredRetries = r.num_retries ?? l.num_retries;
  // What a deployment's price lacks for a route: a side missing costs 0 there (embeddings have no output).
  const lacking = (route: Route, d: Deployment): string | undefined => {
    const price = pricing.priceOf(d);
    if (!price) return "price";
    return price.missing === "output_cost_per_token" && route === "embeddings" ? undefined : price.missing;
  };
  const unsupported = unsupportedModels(config);
  let defaults: BudgetDefaults = {
    maxBudget: l.max_budget ?? undefined,
    budgetDuration: l.budget_duration ?? undefined,
    maxEndUserBudget: l.max_end_user_budget ?? undefined,
    maxInternalUserBudget: l.max_internal_user_budget ?? undefined,
    internalUserBudgetDuration: l.internal_user_budget_duration ?? undefined,
    globalMaxParallelRequests: g.global_max_parallel_requests ?? undefined,
    gatewaySpend: gateway.spend,
    gatewayResetAt: gateway.budgetResetAt,
    gatewayCreatedAt: gateway.createdAt,
    gatewayAnchorAt: gateway.anchorAt ?? null,
  };
  return {
    config,
    router,
    retriesOf: (model) => configuredRetries === undefined
      ? { times: Math.max(0, router.deploymentsOf(model).length - 1), again: false }
      : { times: configuredRetries, again: true },
    // A model's own fallbacks, else the default ones (`*`), never the model itself.
    fallbacksOf: (model) => fallbacks.get(model) ?? (fallbacks.get("*") ?? []).filter((name) => name !== model),
    contextWindowFallbacksOf: (model) => wider.get(model) ?? (wider.get("*") ?? []).filter((name) => name !== model),
    aliasOf: (model) => aliases.get(model)?.model,
    listedAliases: [...aliases].filter(([, target]) => !target.hidden).map(([alias, target]) => [alias, target.model]),
    unservedReason(model) {
      const why = unsupported.get(model) ?? [...unsupported].find(([name]) => name.includes("*") && matchesPattern(name, model))?.[1];
      if (why === undefined) return undefined;
      return `Invalid model name passed in model=${model}: ${why} (the entry was left out when the config was loaded)`;
    },
    pricing,
    providerFor,
    calls,
    maxBodyBytes: Math.floor(g.max_request_size_mb * 1024 * 1024),
    defaultCompletionTokens: g.default_completion_tokens,
    pick(model, route, tried) {
      return router.pick(model, tried, g.reject_unpriced_models ? (d) => lacking(route, d) === undefined : undefined);
    },
    pickAgain(model, route) {
      return router.pick(model, undefined, (d) => !router.cooledDown(d) && (!g.reject_unpriced_models || lacking(route, d) === undefined));
    },
    alternatives(model, route, tried) {
      return router.alternatives(model, tried, g.reject_unpriced_models ? (d) => lacking(route, d) === undefined : undefined);
    },
    unpricedReason(model, route) {
      if (!g.reject_unpriced_models) return undefined;
      const side = router.deploymentsOf(model).map((d) => lacking(route, d)).find((missing) => missing !== undefined);
      return side && `Model ${model} has no ${side} and general_settings.reject_unpriced_models is true`;
    },
    // LiteLLM's other names for the same deadline: the shortest one set applies, 600 s when none is.
    requestTimeoutMs: requestTimeoutOf(g.request_timeout, l.request_timeout, r.timeout) * 1000,
    budgetDefaults() {
      if (defaults.gatewaySpend !== gateway.spend || defaults.gatewayResetAt !== gateway.budgetResetAt || defaults.gatewayCreatedAt !== gateway.createdAt
        || defaults.gatewayAnchorAt !== (gateway.anchorAt ?? null)) {
        defaults = { ...defaults, gatewaySpend: gateway.spend, gatewayResetAt: gateway.budgetResetAt, gatewayCreatedAt: gateway.createdAt,
          gatewayAnchorAt: gateway.anchorAt ?? null };
      }
      return defaults;
    },
  };
}
