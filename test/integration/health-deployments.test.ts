import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import OpenAI from "openai";
import { type RunningGateway, startBinary } from "../helpers/binary";
import { tempDir } from "../helpers/services";
import { until } from "../helpers/until";
import { type Upstream, startUpstream } from "../helpers/upstream";

/**
 * GET /health and the deployments it checks: its calls go through their own accounting, as traffic
 * does (they wait for one of a deployment's `max_parallel_requests` slots, and count towards its `rpm`
 * and `tpm`); `?model_id=` checks one, and `model_info.health_check_timeout` bounds a check, as in
 * LiteLLM. On the compiled binary with the `openai` client.
 */
let up: Upstream;
let gw: RunningGateway;

beforeAll(async () => {
  up = await startUpstream();
  gw = await startBinary({
    config: `
model_list:
  - model_name: single
    litellm_params: {model: openai/single, api_base: "${up.url}", api_key: sk-up, max_parallel_requests: 1}
  - model_name: pair
    litellm_params: {model: openai/first, api_base: "${up.url}", api_key: sk-up, rpm: 1, weight: 1000000}
  - model_name: pair
    litellm_params: {model: openai/second, api_base: "${up.url}", api_key: sk-up, weight: 1}
    model_info: {id: pair-second}
  - model_name: slow
    litellm_params: {model: openai/slow, api_base: "${up.url}", api_key: sk-up}
    model_info: {health_check_timeout: 0.5}
  - model_name: tokens
    litellm_params: {model: openai/third, api_base: "${up.url}", api_key: sk-up, tpm: 20, weight: 1000000}
  - model_name: tokens
    litellm_params: {model: openai/fourth, api_base: "${up.url}", api_key: sk-up, weight: 1}
general_settings:
  master_key: sk-1234
  data_dir: ${tempDir("health-accounting")}
`,
  });
}, 120_000);
afterAll(async () => {
  await gw?.stop();
  up?.stop();
});

const client = () => new OpenAI({ apiKey: "sk-1234", baseURL: `${gw.url}/v1`, maxRetries: 0 });
const healthOf = (query: string) => fetch(`${gw.url}/health?${query}`, { headers: { authorization: "Bearer sk-1234" } });
const health = async (model: string) => (await (await healthOf(`model=${model}`)).json()) as any;
/** The upstream model each request reached, in order. */
const reached = () => up.requests.map((r) => r.body.model);

describe("GET /health and the deployments it checks", () => {
  test("a check waits for a free max_parallel_requests slot: the deployment never has more calls at once than its cap", async () => {
    up.reset();
    up.set({ firstByteDelayMs: 700 });
    try {
      const busy = client().chat.completions.create({ model: "single", messages: [{ role: "user", content: "hi" }] });
      await until("the request holds the slot", async () => up.inFlight === 1);
      const checked = await health("single");
      expect(checked).toMatchObject({ healthy_count: 1, unhealthy_count: 0 });
      await busy;
      expect(reached()).toEqual(["single", "single"]);
      expect(up.maxInFlight).toBe(1);
    } finally {
      up.reset();
    }
  });

  test("a check counts towards the deployment's rpm and tpm: traffic after it goes where room is left", async () => {
    up.reset();
    // Each call uses 30 tokens (the upstream's usage): one check fills `third`'s tpm of 20.
    for (const [model, other] of [["pair", "second"], ["tokens", "fourth"]] as const) {
      expect(await health(model)).toMatchObject({ healthy_count: 2, unhealthy_count: 0 });
      up.requests.length = 0;
      await client().chat.completions.create({ model, messages: [{ role: "user", content: "hi" }] });
      expect(`${model}: ${reached()}`).toBe(`${model}: ${other}`);
    }
  });

  test("?model_id= checks that one deployment (model_id wins over model, as in LiteLLM); an unknown id is a 404", async () => {
    up.reset();
    for (const query of ["model_id=pair-second", "model=slow&model_id=pair-second"]) {
      const response = await healthOf(query);
      expect(response.status).toBe(200);
      const body = (await response.json()) as any;
      expect(body).toMatchObject({ healthy_count: 1, unhealthy_count: 0 });
      expect(body.healthy_endpoints[0]).toMatchObject({ model: "openai/second", model_name: "pair", model_id: "pair-second" });
    }
    expect(reached()).toEqual(["second", "second"]);
    const unknown = await healthOf("model_id=nope");
    expect(unknown.status).toBe(404);
    expect(((await unknown.json()) as any).error.message).toContain("nope");
  });

  test("model_info.health_check_timeout bounds the deployment's check", async () => {
    up.reset();
    up.set({ firstByteDelayMs: 5000 });
    try {
      const started = performance.now();
      const body = await health("slow");
      expect(performance.now() - started).toBeLessThan(3000);
      expect(body).toMatchObject({ healthy_count: 0, unhealthy_count: 1 });
      expect(body.unhealthy_endpoints[0].error).toContain("504");
    } finally {
      up.reset();
    }
  });
});
