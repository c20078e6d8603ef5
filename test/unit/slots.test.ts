import { describe, expect, test } from "bun:test";
import { LocalCounters, counterKeys, scopes } from "../../src/governance";
import { DeploymentSlots, type Release, type Taken } from "../../src/proxy/slots";

const never = new AbortController().signal;
/** The slot, given at once or once its turn came (null: it never did). */
const taken = async (slot: Release | Promise<Taken | null>) => (slot instanceof Promise ? ((await slot)?.release ?? null) : slot);

test("waiting requests get slots in the order they asked, one per slot given back", async () => {
  const slots = new DeploymentSlots();
  const first = (await taken(slots.take("d", 1, never)))!;
  const order: string[] = [];
  const second = taken(slots.take("d", 1, never));
  const third = taken(slots.take("d", 1, never));
  void second.then(() => order.push("second"));
  void third.then(() => order.push("third"));
  expect(slots.waiting("d")).toBe(2);
  first();
  first(); // given back twice: still one slot
  await Bun.sleep(0);
  expect(order).toEqual(["second"]);
  expect(slots.inFlight("d")).toBe(1);
  (await second)!();
  await Bun.sleep(0);
  expect(order).toEqual(["second", "third"]);
  (await third)!();
  expect(slots.inFlight("d")).toBe(0);
});

test("a waiter whose signal aborts leaves the queue with no slot, and the next one is served", async () => {
  const slots = new DeploymentSlots();
  const held = (await taken(slots.take("d", 1, never)))!;
  const leaving = new AbortController();
  const left = taken(slots.take("d", 1, leaving.signal));
  const staying = taken(slots.take("d", 1, never));
  leaving.abort();
  expect(await left).toBeNull();
  expect(slots.waiting("d")).toBe(1);
  held();
  const next = await staying;
  expect(next).toBeInstanceOf(Function);
  next!();
  expect(slots.inFlight("d")).toBe(0);
  expect(slots.waiting("d")).toBe(0);
});

test("a cap raised by a reload lets those waiting through at the next request", async () => {
  const slots = new DeploymentSlots();
  const held = (await taken(slots.take("d", 1, never)))!;
  const waiting = taken(slots.take("d", 1, never));
  let served = false;
  void waiting.then(() => (served = true));
  const now = await taken(slots.take("d", 3, never));
  await Bun.sleep(0);
  expect(served).toBe(true);
  expect(now).toBeInstanceOf(Function);
  expect(slots.inFlight("d")).toBe(3);
  for (const release of [held, (await waiting)!, now!]) release();
  expect(slots.inFlight("d")).toBe(0);
});

test("a reload sets each deployment's cap at once: those waiting go as far as it allows, all of them when it has none", async () => {
  const slots = new DeploymentSlots();
  const held = [(await taken(slots.take("raised", 1, never)))!, (await taken(slots.take("gone", 1, never)))!];
  const raised = [taken(slots.take("raised", 1, never)), taken(slots.take("raised", 1, never))];
  const gone = [taken(slots.take("gone", 1, never)), taken(slots.take("gone", 1, never))];
  const served: string[] = [];
  raised.forEach((p, i) => void p.then(() => served.push(`raised ${i}`)));
  gone.forEach((p, i) => void p.then(() => served.push(`gone ${i}`)));
  slots.recap((id) => (id === "raised" ? 2 : undefined));
  await Bun.sleep(0);
  expect(served.sort()).toEqual(["gone 0", "gone 1", "raised 0"]);
  expect(slots.waiting("raised")).toBe(1);
  for (const release of [...held, ...(await Promise.all([raised[0]!, ...gone])).map((r) => r!)]) release();
  (await raised[1]!)!();
  expect(slots.inFlight("raised") + slots.inFlight("gone")).toBe(0);
});

test("those waiting at several deployments are served in the order they asked: a slot freed at one goes to the oldest who may go there", async () => {
  const slots = new DeploymentSlots();
  const atA = (await taken(slots.take("a", 1, never)))!;
  const atB = (await taken(slots.take("b", 1, never)))!;
  const served: string[] = [];
  const wait = (name: string, id: string, also: Array<[string, number]>) => {
    const slot = slots.take(id, 1, never, also) as Promise<Taken | null>;
    void slot.then((given) => served.push(`${name} at ${given!.id}`));
    return slot;
  };
  const first = wait("first", "a", [["b", 1]]); // picked a, may go to b
  const onlyA = wait("only a", "a", []);
  const second = wait("second", "b", [["a", 1]]);
  expect([slots.waiting("a"), slots.waiting("b")]).toEqual([3, 2]);
  atB();
  // A newcomer at b finds no room: the slot went to the oldest waiting, though it first picked a.
  const newcomer = slots.take("b", 1, never);
  expect(newcomer).toBeInstanceOf(Promise);
  await Bun.sleep(0);
  expect(served).toEqual(["first at b"]);
  atA();
  await Bun.sleep(0);
  expect(served).toEqual(["first at b", "only a at a"]);
  (await first)!.release();
  await Bun.sleep(0);
  // b came free: the oldest who may go there is `second` (`only a` may not), then the newcomer.
  expect(served).toEqual(["first at b", "only a at a", "second at b"]);
  (await onlyA)!.release();
  (await second)!.release();
  ((await newcomer) as Taken).release();
  expect([slots.inFlight("a"), slots.inFlight("b"), slots.waiting("a"), slots.waiting("b")]).toEqual([0, 0, 0, 0]);
});

test("a request that finds its deployment full takes a free slot at another it may go to at once", async () => {
  const slots = new DeploymentSlots();
  const atA = (await taken(slots.take("a", 1, never)))!;
  const slot = slots.take("a", 1, never, [["b", 2]]) as Promise<Taken | null>;
  expect((await slot)!.id).toBe("b");
  expect(slots.inFlight("b")).toBe(1);
  (await slot)!.release();
  atA();
  expect(slots.inFlight("a") + slots.inFlight("b")).toBe(0);
});

test("one waiting at several deployments who leaves, or whose deadline passes, takes no slot at any", async () => {
  const slots = new DeploymentSlots();
  const held = [(await taken(slots.take("a", 1, never)))!, (await taken(slots.take("b", 1, never)))!];
  const leaving = new AbortController();
  const left = slots.take("a", 1, leaving.signal, [["b", 1]]);
  const timedOut = slots.take("b", 1, AbortSignal.timeout(20), [["a", 1]]);
  const staying = slots.take("b", 1, never, [["a", 1]]) as Promise<Taken | null>;
  leaving.abort();
  expect(await left).toBeNull();
  expect(await timedOut).toBeNull();
  expect([slots.waiting("a"), slots.waiting("b")]).toEqual([1, 1]);
  // An already aborted signal does not wait.
  expect(await slots.take("a", 1, AbortSignal.abort(), [["b", 1]])).toBeNull();
  held[0]!();
  expect((await staying)!.id).toBe("a");
  (await staying)!.release();
  held[1]!();
  expect([slots.inFlight("a"), slots.inFlight("b"), slots.waiting("a"), slots.waiting("b")]).toEqual([0, 0, 0, 0]);
});

describe("counted with other instances (shared counters)", () => {
  // LocalCounters stand in for Redis's shared count here: what the test admits on them itself is
  // what the other instances hold. The instances on a real Redis: test/integration/deployment-parallel-shared.test.ts.
  const othersHold = (counters: LocalCounters) => {
    const check = { key: counterKeys.parallel(scopes.deployment("d")), limit: 1, reserve: 1, initial: 0, expiresAt: Infinity };
    expect(counters.admit([check])).toBe(-1);
    return () => counters.release(check);
  };

  test("a slot the others hold is waited for; given back, it goes to the oldest waiter, not to a newcomer", async () => {
    const counters = new LocalCounters(() => Date.now());
    const slots = new DeploymentSlots(counters);
    const giveBack = othersHold(counters);
    const order: string[] = [];
    const first = taken(slots.take("d", 1, never));
    void first.then(() => order.push("first"));
    await Bun.sleep(30);
    expect(order).toEqual([]);
    expect(slots.waiting("d")).toBe(1);
    giveBack();
    // Free on the shared count now, but someone waits: the newcomer queues behind them.
    const second = taken(slots.take("d", 1, never));
    void second.then(() => order.push("second"));
    expect(await first).toBeInstanceOf(Function);
    await Bun.sleep(30);
    expect(order).toEqual(["first"]);
    (await first)!();
    expect(await second).toBeInstanceOf(Function);
    expect(order).toEqual(["first", "second"]);
    (await second)!();
    expect(slots.inFlight("d")).toBe(0);
    expect(counters.used({ key: counterKeys.parallel(scopes.deployment("d")), limit: 1, reserve: 1, initial: 0, expiresAt: Infinity })).toBe(0);
  });

  test("a waiter whose signal aborts holds nothing, here or on the shared count", async () => {
    const counters = new LocalCounters(() => Date.now());
    const slots = new DeploymentSlots(counters);
    const giveBack = othersHold(counters);
    const leaving = new AbortController();
    const left = taken(slots.take("d", 1, leaving.signal));
    await Bun.sleep(25);
    leaving.abort();
    expect(await left).toBeNull();
    giveBack();
    await Bun.sleep(25);
    expect(slots.waiting("d")).toBe(0);
    expect(slots.inFlight("d")).toBe(0);
    // The one slot is free for the next request, at once.
    const next = slots.take("d", 1, never);
    expect(next).toBeInstanceOf(Function);
    (next as Release)();
  });
});

describe("handed between instances while both have requests waiting", () => {
  /** Shared counters whose other instances always want the slot, and which say when they gave one back. */
  class ContestedCounters extends LocalCounters {
    private readonly listeners: ((key: string) => void)[] = [];
    contested = () => true;
    onFreed(listener: (key: string) => void) {
      this.listeners.push(listener);
    }
    freedByOthers() {
      for (const listener of this.listeners) listener(counterKeys.parallel(scopes.deployment("d")));
    }
  }
  const slotOfD = { key: counterKeys.parallel(scopes.deployment("d")), limit: 1, reserve: 1, initial: 0, expiresAt: Infinity };
  const flush = async () => {
    for (let i = 0; i < 5; i++) await Promise.resolve();
  };

  /** One request holds the slot and another waits here; the first gives it back while the others want it. */
  async function givenBackWhileContested() {
    const counters = new ContestedCounters(() => Date.now());
    const slots = new DeploymentSlots(counters);
    const first = slots.take("d", 1, never) as Release;
    const state = { granted: false };
    const waiting = taken(slots.take("d", 1, never));
    void waiting.then(() => (state.granted = true));
    first();
    await flush();
    // Yielding: free on the shared count, but left for the other instance's requests for a moment.
    expect(state.granted).toBe(false);
    return { counters, slots, state, waiting };
  }

  test("a slot given back while the others wait is left to them; once they give one back, those waiting here take it at once", async () => {
    const { counters, slots, state, waiting } = await givenBackWhileContested();
    expect(counters.admit([slotOfD])).toBe(-1);
    await Bun.sleep(40);
    expect(state.granted).toBe(false);
    counters.release(slotOfD);
    counters.freedByOthers();
    // At once, not at the next poll (every 10 ms).
    await flush();
    expect(state.granted).toBe(true);
    (await waiting)!();
    expect(slots.inFlight("d")).toBe(0);
  });

  test("told that the others gave a slot back, those waiting here stop yielding (both yielding, it would stay idle)", async () => {
    const { counters, state, waiting } = await givenBackWhileContested();
    counters.freedByOthers();
    await flush();
    expect(state.granted).toBe(true);
    (await waiting)!();
  });
});

describe("the queue across instances", () => {
  /** Shared counters that record what the slots tell them of those waiting (Redis keeps it, see test/integration/shared-queue.test.ts). */
  class ListeningCounters extends LocalCounters {
    told: { key: string; waited: readonly number[] }[] = [];
    waiting(check: { key: string }, waited: readonly number[]) {
      this.told.push({ key: check.key, waited });
    }
  }

  test("the shared counters hear how long the requests waiting here have waited, oldest first, as many as the cap; and when none waits", async () => {
    const counters = new ListeningCounters(() => Date.now());
    const slots = new DeploymentSlots(counters);
    const held = [slots.take("d", 2, never) as Release, slots.take("d", 2, never) as Release];
    expect(counters.told).toEqual([]);
    const first = taken(slots.take("d", 2, never));
    await Bun.sleep(30);
    const leaving = new AbortController();
    const second = taken(slots.take("d", 2, leaving.signal));
    const third = taken(slots.take("d", 2, never));
    const key = counterKeys.parallel(scopes.deployment("d"));
    const last = () => counters.told.at(-1)!;
    expect(last().key).toBe(key);
    // Three wait; two slots can go next, so the two oldest are told of.
    expect(last().waited).toHaveLength(2);
    expect(last().waited[0]).toBeGreaterThanOrEqual(25);
    expect(last().waited[1]).toBeLessThan(10);
    // The second leaves: the first and the third.
    leaving.abort();
    expect(await second).toBeNull();
    expect(last().waited).toHaveLength(2);
    expect(last().waited[0]).toBeGreaterThanOrEqual(25);
    // The first is served: the third alone; then none waits.
    held[0]!();
    const firstSlot = (await first)!;
    expect(last().waited).toHaveLength(1);
    expect(last().waited[0]).toBeLessThan(10);
    held[1]!();
    const thirdSlot = (await third)!;
    expect(last()).toEqual({ key, waited: [] });
    firstSlot();
    thirdSlot();
    expect(slots.inFlight("d")).toBe(0);
  });
});
