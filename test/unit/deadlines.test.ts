import { afterEach, describe, expect, test } from "bun:test";
import { Deadlines } from "../../src/proxy/deadlines";

let now = 0;
let deadlines: Deadlines;
const fresh = () => (deadlines = new Deadlines(() => now));
afterEach(() => deadlines.close());

describe("request deadlines", () => {
  test("the sweep aborts only the overdue ones, with a TimeoutError, and forgets them", () => {
    fresh();
    now = 1000;
    const short = deadlines.track(new AbortController().signal, 500);
    const long = deadlines.track(new AbortController().signal, 5000);
    const middle = deadlines.track(new AbortController().signal, 1000);
    expect(deadlines.size).toBe(3);

    now = 1499;
    deadlines.sweep();
    expect(short.signal.aborted).toBe(false);

    now = 2000;
    deadlines.sweep();
    expect(short.signal.aborted).toBe(true);
    expect((short.signal.reason as DOMException).name).toBe("TimeoutError");
    expect(middle.signal.aborted).toBe(true);
    expect(long.signal.aborted).toBe(false);
    expect(deadlines.size).toBe(1);

    now = 6000;
    deadlines.sweep();
    expect(long.signal.aborted).toBe(true);
    expect(deadlines.size).toBe(0);
  });

  test("a finished request is never aborted, and finishing twice or after expiry changes nothing", () => {
    fresh();
    now = 0;
    const all = Array.from({ length: 5 }, () => deadlines.track(new AbortController().signal, 100));
    // Out of the middle, the head and the tail of the list.
    all[2]!.done();
    all[0]!.done();
    all[4]!.done();
    all[4]!.done();
    expect(deadlines.size).toBe(2);

    now = 100;
    deadlines.sweep();
    expect(all.map((d) => d.signal.aborted)).toEqual([false, true, false, true, false]);
    expect(deadlines.size).toBe(0);
    all[1]!.done();
    expect(deadlines.size).toBe(0);

    // The list still works after being emptied.
    const next = deadlines.track(new AbortController().signal, 100);
    expect(deadlines.size).toBe(1);
    now = 300;
    deadlines.sweep();
    expect(next.signal.aborted).toBe(true);
  });

  test("the client going away aborts its deadline with the client's reason", () => {
    fresh();
    const client = new AbortController();
    const other = deadlines.track(new AbortController().signal, 60_000);
    const deadline = deadlines.track(client.signal, 60_000);
    client.abort(new DOMException("client closed", "AbortError"));
    expect(deadline.signal.aborted).toBe(true);
    expect((deadline.signal.reason as DOMException).message).toBe("client closed");
    expect(other.signal.aborted).toBe(false);
  });

  test("thousands in flight, finished in any order, leave nothing behind", () => {
    fresh();
    now = 0;
    const tracked = Array.from({ length: 3000 }, (_, i) => deadlines.track(new AbortController().signal, i % 2 ? 10 : 1_000_000));
    for (let i = 0; i < tracked.length; i += 3) tracked[i]!.done();
    expect(deadlines.size).toBe(2000);
    now = 10;
    deadlines.sweep();
    // Odd indexes expire; of the even ones, those not finished remain.
    expect(deadlines.size).toBe(tracked.filter((_, i) => i % 2 === 0 && i % 3 !== 0).length);
    for (const d of tracked) d.done();
    expect(deadlines.size).toBe(0);
  });
});
