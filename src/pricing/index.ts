import type { Deployment, Route, Usage } from "../providers/types";
import { tablePrice } from "./table";

/** USD per token. */
export interface Price {
  input: number;
  output: number;
  cachedInput?: number;
  /** Writing a prompt token to the provider's cache (Anthropic), when it costs more than reading it. */
  cacheWriteInput?: number;
  /** The model's context window, when the table knows the model. */
  contextWindow?: number;
  source: "config" | "table";
  /** The price the config left out and the table does not have either: it counts as 0. */
  missing?: "input_cost_per_token" | "output_cost_per_token";
}

export interface Pricing {
  priceOf(d: Deployment): Price | null;
  cost(d: Deployment, route: Route, usage: Usage): number;
  estimate(d: Deployment, route: Route, promptTokens: number, completionTokens: number): number;
  /**
   * The most completion tokens one answer of the deployment's model can hold: `model_info.max_output_tokens`
   * (or `max_tokens`), else the table's context window, else DEFAULT_OUTPUT_CAP. A reservation never
   * counts more, whatever `max_tokens` a request sends.
   */
  outputCap(d: Deployment): number;
  unpriced(): Deployment[];
}

/** The output bound of a model neither the config nor the table describes: the largest today's models answer with. */
export const DEFAULT_OUTPUT_CAP = 131_072;

const num = (value: unknown): number | undefined => {
  const n = typeof value === "string" ? Number(value) : value;
  return typeof n === "number" && Number.isFinite(n) && n >= 0 ? n : undefined;
};

/** Config overrides (litellm_params, then model_info) first, then the bundled price table. */
function resolve(d: Deployment): Price | null {
  const field = (name: string) => num(d.params[name]) ?? num(d.modelInfo[name]);
  const input = field("input_cost_per_token");
  const output = field("output_cost_per_token");
  const cached = field("cache_read_input_token_cost");
  const written = field("cache_creation_input_token_cost");
  if (input !== undefined || output !== undefined) {
    const table = input === undefined || output === undefined ? lookup(d) : null;
    const missing = table ? undefined : input === undefined ? "input_cost_per_token" : output === undefined ? "output_cost_per_token" : undefined;
    return {
      input: input ?? table?.input ?? 0, output: output ?? table?.output ?? 0, cachedInput: cached ?? table?.cachedInput,
      cacheWriteInput: written ?? table?.cacheWriteInput, contextWindow: table?.contextWindow, source: "config", ...(missing ? { missing } : {}),
    };
  }
  if (d.provider === "mock") return null;
  const table = lookup(d);
  return table ? { ...table, cachedInput: cached ?? table.cachedInput, cacheWriteInput: written ?? table.cacheWriteInput, source: "table" } : null;
}

function lookup(d: Deployment) {
  const base = typeof d.modelInfo.base_model === "string" ? d.modelInfo.base_model : null;
  return (base ? baseModelPrice(d.provider, base) : null) ?? tablePrice(d.provider, d.upstreamModel);
}

/**
 * base_model is written as LiteLLM's cost map names models, often with the provider in front
 * (`azure/gpt-4o`, its documented form for Azure): the table knows the model without it.
 */
function baseModelPrice(provider: string, base: string) {
  const slash = base.indexOf("/");
  if (slash <= 0) return tablePrice(provider, base);
  const prefix = base.slice(0, slash);
  const model = base.slice(slash + 1);
  return tablePrice(provider, base) ?? tablePrice(prefix, model) ?? tablePrice(provider, model);
}

function costWith(price: Price | null, route: Route, prompt: number, completion: number, cachedTokens = 0, writtenTokens = 0): number {
  if (!price) return 0;
  const cached = price.cachedInput !== undefined ? Math.min(cachedTokens, prompt) : 0;
  const written = price.cacheWriteInput !== undefined ? Math.min(writtenTokens, prompt - cached) : 0;
  const input = (prompt - cached - written) * price.input + cached * (price.cachedInput ?? price.input) + written * (price.cacheWriteInput ?? price.input);
  return route === "embeddings" ? input : input + completion * price.output;
}

const WILDCARD_PRICES = 10_000;

/**
 * Prices are resolved once per deployment; cost() and estimate() are map lookups and arithmetic.
 * `onUnpricedName` hears of each name a wildcard entry serves that has no price.
 */
export function createPricing(deployments: readonly Deployment[], onUnpricedName?: (d: Deployment) => void): Pricing {
  const prices = new Map<string, Price | null>();
  for (const d of deployments) prices.set(d.id, resolve(d));
  /** A wildcard entry's models are priced as they are first asked for (at most WILDCARD_PRICES kept). */
  const priceOf = (d: Deployment): Price | null => {
    if (d.wildcardMatch === undefined) return prices.get(d.id) ?? null;
    const key = `${d.id}\u0000${d.wildcardMatch}`;
    let price = prices.get(key);
    if (price === undefined) {
      price = resolve(d);
      if (prices.size < WILDCARD_PRICES) {
        prices.set(key, price);
        // Said once per name (while names are kept): a name a wildcard serves that nothing prices costs 0.
        if (!price && d.provider !== "mock") onUnpricedName?.(d);
      }
    }
    return price;
  };
  const caps = new Map<string, number>();
  const outputCap = (d: Deployment): number => {
    let cap = caps.get(d.id);
    if (cap === undefined) {
      const stated = num(d.modelInfo.max_output_tokens) ?? num(d.modelInfo.max_tokens);
      cap = stated !== undefined && stated >= 1 ? Math.floor(stated) : (priceOf(d)?.contextWindow ?? DEFAULT_OUTPUT_CAP);
      // A wildcard entry's models differ: each is looked up as it is asked for, and not kept.
      if (d.wildcardMatch === undefined) caps.set(d.id, cap);
    }
    return cap;
  };
  return {
    priceOf,
    outputCap,
    cost: (d, route, usage) => costWith(priceOf(d), route, usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens, usage.cache_write_tokens),
    estimate: (d, route, prompt, completion) => costWith(priceOf(d), route, prompt, completion),
    // A wildcard entry (`openai/*`) is never priced itself: each model it serves is, as it is asked for.
    unpriced: () => deployments.filter((d) => !d.modelName.includes("*") && !prices.get(d.id)),
  };
}
