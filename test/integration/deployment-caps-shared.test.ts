import { afterAll, beforeAll, expect, test } from "bun:test";
import Redis from "ioredis";
import OpenAI from "openai";
import { SharedDeploymentUsage } from "../../src/redis/deployment-usage";
import { redisKeysFor } from "../../src/redis/keys";
import { type RunningGateway, startBinary } from "../helpers/binary";
import { type RedisServer, sharedPostgres, startRedis } from "../helpers/services";
import { until, windowLeft } from "../helpers/until";
import { type Upstream, startUpstream } from "../helpers/upstream";

// A deployment's rpm cap counts the requests every instance sent to it, not each instance's own: two
// instances on one Redis pass a deployment at its cap over for the other, as LiteLLM's router does.

let capped: Upstream;
let spare: Upstream;
let tokenCapped: Upstream;
let failing: Upstream;
let redis: RedisServer;
let config: string;
const gateways: RunningGateway[] = [];

const CAP = 4;

beforeAll(async () => {
  capped = await startUpstream();
  spare = await startUpstream();
  tokenCapped = await startUpstream();
  failing = await startUpstream({ status: 500 });
  redis = await startRedis();
  const dbUrl = await (await sharedPostgres()).newDatabase();
  config = `
model_list:
  - model_name: shared
    litellm_params: {model: openai/a, api_base: "${capped.url}", rpm: ${CAP}, weight: 1, input_cost_per_token: 0.000001, output_cost_per_token: 0.000002}
    model_info: {id: capped-deployment}
  - model_name: shared
    litellm_params: {model: openai/b, api_base: "${spare.url}", weight: 1, input_cost_per_token: 0.000001, output_cost_per_token: 0.000002}
    model_info: {id: spare-deployment}
  - model_name: tokens
    litellm_params: {model: openai/a, api_base: "${tokenCapped.url}", tpm: 90, weight: 1, input_cost_per_token: 0.000001, output_cost_per_token: 0.000002}
  - model_name: tokens
    litellm_params: {model: openai/b, api_base: "${spare.url}", weight: 1, input_cost_per_token: 0.000001, output_cost_per_token: 0.000002}
  - model_name: cooling
    litellm_params: {model: openai/a, api_base: "${failing.url}", weight: 1, input_cost_per_token: 0.000001, output_cost_per_token: 0.000002}
    model_info: {id: failing-deployment}
  - model_name: cooling
    litellm_params: {model: openai/b, api_base: "${spare.url}", weight: 1, input_cost_per_token: 0.000001, output_cost_per_token: 0.000002}
    model_info: {id: cooling-spare}
router_settings:
  allowed_fails: 1
  cooldown_time: 30
  num_retries: 1
general_settings:
  master_key: sk-1234
  database_url: ${dbUrl}
  redis_url: ${redis.url}
`;
  // One after the other: the second finds the database migrated.
  gateways.push(await startBinary({ config }));
  gateways.push(await startBinary({ config }));
}, 120_000);
afterAll(async () => {
  for (const gateway of gateways) await gateway.stop("SIGKILL");
  capped.stop();
  spare.stop();
  tokenCapped.stop();
  failing.stop();
  await redis.stop();
});

/** `n` requests to `model`, alternating instances, spaced so that each instance hears the other's counts. */
async function alternate(model: string, n: number): Promise<void> {
  // Every request of a test in one minute.
  await windowLeft(15_000);
  const clients = gateways.map((gateway) => new OpenAI({ apiKey: "sk-1234", baseURL: `${gateway.url}/v1`, maxRetries: 0 }));
  for (let i = 0; i < n; i++) {
    await clients[i % 2]!.chat.completions.create({ model, messages: [{ role: "user", content: `hi ${i}` }] });
    // The other instance hears a count within two ticks (100 ms each): this one's push, then its own read.
    await Bun.sleep(250);
  }
}

test("a deployment's rpm cap holds across two instances sharing Redis: it serves no more than its cap in a minute", async () => {
  await alternate("shared", 32);
  // Even weights: about half of 32 would go to the capped deployment; each instance's own count of 4 would let 8 through.
  expect(capped.requests.length).toBe(CAP);
  expect(spare.requests.length).toBe(32 - CAP);
}, 60_000);

test("a deployment's tpm cap counts the tokens every instance's answers used", async () => {
  // Each answer uses 30 tokens: the cap of 90 is reached after three, whichever instance sent them.
  await alternate("tokens", 24);
  expect(tokenCapped.requests.length).toBe(3);
}, 60_000);

test("a deployment cooled down by one instance is cooled down for the others on the same Redis, and for one started later", async () => {
  const ask = (gateway: RunningGateway, i: number) =>
    new OpenAI({ apiKey: "sk-1234", baseURL: `${gateway.url}/v1`, maxRetries: 0 }).chat.completions.create({ model: "cooling", messages: [{ role: "user", content: `cool ${i}` }] });
  // Until the first instance has tried the failing deployment once (a retry answers at the spare): that cools it down.
  for (let i = 0; failing.requests.length === 0; i++) {
    expect(i).toBeLessThan(40);
    await ask(gateways[0]!, i);
  }
  await Bun.sleep(300);
  // Each instance on its own would pick the failing deployment first half the time, until its own first failure.
  for (let i = 0; i < 20; i++) await ask(gateways[1]!, i);
  const later = await startBinary({ config });
  gateways.push(later);
  for (let i = 0; i < 20; i++) await ask(later, i);
  expect(failing.requests.length).toBe(1);
}, 60_000);

/** A model whose first deployment answers 500 and whose second answers; failures cool the first down after `allowed_fails: 2`. */
const flakyConfig = async (flaky: Upstream, redisUrl: string) => `
model_list:
  - model_name: flaky
    litellm_params: {model: openai/a, api_base: "${flaky.url}", weight: 1, input_cost_per_token: 0.000001, output_cost_per_token: 0.000002}
    model_info: {id: flaky-deployment}
  - model_name: flaky
    litellm_params: {model: openai/b, api_base: "${spare.url}", weight: 1, input_cost_per_token: 0.000001, output_cost_per_token: 0.000002}
router_settings:
  allowed_fails: 2
  cooldown_time: 30
  num_retries: 1
  redis_namespace: flaky-test
general_settings:
  master_key: sk-1234
  database_url: ${await (await sharedPostgres()).newDatabase()}
  redis_url: ${redisUrl}
`;

const askFlaky = (gateway: RunningGateway, i: number) =>
  new OpenAI({ apiKey: "sk-1234", baseURL: `${gateway.url}/v1`, maxRetries: 0 }).chat.completions.create({ model: "flaky", messages: [{ role: "user", content: `flaky ${i}` }] });

/** Requests to `gateway` until the failing deployment has had `n` (a retry answers each at the spare). */
async function untilFailures(gateway: RunningGateway, flaky: Upstream, n: number): Promise<void> {
  for (let i = 0; flaky.requests.length < n; i++) {
    expect(i).toBeLessThan(40);
    await askFlaky(gateway, i);
  }
}

test("failures count towards a cooldown across instances: two instances' failures reach allowed_fails where neither's own would", async () => {
  const flaky = await startUpstream({ status: 500 });
  const pair: RunningGateway[] = [];
  try {
    const config = await flakyConfig(flaky, redis.url);
    pair.push(await startBinary({ config }));
    pair.push(await startBinary({ config }));
    // One failure on each instance: each has seen one of the two allowed.
    await untilFailures(pair[0]!, flaky, 1);
    await untilFailures(pair[1]!, flaky, 2);
    await Bun.sleep(300);
    // Counted per instance, each would still pick the failing deployment half the time, until its own second failure.
    for (let i = 0; i < 20; i++) await askFlaky(pair[i % 2]!, i);
    expect(flaky.requests.length).toBe(2);
  } finally {
    for (const gateway of pair) await gateway.stop("SIGKILL");
    flaky.stop();
  }
}, 60_000);

test("with Redis unreachable an instance's own failures still cool a deployment down", async () => {
  const flaky = await startUpstream({ status: 500 });
  const own = await startRedis();
  let gateway: RunningGateway | undefined;
  try {
    gateway = await startBinary({ config: await flakyConfig(flaky, own.url) });
    await own.stop();
    await untilFailures(gateway, flaky, 2);
    for (let i = 0; i < 20; i++) await askFlaky(gateway, i);
    expect(flaky.requests.length).toBe(2);
  } finally {
    await gateway?.stop("SIGKILL");
    flaky.stop();
    await own.stop();
  }
}, 60_000);

test("counts made while Redis is down reach it when it is back, and a Redis emptied counts the others from nothing", async () => {
  const own = new Redis(redis.url, { maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => 50 });
  const peer = new Redis(redis.url, { maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => 50 });
  own.on("error", () => {});
  peer.on("error", () => {});
  const keys = redisKeysFor("usage-test");
  const a = new SharedDeploymentUsage(own, keys);
  const b = new SharedDeploymentUsage(peer, keys);
  try {
    await windowLeft(10_000);
    b.others("d1");
    a.add("d1", 2, 40);
    await until("b hears a's counts", () => b.others("d1").requests === 2 && b.others("d1").tokens === 40, 2000);
    expect(a.others("d1")).toEqual({ requests: 0, tokens: 0 });

    await redis.stop();
    a.add("d1", 1, 0);
    await Bun.sleep(300);
    await redis.start();
    await until("a's count made while Redis was down reaches b", () => b.others("d1").requests === 1, 5000);
    // Redis came back empty (no persistence): what a sent before is gone, and b counts only what reached it since.
    expect(a.others("d1")).toEqual({ requests: 0, tokens: 0 });
  } finally {
    a.close();
    b.close();
    own.disconnect();
    peer.disconnect();
  }
}, 60_000);
