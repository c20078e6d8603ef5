import { expect, test } from "bun:test";
import { calcPrice } from "@pydantic/genai-prices";
import { createPricing } from "../../src/pricing";
import type { Deployment } from "../../src/providers/types";

const d = (id: string, provider: string, model: string, params: Record<string, unknown> = {}, info: Record<string, unknown> = {}): Deployment => ({
  id, modelName: id, provider, upstreamModel: model, params, modelInfo: info,
});

test("config prices beat the table; model_info prices count; the table prices known models", () => {
  const deployments = [
    d("cfg", "openai", "gpt-4o", { input_cost_per_token: 0.5, output_cost_per_token: 1 }),
    d("info", "openai", "gpt-4o", {}, { input_cost_per_token: 0.25, output_cost_per_token: 0.75 }),
    d("table", "openai", "gpt-4o-mini"),
    d("embed", "openai", "text-embedding-3-small"),
    d("none", "mock", "x"),
    d("tiny", "openai", "x", { input_cost_per_token: 1e-12, output_cost_per_token: 1e-12 }),
  ];
  const pricing = createPricing(deployments);
  const usage = { prompt_tokens: 1000, completion_tokens: 500, total_tokens: 1500 };
  expect(pricing.cost(deployments[0]!, "chat", usage)).toBe(1000 * 0.5 + 500 * 1);
  expect(pricing.cost(deployments[1]!, "chat", usage)).toBe(1000 * 0.25 + 500 * 0.75);
  const table = calcPrice({ input_tokens: 1000, output_tokens: 500 } as never, "gpt-4o-mini", { providerId: "openai" })!;
  expect(pricing.cost(deployments[2]!, "chat", usage)).toBeCloseTo(table.total_price, 15);
  expect(pricing.cost(deployments[3]!, "embeddings", usage)).toBeCloseTo(1000 * (calcPrice({ input_tokens: 1e6 } as never, "text-embedding-3-small", { providerId: "openai" })!.input_price / 1e6), 15);
  expect(pricing.cost(deployments[4]!, "chat", usage)).toBe(0);
  expect(pricing.unpriced().map((x) => x.id)).toEqual(["none"]);
  expect(pricing.cost(deployments[5]!, "chat", { prompt_tokens: 1, completion_tokens: 0, total_tokens: 1 })).toBe(1e-12);
});

test("cached prompt tokens are priced at the cached rate", () => {
  const dep = d("c", "openai", "m", { input_cost_per_token: 1, output_cost_per_token: 2, cache_read_input_token_cost: 0.1 });
  const pricing = createPricing([dep]);
  expect(pricing.cost(dep, "chat", { prompt_tokens: 100, completion_tokens: 10, total_tokens: 110, cached_tokens: 40 })).toBeCloseTo(60 + 4 + 20, 12);
});

test("prompt tokens written to Anthropic's cache are priced at the write rate, from config or the table", async () => {
  const { openAiUsage } = await import("../../src/providers/anthropic/response");
  const { usageOf } = await import("../../src/providers/http");
  // As the audit's provider answered: 20 plain, 100 read from the cache, 50 written to it, 10 out.
  const usage = usageOf(openAiUsage({ input_tokens: 20, output_tokens: 10, cache_read_input_tokens: 100, cache_creation_input_tokens: 50 }))!;
  expect(usage).toMatchObject({ prompt_tokens: 170, cached_tokens: 100, cache_write_tokens: 50 });
  const table = d("sonnet", "anthropic", "claude-3-5-sonnet-20241022");
  const configured = d("cfg", "anthropic", "x", { input_cost_per_token: 1, output_cost_per_token: 2, cache_read_input_token_cost: 0.1, cache_creation_input_token_cost: 1.25 });
  const pricing = createPricing([table, configured]);
  expect(pricing.cost(table, "chat", usage)).toBeCloseTo(20 * 3e-6 + 100 * 0.3e-6 + 50 * 3.75e-6 + 10 * 15e-6, 15);
  expect(pricing.cost(configured, "chat", usage)).toBeCloseTo(20 + 100 * 0.1 + 50 * 1.25 + 10 * 2, 12);
});

test("a config price given for one side only takes the other from the table, or says it is missing (that side then costs 0)", () => {
  const known = d("known", "openai", "gpt-4o-mini", { input_cost_per_token: 0.5 });
  const unknown = d("unknown", "openai", "my-finetune-x", { input_cost_per_token: 0.5 });
  const both = d("both", "openai", "my-finetune-x", { input_cost_per_token: 0.5, output_cost_per_token: 1 });
  const pricing = createPricing([known, unknown, both]);
  expect(pricing.priceOf(known)!.missing).toBeUndefined();
  expect(pricing.priceOf(known)!.output).toBeGreaterThan(0);
  expect(pricing.priceOf(unknown)).toMatchObject({ output: 0, missing: "output_cost_per_token" });
  expect(pricing.priceOf(both)!.missing).toBeUndefined();
});

test("base_model is priced with or without a provider in front (azure/gpt-4o, as LiteLLM documents it for Azure)", () => {
  const prefixed = d("prefixed", "azure", "my-deployment", {}, { base_model: "azure/gpt-4o" });
  const bare = d("bare", "azure", "my-deployment", {}, { base_model: "gpt-4o" });
  const other = d("other", "openai", "my-finetune", {}, { base_model: "openai/gpt-4o-mini" });
  const pricing = createPricing([prefixed, bare, other]);
  const gpt4o = calcPrice({ input_tokens: 1e6, output_tokens: 1e6 } as never, "gpt-4o", { providerId: "azure" })!;
  expect(pricing.priceOf(prefixed)).toMatchObject({ input: gpt4o.input_price / 1e6, output: gpt4o.output_price / 1e6, source: "table" });
  expect(pricing.priceOf(prefixed)).toEqual(pricing.priceOf(bare));
  expect(pricing.priceOf(other)!.input).toBeGreaterThan(0);
  expect(pricing.unpriced()).toEqual([]);
});

test("a wildcard entry is not unpriced: each model it serves is priced as it is asked for", () => {
  const wild = d("openai/*", "openai", "*");
  const pricing = createPricing([wild, d("none", "openai", "my-finetune-x")]);
  expect(pricing.unpriced().map((x) => x.id)).toEqual(["none"]);
  expect(pricing.priceOf({ ...wild, upstreamModel: "gpt-4o", wildcardMatch: "openai/gpt-4o" })!.input).toBeGreaterThan(0);
});

test("a name a wildcard entry serves with no price is reported once", () => {
  const heard: string[] = [];
  const wild = d("*", "openai", "*");
  const pricing = createPricing([wild], (x) => heard.push(x.wildcardMatch!));
  for (let i = 0; i < 3; i++) pricing.priceOf({ ...wild, upstreamModel: "my-own-model", wildcardMatch: "my-own-model" });
  pricing.priceOf({ ...wild, upstreamModel: "gpt-4o", wildcardMatch: "gpt-4o" });
  expect(heard).toEqual(["my-own-model"]);
});

test("an answer's output cap: model_info first, then the table's context window, then the default", () => {
  const deployments = [
    d("stated", "openai", "gpt-4o", {}, { max_output_tokens: 16384 }),
    d("legacy", "openai", "gpt-4o", {}, { max_tokens: "4096" }),
    d("table", "anthropic", "claude-3-5-sonnet-20241022"),
    d("priced", "openai", "gpt-4o-mini", { input_cost_per_token: 1e-6 }),
    d("unknown", "openai", "my-own-model", { input_cost_per_token: 1e-6, output_cost_per_token: 2e-6 }),
    d("nonsense", "mock", "x", {}, { max_output_tokens: 0 }),
  ];
  const pricing = createPricing(deployments);
  expect(deployments.map((x) => pricing.outputCap(x))).toEqual([16384, 4096, 200_000, 128_000, 131_072, 131_072]);
});
