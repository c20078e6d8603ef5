import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import OpenAI from "openai";
import { type RunningGateway, startBinary } from "../helpers/binary";
import { type Upstream, startUpstream } from "../helpers/upstream";

// A model_list entry's `max_parallel_requests` (and router_settings.default_max_parallel_requests): the
// deployment never has more requests in flight from the gateway than that; more wait their turn, as
// LiteLLM's router queues them, and one still waiting when its deadline passes is answered 504 without
// reaching the provider.

let narrow: Upstream;
let left: Upstream;
let right: Upstream;
let defaulted: Upstream;
let gateway: RunningGateway;
let client: OpenAI;

const PRICE = "input_cost_per_token: 0.000001, output_cost_per_token: 0.000002";
const messages = [{ role: "user" as const, content: "Hello there" }];

beforeAll(async () => {
  narrow = await startUpstream();
  left = await startUpstream();
  right = await startUpstream();
  defaulted = await startUpstream();
  gateway = await startBinary({ config: `
model_list:
  - model_name: narrow
    litellm_params: {model: openai/m, api_base: "${narrow.url}", max_parallel_requests: 2, ${PRICE}}
  - model_name: pair
    litellm_params: {model: openai/a, api_base: "${left.url}", max_parallel_requests: 1, ${PRICE}}
  - model_name: pair
    litellm_params: {model: openai/b, api_base: "${right.url}", max_parallel_requests: 1, ${PRICE}}
  - model_name: tilted
    litellm_params: {model: openai/a, api_base: "${left.url}", max_parallel_requests: 1, weight: 100, ${PRICE}}
  - model_name: tilted
    litellm_params: {model: openai/b, api_base: "${right.url}", max_parallel_requests: 1, ${PRICE}}
  - model_name: defaulted
    litellm_params: {model: openai/d, api_base: "${defaulted.url}", ${PRICE}}
router_settings:
  default_max_parallel_requests: 1
general_settings:
  master_key: sk-1234
  request_timeout: 1
` });
  client = new OpenAI({ apiKey: "sk-1234", baseURL: `${gateway.url}/v1`, maxRetries: 0 });
}, 120_000);
afterAll(async () => {
  await gateway.stop("SIGKILL");
  for (const upstream of [narrow, left, right, defaulted]) upstream.stop();
});

const chat = (model: string, options: { signal?: AbortSignal } = {}) => client.chat.completions.create({ model, messages }, options);

async function streamed(model: string): Promise<string> {
  let text = "";
  for await (const chunk of await client.chat.completions.create({ model, messages, stream: true })) text += chunk.choices[0]?.delta?.content ?? "";
  return text;
}

const reload = async () => expect((await fetch(`${gateway.url}/config/reload`, { method: "POST", headers: { authorization: "Bearer sk-1234" } })).status).toBe(200);

/** Runs `during` with config.yaml changed by `change` and reloaded, then puts it back and reloads again. */
async function reloadedWith(change: (text: string) => string, during: () => Promise<void>) {
  const before = readFileSync(gateway.configPath, "utf8");
  const changed = change(before);
  expect(changed).not.toBe(before);
  writeFileSync(gateway.configPath, changed);
  try {
    await reload();
    await during();
  } finally {
    writeFileSync(gateway.configPath, before);
    await reload();
  }
}

describe("max_parallel_requests on a deployment", () => {
  test("is accepted without the warning an unknown setting gets", () => {
    expect(gateway.output()).not.toContain("max_parallel_requests: not supported");
    expect(gateway.output()).not.toContain("default_max_parallel_requests: not supported");
  });

  test("requests over the cap wait their turn: all are answered, never more than the cap at the provider", async () => {
    narrow.reset();
    narrow.set({ firstByteDelayMs: 150 });
    const answers = await Promise.all(Array.from({ length: 6 }, () => chat("narrow")));
    expect(answers.every((a) => a.choices[0]?.message.content === narrow.behaviour.content)).toBe(true);
    expect(narrow.requests.length).toBe(6);
    expect(narrow.maxInFlight).toBe(2);
  });

  test("/metrics shows each capped deployment's cap, its requests in flight and those waiting", async () => {
    const scrape = async () => (await (await fetch(`${gateway.url}/metrics`, { headers: { authorization: "Bearer sk-1234" } })).text()).split("\n");
    /** The gauge's value for the deployment of `model` (one entry, so one line). */
    const gauge = (lines: string[], name: string, model: string) => {
      const line = lines.find((l) => l.startsWith(`${name}{`) && l.includes(`deployment="${model}`));
      expect(line).toBeDefined();
      return Number(line!.slice(line!.lastIndexOf(" ") + 1));
    };
    narrow.reset();
    narrow.set({ firstByteDelayMs: 400 });
    const answers = Promise.all(Array.from({ length: 5 }, () => chat("narrow")));
    await Bun.sleep(150);
    const during = await scrape();
    expect(gauge(during, "litegate_deployment_max_parallel_requests", "narrow")).toBe(2);
    expect(gauge(during, "litegate_deployment_requests_in_flight", "narrow")).toBe(2);
    expect(gauge(during, "litegate_deployment_requests_waiting", "narrow")).toBe(3);
    // The default cap counts too; a deployment without one is not listed.
    expect(gauge(during, "litegate_deployment_max_parallel_requests", "defaulted")).toBe(1);
    await answers;
    const after = await scrape();
    expect(gauge(after, "litegate_deployment_requests_in_flight", "narrow")).toBe(0);
    expect(gauge(after, "litegate_deployment_requests_waiting", "narrow")).toBe(0);
  });

  test("a stream holds its slot until it ends", async () => {
    narrow.reset();
    narrow.set({ chunks: 4, chunkDelayMs: 100 });
    const texts = await Promise.all(Array.from({ length: 4 }, () => streamed("narrow")));
    expect(texts.every((text) => text.length > 0)).toBe(true);
    expect(narrow.requests.length).toBe(4);
    expect(narrow.maxInFlight).toBe(2);
  });

  test("a group's deployments each keep their own cap, and a request goes to one with a free slot", async () => {
    for (const upstream of [left, right]) {
      upstream.reset();
      upstream.set({ firstByteDelayMs: 150 });
    }
    await Promise.all(Array.from({ length: 4 }, () => chat("pair")));
    expect(left.maxInFlight).toBe(1);
    expect(right.maxInFlight).toBe(1);
    expect(left.requests.length + right.requests.length).toBe(4);
    // Two at once, each first chosen at random (both for one deployment half the time): one goes to
    // each, the second to the deployment whose slot is free rather than waiting for the other's.
    for (let round = 0; round < 4; round++) {
      for (const upstream of [left, right]) {
        upstream.reset();
        upstream.set({ firstByteDelayMs: 150 });
      }
      await Promise.all([chat("pair"), chat("pair")]);
      expect([left.requests.length, right.requests.length]).toEqual([1, 1]);
    }
  });

  test("a waiting request takes the first slot that frees at any of its model's deployments, before a later request", async () => {
    left.reset();
    right.reset();
    // The slow deployment streams for about 2.4 s, the fast one for about 0.3 s; the waiting request
    // nearly always first picks the slow one (weight 100), yet is served by the fast one when it frees.
    left.set({ chunks: 12, chunkDelayMs: 200 });
    right.set({ chunks: 3, chunkDelayMs: 100 });
    const done: string[] = [];
    const timed = (name: string) => streamed("tilted").then(() => done.push(name));
    const holders = [timed("r1"), timed("r2")];
    await Bun.sleep(100);
    const third = timed("r3");
    await Bun.sleep(600);
    const fifth = timed("r5");
    await Promise.all([third, fifth]);
    await Promise.all(holders);
    // The fast one's first request, then the one that waited, then the later one, then the slow one's.
    expect(done.slice(1, 3)).toEqual(["r3", "r5"]);
    expect(left.requests.length).toBe(1);
    expect(right.requests.length).toBe(3);
    expect(left.maxInFlight + right.maxInFlight).toBe(2);
  });

  test("router_settings.default_max_parallel_requests caps a deployment that sets none", async () => {
    defaulted.reset();
    defaulted.set({ firstByteDelayMs: 100 });
    await Promise.all(Array.from({ length: 3 }, () => chat("defaulted")));
    expect(defaulted.requests.length).toBe(3);
    expect(defaulted.maxInFlight).toBe(1);
  });

  test("a request still waiting at its deadline is answered 504 without reaching the provider, and no slot is lost", async () => {
    narrow.reset();
    // Two streams that keep sending for about three seconds (each piece restarts their deadline) hold both
    // slots past the waiting request's deadline (1 s, found by a sweep once a second: within 2 s).
    narrow.set({ chunks: 15, chunkDelayMs: 200 });
    const holders = [streamed("narrow"), streamed("narrow")];
    await Bun.sleep(100);
    const waited = await fetch(`${gateway.url}/v1/chat/completions`, {
      method: "POST", headers: { authorization: "Bearer sk-1234", "content-type": "application/json" }, body: JSON.stringify({ model: "narrow", messages }),
    });
    expect(waited.status).toBe(504);
    const body = (await waited.json()) as { error: { message: string; type: string } };
    expect(body.error.message).toContain("max_parallel_requests");
    expect(body.error.type).toBe("timeout");
    await Promise.all(holders);
    expect(narrow.requests.length).toBe(2);

    narrow.reset();
    narrow.set({ firstByteDelayMs: 100 });
    await Promise.all([chat("narrow"), chat("narrow")]);
    expect(narrow.maxInFlight).toBe(2);
  });

  test("a client that leaves while waiting gives up its turn: the provider never sees it", async () => {
    narrow.reset();
    narrow.set({ firstByteDelayMs: 400 });
    const holders = [chat("narrow"), chat("narrow")];
    await Bun.sleep(100);
    const controller = new AbortController();
    const leaving = chat("narrow", { signal: controller.signal }).catch((error) => error);
    await Bun.sleep(100);
    controller.abort();
    expect(await leaving).toBeInstanceOf(Error);
    await Promise.all(holders);
    await Bun.sleep(100);
    expect(narrow.requests.length).toBe(2);
    // Its place in the queue is gone: the next request is served at once.
    narrow.reset();
    const started = performance.now();
    await chat("narrow");
    expect(performance.now() - started).toBeLessThan(350);
  });

  test("a reload that raises the cap lets those waiting go at once", async () => {
    narrow.reset();
    narrow.set({ chunks: 10, chunkDelayMs: 150 });
    const holders = [streamed("narrow"), streamed("narrow")];
    await Bun.sleep(100);
    const started = performance.now();
    const waiting = chat("narrow");
    await Bun.sleep(100);
    await reloadedWith((text) => text.replace("max_parallel_requests: 2, ", "max_parallel_requests: 3, "), async () => {
      await waiting;
      // Served before the streams holding the two slots ended (about 1.5 s after they began).
      expect(performance.now() - started).toBeLessThan(1000);
      await Promise.all(holders);
      expect(narrow.maxInFlight).toBe(3);
    });
  });

  test("a reload that adds or removes another model's entry above a capped deployment keeps its requests in flight counted", async () => {
    narrow.reset();
    narrow.set({ chunks: 8, chunkDelayMs: 100 });
    const holders = [streamed("narrow"), streamed("narrow")];
    await Bun.sleep(100);
    await reloadedWith((text) => text.replace("model_list:\n", `model_list:\n  - model_name: other\n    litellm_params: {model: openai/o, api_base: "${defaulted.url}", ${PRICE}}\n`), async () => {
      // Both slots are still taken by the streams: this one waits for one of them.
      await chat("narrow");
      await Promise.all(holders);
      expect(narrow.requests.length).toBe(3);
      expect(narrow.maxInFlight).toBe(2);
    });
  });

  test("a reload that removes one of a model's entries keeps the other's requests in flight counted", async () => {
    left.reset();
    right.reset();
    left.set({ chunks: 3, chunkDelayMs: 100 });
    right.set({ chunks: 12, chunkDelayMs: 100 });
    const holders = [streamed("pair"), streamed("pair")];
    await Bun.sleep(150);
    expect(left.requests.length + right.requests.length).toBe(2);
    const first = `  - model_name: pair\n    litellm_params: {model: openai/a, api_base: "${left.url}", max_parallel_requests: 1, ${PRICE}}\n`;
    await reloadedWith((text) => text.replace(first, ""), async () => {
      // The entry left still has its stream in flight: this one waits for it, not for the shorter one of the entry removed.
      await chat("pair");
      await Promise.all(holders);
      expect(right.requests.length).toBe(2);
      expect(right.maxInFlight).toBe(1);
    });
  });
});
