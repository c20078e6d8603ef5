import { beforeAll, describe, expect, test } from "bun:test";
import OpenAI from "openai";
import { type RunningGateway, instancesOnOneRedis, upstreamAndRedis } from "../helpers/binary";

// A deployment's `max_parallel_requests` on two instances sharing Postgres and Redis: the cap holds for
// the deployment (the provider sized for it sees no more), not per instance, as LiteLLM's router
// counts it (two instances would send twice the cap). Requests over it wait their turn on whichever
// instance they came to, and go when a slot comes back on either.

const shared = upstreamAndRedis();
const gateways = instancesOnOneRedis(shared, 2, { narrow: 2, single: 1 });
let a: RunningGateway;
let b: RunningGateway;
beforeAll(() => {
  [a, b] = gateways as [RunningGateway, RunningGateway];
});

const messages = [{ role: "user" as const, content: "Hello there" }];
const client = (gateway: RunningGateway) => new OpenAI({ apiKey: "sk-1234", baseURL: `${gateway.url}/v1`, maxRetries: 0 });
/** When the answer came (ms since the epoch). */
const chatAt = async (gateway: RunningGateway, model = "narrow") => {
  const answer = await client(gateway).chat.completions.create({ model, messages });
  expect(answer.choices[0]?.message.content).toBe(shared.upstream.behaviour.content);
  return Date.now();
};

/** Eight requests at once, half to each instance, each answered by the provider after 150 ms. */
async function eightAtOnce(): Promise<void> {
  shared.upstream.reset();
  shared.upstream.set({ firstByteDelayMs: 150 });
  await Promise.all(Array.from({ length: 8 }, (_, i) => chatAt(i % 2 === 0 ? a : b)));
  expect(shared.upstream.requests.length).toBe(8);
}

/** A stream admitted and under way (its first chunk read); `rest` reads it to its end and says when that was. */
async function openStream(gateway: RunningGateway) {
  const chunks = (await client(gateway).chat.completions.create({ model: "narrow", messages, stream: true }))[Symbol.asyncIterator]();
  await chunks.next();
  return {
    rest: async () => {
      while (!(await chunks.next()).done);
      return Date.now();
    },
  };
}

describe("max_parallel_requests on a deployment, two instances on one Redis", () => {
  test("the cap holds for the deployment: requests sent to both instances at once all answer, never more than the cap at the provider", async () => {
    await eightAtOnce();
    // Per instance, as before, it was 4.
    expect(shared.upstream.maxInFlight).toBe(2);
  }, 30_000);

  test("streams on one instance hold the slots: the other instance's requests wait for them and go once they end", async () => {
    shared.upstream.reset();
    shared.upstream.set({ chunks: 4, chunkDelayMs: 200 });
    const streams = [await openStream(a), await openStream(a)];
    const waiting = [chatAt(b), chatAt(b)];
    const ended = await Promise.all(streams.map((stream) => stream.rest()));
    const answered = await Promise.all(waiting);
    expect(shared.upstream.requests.length).toBe(4);
    expect(shared.upstream.maxInFlight).toBe(2);
    // Neither went before a stream ended (a slot comes back when the stream's end has been sent); each
    // went soon after one did: the waiting instance asks again every 10 ms.
    for (const at of answered) {
      expect(at).toBeGreaterThanOrEqual(Math.min(...ended) - 50);
      expect(at - Math.min(...ended)).toBeLessThan(1_000);
    }
  }, 30_000);

  test("Redis down: requests are still answered, each instance keeping the cap for itself; back, the cap holds for both again", async () => {
    await shared.redis.stop();
    try {
      await eightAtOnce();
      expect(shared.upstream.maxInFlight).toBeLessThanOrEqual(4);
    } finally {
      await shared.redis.start();
    }
    await Bun.sleep(1_500);
    await eightAtOnce();
    expect(shared.upstream.maxInFlight).toBe(2);
  }, 30_000);

  test("neither instance's queue keeps the slot from the other's: requests sent to each in turn are served in turn", async () => {
    shared.upstream.reset();
    shared.upstream.set({ firstByteDelayMs: 60 });
    const answers: Promise<number>[] = [];
    for (let i = 0; i < 12; i++) {
      answers.push(chatAt(i % 2 === 0 ? a : b, "single"));
      await Bun.sleep(15);
    }
    const answered = await Promise.all(answers);
    expect(shared.upstream.maxInFlight).toBe(1);
    // The order they were answered in: each at its place or next to it (a client's request can leave a
    // little late on a busy machine), not one instance's queue first and the other's after it (as when a
    // freed slot went to its own instance's queue), nor as the instances happened to ask.
    const order = answered.map((at, i) => [i, at] as const).sort((x, y) => x[1] - y[1]).map(([i]) => i);
    expect(Math.max(...order.map((request, place) => Math.abs(place - request)))).toBeLessThanOrEqual(1);
  }, 30_000);

  test("a request waiting on one instance goes after those that came before it on the other, and ahead of those that came after it", async () => {
    shared.upstream.reset();
    shared.upstream.set({ firstByteDelayMs: 60 });
    const before = Promise.all(Array.from({ length: 4 }, () => chatAt(a, "single")));
    await Bun.sleep(30);
    const onB = chatAt(b, "single");
    await Bun.sleep(30);
    const after = Promise.all(Array.from({ length: 4 }, () => chatAt(a, "single")));
    // One queue across the instances, first come, first served. Before, each instance's queue took turns
    // (it went second, ahead of three that came before it); before that, it went after all eight.
    expect(await onB).toBeGreaterThan(Math.max(...(await before)));
    expect(await onB).toBeLessThan(Math.min(...(await after)));
    expect(shared.upstream.maxInFlight).toBe(1);
  }, 30_000);

  test("short calls waiting on both instances: the slot goes from one to the other in a round trip or two, never idle while they wait", async () => {
    shared.upstream.reset();
    shared.upstream.set({ firstByteDelayMs: 20 });
    const started = Date.now();
    const [onA, onB] = await Promise.all([a, b].map((gateway) => Promise.all(Array.from({ length: 10 }, () => chatAt(gateway, "single")))));
    expect(shared.upstream.maxInFlight).toBe(1);
    const answered = [...onA!, ...onB!].sort((x, y) => x - y);
    const gaps = answered.slice(1).map((at, i) => at - answered[i]!);
    // Each instance, on giving the slot back while the other's requests wait, lets them have it: they hear
    // it is free at once (before, they asked again only after 10–50 ms, and when both instances left it
    // to the other, it stayed idle until one's 100 ms yield ran out: gaps of 80–130 ms, 33 ms a call).
    expect(Math.max(...gaps)).toBeLessThan(60);
    expect((answered.at(-1)! - started) / 20).toBeLessThan(30);
  }, 30_000);

  test("the slots of an instance killed while holding them come back to the other once its lease lapses", async () => {
    shared.upstream.reset();
    shared.upstream.set({ chunks: 40, chunkDelayMs: 250 });
    // Kept referenced: a stream the client dropped could be collected, and its connection closed (the
    // gateway then gives its slot back, as it should, and the waiting request goes before the kill).
    const streams = [await openStream(a), await openStream(a)];
    shared.upstream.set({ chunks: 5, chunkDelayMs: 0 });
    const sent = Date.now();
    const waiting = chatAt(b);
    await Bun.sleep(300);
    // Both slots are held: the request waits rather than reaching the provider.
    expect(shared.upstream.requests.length).toBe(2);
    expect(streams).toHaveLength(2);
    await a.stop("SIGKILL");
    const answered = await waiting;
    expect(shared.upstream.requests.length).toBe(3);
    // The dead instance's lease lapses a few seconds after its last heartbeat.
    expect(answered - sent).toBeLessThan(10_000);
  }, 30_000);
});
