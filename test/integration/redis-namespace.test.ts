import { expect, test } from "bun:test";
import Redis from "ioredis";
import OpenAI from "openai";
import { type RunningGateway, startOnPostgres, upstreamAndRedis } from "../helpers/binary";
import { windowLeft } from "../helpers/until";

const shared = upstreamAndRedis();

/** A deployment of its own (its own Postgres database) on the shared Redis, under `namespace` if given. */
async function deployment(namespace?: string): Promise<RunningGateway> {
  const config = `
model_list:
  - model_name: test-model
    litellm_params:
      model: openai/test-model
      api_base: ${shared.upstream.url}
      api_key: sk-provider
router_settings:
  redis_url: ${shared.redis.url}
${namespace ? `  redis_namespace: ${namespace}\n` : ""}`;
  const { gateway } = await startOnPostgres(config);
  shared.gateways.push(gateway);
  return gateway;
}

/** The same custom key, with the same rpm limit, made in a deployment. */
async function sharedKey(gateway: RunningGateway, key: string): Promise<OpenAI> {
  const made = await fetch(`${gateway.url}/key/generate`, {
    method: "POST", headers: { authorization: "Bearer sk-1234", "content-type": "application/json" },
    body: JSON.stringify({ key, rpm_limit: 3 }),
  });
  expect(made.status).toBe(200);
  return new OpenAI({ apiKey: key, baseURL: `${gateway.url}/v1`, maxRetries: 0 });
}

const statuses = (client: OpenAI, n: number) => Promise.all(Array.from({ length: n }, () =>
  client.chat.completions.create({ model: "test-model", messages: [{ role: "user", content: "hi" }] }).then(() => 200, (error: { status: number }) => error.status)));

test("router_settings.redis_namespace: two deployments on one Redis database count apart, every key under their namespace", async () => {
  // Three requests on each side must fall in one rate window.
  await windowLeft(10_000);
  const staging = await sharedKey(await deployment("staging"), "sk-same-in-both-1");
  const production = await sharedKey(await deployment("production"), "sk-same-in-both-1");
  expect(await statuses(staging, 3)).toEqual([200, 200, 200]);
  expect(await statuses(production, 3)).toEqual([200, 200, 200]);
  expect(await statuses(staging, 1)).toEqual([429]);

  const admin = new Redis(shared.redis.url);
  try {
    const keys = await admin.keys("*");
    expect(keys.some((key) => key.startsWith("staging:lg:c:"))).toBe(true);
    expect(keys.some((key) => key.startsWith("production:lg:c:"))).toBe(true);
    expect(keys.filter((key) => !key.startsWith("staging:lg:") && !key.startsWith("production:lg:"))).toEqual([]);
    // Each deployment's instance is alive under its own namespace (the sync script reads it there to keep its leases).
    expect(keys.filter((key) => /^(staging|production):lg:alive:/.test(key)).length).toBe(2);
  } finally {
    admin.disconnect();
  }
});

test("without a namespace the two deployments share the key's counter: what the namespace prevents", async () => {
  await windowLeft(10_000);
  const first = await sharedKey(await deployment(), "sk-same-in-both-2");
  const second = await sharedKey(await deployment(), "sk-same-in-both-2");
  expect(await statuses(first, 3)).toEqual([200, 200, 200]);
  expect(await statuses(second, 1)).toEqual([429]);
});
