import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { inProcessGateway } from "../helpers/gateway";
import { type Upstream, startUpstream } from "../helpers/upstream";

// What may serve a request when a group's deployments differ: with reject_unpriced_models no request is
// answered by a deployment without a price (first choice, retry or fallback), and deployments' rpm caps
// share the traffic and count the requests sent to them, in flight included.

type Harness = Awaited<ReturnType<typeof inProcessGateway>>;
let priced: Upstream;
let failing: Upstream;
let unpriced: Upstream;
let slow: Upstream;
let h: Harness;

const PRICE = "input_cost_per_token: 0.000001, output_cost_per_token: 0.000002";

beforeAll(async () => {
  priced = await startUpstream();
  failing = await startUpstream({ status: 500, errorMessage: "deployment broken" });
  unpriced = await startUpstream();
  slow = await startUpstream({ firstByteDelayMs: 300 });
  h = await inProcessGateway(`
model_list:
  - model_name: mixed
    litellm_params: {model: openai/priced-model, api_base: "${priced.url}", ${PRICE}}
  - model_name: mixed
    litellm_params: {model: openai/not-in-any-price-table, api_base: "${unpriced.url}"}
  - model_name: mixed-failing
    litellm_params: {model: openai/priced-model, api_base: "${failing.url}", ${PRICE}}
  - model_name: mixed-failing
    litellm_params: {model: openai/not-in-any-price-table, api_base: "${unpriced.url}"}
  - model_name: falls-back
    litellm_params: {model: openai/priced-model, api_base: "${failing.url}", ${PRICE}}
  - model_name: free
    litellm_params: {model: openai/not-in-any-price-table, api_base: "${unpriced.url}"}
  - model_name: capped
    litellm_params: {model: openai/small, api_base: "${slow.url}", rpm: 2, ${PRICE}}
    model_info: {id: capped-small}
  - model_name: capped
    litellm_params: {model: openai/large, api_base: "${slow.url}", rpm: 100, ${PRICE}}
    model_info: {id: capped-large}
general_settings:
  master_key: sk-1234
  reject_unpriced_models: true
litellm_settings:
  fallbacks: [{"falls-back": ["free"]}]
`);
}, 120_000);
afterAll(async () => {
  await h.close();
  for (const upstream of [priced, failing, unpriced, slow]) upstream.stop();
});

const reset = () => {
  for (const upstream of [priced, failing, unpriced, slow]) upstream.reset();
};

describe("reject_unpriced_models", () => {
  test("a group with a priced and an unpriced deployment always answers from the priced one", async () => {
    reset();
    const answers = await Promise.all(Array.from({ length: 20 }, () => h.chat("sk-1234", {}, "mixed")));
    expect(answers.map((r) => r.status)).toEqual(Array(20).fill(200));
    expect(priced.requests.length).toBe(20);
    expect(unpriced.requests.length).toBe(0);
  });

  test("neither a retry nor a fallback lands on a deployment without a price: the provider's error comes back", async () => {
    reset();
    const retried = await h.chat("sk-1234", {}, "mixed-failing");
    expect(retried.status).toBe(500);
    const fellBack = await h.chat("sk-1234", {}, "falls-back");
    expect(fellBack.status).toBe(500);
    expect(failing.requests.length).toBe(2);
    expect(unpriced.requests.length).toBe(0);
    await h.flush();
    const free = await h.db.query("select 1 from spend_logs where status = 'success' and model = 'free'");
    expect(free).toEqual([]);
  });

  test("a group with no priced deployment is refused before any provider call, naming the setting", async () => {
    reset();
    const refused = await h.chat("sk-1234", {}, "free");
    expect(refused.status).toBe(400);
    expect(((await refused.json()) as any).error.message).toBe("Model free has no price and general_settings.reject_unpriced_models is true");
    expect(unpriced.requests.length).toBe(0);
  });
});

describe("deployment rpm caps", () => {
  test("requests in flight count against a deployment's cap, and the caps weigh the choice", async () => {
    reset();
    const router = h.gateway.runtime().router;
    const answers = await Promise.all(Array.from({ length: 16 }, () => h.chat("sk-1234", {}, "capped")));
    expect(answers.map((r) => r.status)).toEqual(Array(16).fill(200));
    const small = slow.requests.filter((r) => r.body.model === "small").length;
    // Picked at random by weight (2 against 100): at most its cap, sent while none had answered yet.
    expect(small).toBeLessThanOrEqual(2);
    expect(slow.requests.length).toBe(16);
    expect(router.deploymentsOf("capped").map((d) => d.id)).toEqual(["capped-small", "capped-large"]);
  });
});
