import { beforeAll, describe, expect, test } from "bun:test";
import OpenAI from "openai";
import { type RunningGateway, startBinary, startOnPostgres, upstreamAndRedis } from "../helpers/binary";
import { windowLeft } from "../helpers/until";

// A regenerated key keeps its running rate windows (rpm, tpm, per model) and its parallel slots: what
// the old secret made in the running minute counts against the new one, on every instance. Started
// afresh, a key at its rpm_limit could be regenerated and make rpm_limit more requests that minute.

// The upstream answers 10 prompt + 20 completion tokens: 30 tokens a request.
const shared = upstreamAndRedis();

const models = () => `
model_list:
  - model_name: test-model
    litellm_params:
      model: openai/test-model
      api_base: ${shared.upstream.url}
      api_key: sk-provider
`;

/** Requests of a test must fall in one rate window (60 s). */
async function sameMinute(): Promise<void> {
  await windowLeft(20_000);
}

/** Until the next rate window starts. */
const nextMinute = () => Bun.sleep(60_000 - (Date.now() % 60_000) + 50);

async function admin(gateway: RunningGateway, path: string, body: unknown): Promise<Record<string, any>> {
  const answer = await fetch(`${gateway.url}${path}`, {
    method: "POST", headers: { authorization: "Bearer sk-1234", "content-type": "application/json" }, body: JSON.stringify(body),
  });
  expect(answer.status).toBe(200);
  return (await answer.json()) as Record<string, any>;
}

const client = (gateway: RunningGateway, key: string) => new OpenAI({ apiKey: key, baseURL: `${gateway.url}/v1`, maxRetries: 0 });

/** The statuses of `n` requests one after the other. */
async function statuses(gateway: RunningGateway, key: string, n: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    out.push(await client(gateway, key).chat.completions.create({ model: "test-model", messages: [{ role: "user", content: "hi" }] })
      .then(() => 200, (error: { status: number }) => error.status));
  }
  return out;
}

const regenerate = async (gateway: RunningGateway, key: string, body: Record<string, unknown> = {}) =>
  (await admin(gateway, "/key/regenerate", { key, ...body })).key as string;

/** A stream admitted and under way (its first chunk read), answering slowly; `rest` reads it to its end. */
async function openStream(gateway: RunningGateway, key: string) {
  const stream = await client(gateway, key).chat.completions.create({ model: "test-model", messages: [{ role: "user", content: "hi" }], stream: true });
  const chunks = stream[Symbol.asyncIterator]();
  await chunks.next();
  return { rest: async () => { while (!(await chunks.next()).done); } };
}

/** Two instances sharing nothing (the embedded database) or Postgres and Redis: [where the key runs, where the admin calls go]. */
function suite(name: string, start: () => Promise<[RunningGateway, RunningGateway]>) {
  describe(name, () => {
    let on: RunningGateway;
    let adminOn: RunningGateway;
    beforeAll(async () => {
      [on, adminOn] = await start();
    }, 120_000);

    test("rpm and tpm: a key at its limits, regenerated, stays there until the window turns", async () => {
      await sameMinute();
      const { key: rpmKey } = await admin(adminOn, "/key/generate", { rpm_limit: 3 });
      const { key: tpmKey } = await admin(adminOn, "/key/generate", { tpm_limit: 60 });
      const { key: modelKey } = await admin(adminOn, "/key/generate", { model_rpm_limit: { "test-model": 2 } });
      expect(await statuses(on, rpmKey, 3)).toEqual([200, 200, 200]);
      expect(await statuses(on, tpmKey, 2)).toEqual([200, 200]);
      expect(await statuses(on, modelKey, 2)).toEqual([200, 200]);
      const renewed = await Promise.all([regenerate(adminOn, rpmKey), regenerate(adminOn, tpmKey), regenerate(adminOn, modelKey)]);
      // The regeneration reached every instance (pub/sub takes a few ms).
      await Bun.sleep(100);
      for (const key of renewed) expect(await statuses(on, key, 1)).toEqual([429]);
      for (const key of renewed) expect(await statuses(adminOn, key, 1)).toEqual([429]);
      await nextMinute();
      expect(await statuses(on, renewed[0]!, 3)).toEqual([200, 200, 200]);
      expect(await statuses(on, renewed[1]!, 2)).toEqual([200, 200]);
      expect(await statuses(on, renewed[2]!, 2)).toEqual([200, 200]);
    }, 120_000);

    test("grace_period: the old secret's requests count in the same windows as the new secret's", async () => {
      await sameMinute();
      const { key } = await admin(adminOn, "/key/generate", { rpm_limit: 3 });
      expect(await statuses(on, key, 1)).toEqual([200]);
      const renewed = await regenerate(adminOn, key, { grace_period: "1h" });
      await Bun.sleep(100);
      expect(await statuses(on, key, 1)).toEqual([200]);
      expect(await statuses(on, renewed, 1)).toEqual([200]);
      expect(await statuses(on, key, 1)).toEqual([429]);
      expect(await statuses(on, renewed, 1)).toEqual([429]);
    });

    test("a stream in flight across the regeneration holds the one parallel slot, then frees it once", async () => {
      await sameMinute();
      const { key } = await admin(adminOn, "/key/generate", { max_parallel_requests: 1 });
      shared.upstream.set({ chunks: 6, chunkDelayMs: 250 });
      try {
        const stream = await openStream(on, key);
        const renewed = await regenerate(adminOn, key);
        await Bun.sleep(100);
        expect(await statuses(on, renewed, 1)).toEqual([429]);
        expect(await statuses(adminOn, renewed, 1)).toEqual([429]);
        await stream.rest();
        await Bun.sleep(100);
        // Its one slot is free again, once: the new secret's stream takes it, and a second request has none.
        const next = await openStream(on, renewed);
        expect(await statuses(on, renewed, 1)).toEqual([429]);
        await next.rest();
        expect(await statuses(on, renewed, 1)).toEqual([200]);
      } finally {
        shared.upstream.set({ chunks: 5, chunkDelayMs: 0 });
      }
    });

    test("a stream in flight across the regeneration: its tokens count in the new secret's tpm window", async () => {
      await sameMinute();
      const { key } = await admin(adminOn, "/key/generate", { tpm_limit: 30 });
      shared.upstream.set({ chunks: 6, chunkDelayMs: 250 });
      try {
        const stream = await openStream(on, key);
        const renewed = await regenerate(adminOn, key);
        await stream.rest();
        await Bun.sleep(100);
        expect(await statuses(on, renewed, 1)).toEqual([429]);
        expect(await statuses(adminOn, renewed, 1)).toEqual([429]);
      } finally {
        shared.upstream.set({ chunks: 5, chunkDelayMs: 0 });
      }
    });
  });
}

suite("the embedded database", async () => {
  const gateway = await startBinary({ config: `${models()}general_settings:\n  master_key: sk-1234\n` });
  shared.gateways.push(gateway);
  return [gateway, gateway];
});

suite("two instances on Postgres and Redis", async () => {
  const redisSettings = `router_settings:\n  redis_url: ${shared.redis.url}\n`;
  const { gateway: first, dbUrl } = await startOnPostgres(models() + redisSettings);
  shared.gateways.push(first);
  const second = await startBinary({ config: `${models()}${redisSettings}general_settings:\n  master_key: sk-1234\n  database_url: ${dbUrl}\n` });
  shared.gateways.push(second);
  return [first, second];
});
