import { describe, expect, test } from "bun:test";
import OpenAI from "openai";
import { type RunningGateway, instancesOnOneRedis, upstreamAndRedis } from "../helpers/binary";

// A deployment's `max_parallel_requests` on three instances sharing Postgres and Redis: requests waiting
// for a slot on any of them form one queue, first come, first served. With two instances a slot given
// back went to the other's waiting requests; with three, to whichever of the other two asked first.

const shared = upstreamAndRedis();
const gateways = instancesOnOneRedis(shared, 3, { single: 1, pair: 2 });

const chat = (gateway: RunningGateway, content: string, signal?: AbortSignal, model = "single") =>
  new OpenAI({ apiKey: "sk-1234", baseURL: `${gateway.url}/v1`, maxRetries: 0 }).chat.completions.create({ model, messages: [{ role: "user", content }] }, { signal });

/** `count` requests sent `gapMs` apart, in turn to each instance: the order they reached the provider in. */
async function staggered(count: number, gapMs: number, callMs: number, model = "single", cap = 1): Promise<number[]> {
  shared.upstream.reset();
  shared.upstream.set({ firstByteDelayMs: callMs });
  const answers: Promise<unknown>[] = [];
  for (let i = 0; i < count; i++) {
    answers.push(chat(gateways[i % 3]!, `request ${i}`, undefined, model));
    await Bun.sleep(gapMs);
  }
  await Promise.all(answers);
  expect(shared.upstream.maxInFlight).toBe(cap);
  return shared.upstream.requests.map((request) => Number(/request (\d+)/.exec(request.body.messages[0].content)?.[1]));
}

describe("max_parallel_requests on a deployment, three instances on one Redis", () => {
  test("requests waiting on the three instances reach the provider in the order they came, whichever instance each came to", async () => {
    // Twelve requests 15 ms apart, each call 40 ms: all but the first wait, on each instance in turn.
    const order = await staggered(12, 15, 40);
    // Each at its place, or next to it (a client's request can leave 15 ms late on a busy machine). Before,
    // a slot went to whichever instance asked first: the second request went third to sixth.
    const late = order.map((request, place) => Math.abs(place - request));
    expect(Math.max(...late)).toBeLessThanOrEqual(1);
    expect(order.slice(0, 2)).toEqual([0, 1]);
  }, 30_000);

  test("with a cap of 2, each request waiting that came first is owed a slot: an instance's earlier requests both go before another's later ones", async () => {
    const rounds: string[][] = [];
    for (let round = 0; round < 3; round++) {
      shared.upstream.reset();
      shared.upstream.set({ firstByteDelayMs: 100 });
      const [first, second, third] = gateways as [RunningGateway, RunningGateway, RunningGateway];
      const send = (gateway: RunningGateway, names: string[]) => names.map((name) => chat(gateway, name, undefined, "pair"));
      // Both slots taken on the third instance; two requests wait on the first, then two on the second.
      const answers = send(third, ["c0", "c1"]);
      await Bun.sleep(20);
      answers.push(...send(first, ["a0", "a1"]));
      await Bun.sleep(30);
      answers.push(...send(second, ["b0", "b1"]));
      await Promise.all(answers);
      expect(shared.upstream.maxInFlight).toBe(2);
      rounds.push(shared.upstream.requests.map((request) => request.body.messages[0].content as string));
    }
    // Before, only each instance's oldest was owed a slot: when the two came back together, the second
    // instance's could take one ahead of the first instance's second request.
    for (const order of rounds) expect(order.slice(2, 4).sort()).toEqual(["a0", "a1"]);
  }, 30_000);

  test("an instance whose requests came first is served first, however many the others have waiting", async () => {
    shared.upstream.reset();
    shared.upstream.set({ firstByteDelayMs: 40 });
    const [first, second, third] = gateways as [RunningGateway, RunningGateway, RunningGateway];
    // The slot is taken on the first instance; one request waits on the second, then four on the third and four on the first.
    const answers = [chat(first, "request 0")];
    await Bun.sleep(10);
    answers.push(chat(second, "request 1"));
    await Bun.sleep(10);
    for (let i = 2; i < 10; i++) answers.push(chat(i % 2 === 0 ? third : first, `request ${i}`));
    await Promise.all(answers);
    const order = shared.upstream.requests.map((request) => Number(/request (\d+)/.exec(request.body.messages[0].content)?.[1]));
    // The second instance's one request goes next, not after the other two instances' queues.
    expect(order.slice(0, 2)).toEqual([0, 1]);
    expect(shared.upstream.maxInFlight).toBe(1);
  }, 30_000);

  test("a request whose client leaves while it waits gives up its place: one that came after it, on another instance, goes when the slot frees", async () => {
    shared.upstream.reset();
    shared.upstream.set({ firstByteDelayMs: 200 });
    const [first, second, third] = gateways as [RunningGateway, RunningGateway, RunningGateway];
    const holder = chat(first, "request 0");
    await Bun.sleep(20);
    const leaving = new AbortController();
    const left = chat(second, "request 1", leaving.signal).catch((error) => error);
    await Bun.sleep(20);
    const later = chat(third, "request 2").then(() => Date.now());
    await Bun.sleep(20);
    leaving.abort();
    expect(await left).toBeInstanceOf(Error);
    await holder;
    const freedAt = Date.now();
    // Its call takes 200 ms: it was not kept waiting for the request that left (its place in Redis goes with it).
    expect((await later) - freedAt).toBeLessThan(400);
    expect(shared.upstream.requests.map((request) => request.body.messages[0].content)).toEqual(["request 0", "request 2"]);
  }, 30_000);
});
