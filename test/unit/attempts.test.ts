import { expect, test } from "bun:test";
import { deploymentsOf, parseConfig } from "../../src/config";
import { createPricing } from "../../src/pricing";
import type { UpstreamCall } from "../../src/providers/types";
import { callWithRetries } from "../../src/proxy/attempts";
import { createRuntime } from "../../src/proxy/runtime";
import type { Release } from "../../src/proxy/slots";

// Requests admitted together are each given a deployment before any of them takes its slot: one whose
// deployment has no free slot by then goes to another of the model's deployments that has one, rather
// than waiting. (The provider is a stand-in that answers at once.)

/** Model `pair`: two deployments of one slot each, and a stand-in provider recording which one each call went to. */
function pair() {
  const { config } = parseConfig(`
model_list:
  - {model_name: pair, litellm_params: {model: mock/a, max_parallel_requests: 1}}
  - {model_name: pair, litellm_params: {model: mock/b, max_parallel_requests: 1}}
`, {});
  const deployments = deploymentsOf(config);
  const sent: string[] = [];
  const provider = { send: async (call: UpstreamCall) => (sent.push(call.deployment.id), { kind: "json" as const, status: 200, body: "{}", usage: null }) };
  const runtime = createRuntime(config, deployments, createPricing(deployments), () => provider, { spend: 0, budgetResetAt: null, createdAt: null });
  const [first, other] = deployments as [(typeof deployments)[0], (typeof deployments)[0]];
  return { runtime, sent, first, other };
}

test("a request whose chosen deployment is full by its turn goes to the model's other deployment with a free slot", async () => {
  const { runtime, sent, first, other } = pair();
  // Another request holds the first deployment's only slot.
  const held = runtime.router.take(first, new AbortController().signal) as Release;
  const attempted = await callWithRetries(runtime, {
    route: "chat", model: "pair", first, body: {}, rawBody: "{}", stream: false, signal: AbortSignal.timeout(500),
    mayUse: () => true, moveTo: async () => true,
  });
  expect(attempted.result.kind).toBe("json");
  expect(attempted.deployment.id).toBe(other.id);
  expect(sent).toEqual([other.id]);
  held();
});

test("a request waiting for its chosen deployment's slot is served by the model's other one when that frees first", async () => {
  const { runtime, sent, first, other } = pair();
  const never = new AbortController().signal;
  const held = [runtime.router.take(first, never) as Release, runtime.router.take(other, never) as Release];
  const attempted = callWithRetries(runtime, {
    route: "chat", model: "pair", first, body: {}, rawBody: "{}", stream: false, signal: AbortSignal.timeout(500),
    mayUse: () => true, moveTo: async () => true,
  });
  await Bun.sleep(20);
  held[1]!();
  expect((await attempted).deployment.id).toBe(other.id);
  expect(sent).toEqual([other.id]);
  held[0]!();
  expect(runtime.router.hasSlot(first) && runtime.router.hasSlot(other)).toBe(true);
});
