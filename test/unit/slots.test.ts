import { expect, test } from "bun:test";
import { DeploymentSlots, type Release } from "../../src/proxy/slots";

const never = new AbortController().signal;
const taken = async (slot: Release | Promise<Release | null>) => (slot instanceof Promise ? await slot : slot);

test("waiting requests get slots in the order they asked, one per slot given back", async () => {
  const slots = new DeploymentSlots();
  const first = (await taken(slots.take("d", 1, never)))!;
  const order: string[] = [];
  const second = slots.take("d", 1, never);
  const third = slots.take("d", 1, never);
  expect(second).toBeInstanceOf(Promise);
  void (second as Promise<Release | null>).then(() => order.push("second"));
  void (third as Promise<Release | null>).then(() => order.push("third"));
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
  const left = slots.take("d", 1, leaving.signal);
  const staying = slots.take("d", 1, never);
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
  const waiting = slots.take("d", 1, never) as Promise<Release | null>;
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
  const raised = [slots.take("raised", 1, never), slots.take("raised", 1, never)] as Promise<Release | null>[];
  const gone = [slots.take("gone", 1, never), slots.take("gone", 1, never)] as Promise<Release | null>[];
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
