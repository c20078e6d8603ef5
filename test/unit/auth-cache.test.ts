import { describe, expect, test } from "bun:test";
import { TtlCache } from "../../src/auth/cache";
import { batchedLookup } from "../../src/auth/lookups";
import { manualClock } from "../../src/clock";
import { until } from "../helpers/until";

/** A cache over a fake store whose reloads are recorded. */
function cacheOver(store: Map<string, string>, ttlMs = 1000) {
  const clock = manualClock(0);
  const reloads: string[][] = [];
  const errors: unknown[] = [];
  let failing = false;
  const cache = new TtlCache<string>(100, ttlMs, clock, {
    reloadDelayMs: 10,
    reloadMany: async (ids) => {
      reloads.push([...ids].sort());
      if (failing) throw new Error("database down");
      return new Map(ids.flatMap((id) => (store.has(id) ? [[id, store.get(id)!] as const] : [])));
    },
    onReloadError: (error) => errors.push(error),
  });
  return { cache, clock, reloads, errors, fail: (on: boolean) => (failing = on) };
}

/** A cache whose batched reloads read the store at once, then wait until `release` before answering. */
function gatedCache(store: Map<string, string>) {
  const gate = Promise.withResolvers<void>();
  const clock = manualClock(0);
  const cache = new TtlCache<string>(100, 1000, clock, {
    reloadDelayMs: 1,
    reloadMany: async (ids) => {
      const read = new Map(ids.map((id) => [id, store.get(id)!] as const));
      await gate.promise;
      return read;
    },
  });
  return { cache, clock, release: () => gate.resolve() };
}

describe("a stale entry is served while a batched reload refreshes it", () => {
  test("stale entries in use are reloaded together in one call, and the new values replace them", async () => {
    const store = new Map([["a", "a1"], ["b", "b1"], ["c", "c1"]]);
    const { cache, clock, reloads } = cacheOver(store);
    for (const id of store.keys()) cache.set(id, store.get(id)!);
    store.set("a", "a2");
    store.set("b", "b2");
    clock.advance(1500);
    expect(cache.peek("a")).toMatchObject({ value: "a1", fresh: false });
    expect(cache.serveStale("a")).toBe(true);
    expect(cache.serveStale("b")).toBe(true);
    expect(cache.serveStale("a")).toBe(true);
    expect(reloads).toEqual([]); // gathered first, not one call per use
    await until("one reload", () => reloads.length === 1, 2000, 5);
    await until("the reloaded value", () => cache.peek("a")?.value === "a2", 2000, 5);
    expect(reloads).toEqual([["a", "b"]]);
    expect(cache.peek("b")).toMatchObject({ value: "b2", fresh: true });
    // Not in use while stale: not reloaded.
    expect(cache.peek("c")).toMatchObject({ value: "c1", fresh: false });
  });

  test("an id the store no longer has is dropped, so the next use loads it (and finds nothing)", async () => {
    const store = new Map([["a", "a1"]]);
    const { cache, clock, reloads } = cacheOver(store);
    cache.set("a", "a1");
    store.delete("a");
    clock.advance(1500);
    cache.serveStale("a");
    await until("one reload", () => reloads.length === 1, 2000, 5);
    await until("the entry dropped", () => cache.peek("a") === undefined, 2000, 5);
  });

  test("a failed reload keeps serving the stale value, and the next use tries again", async () => {
    const store = new Map([["a", "a2"]]);
    const { cache, clock, reloads, errors, fail } = cacheOver(store);
    cache.set("a", "a1");
    clock.advance(1500);
    fail(true);
    cache.serveStale("a");
    await until("the reload error", () => errors.length === 1, 2000, 5);
    expect(cache.peek("a")?.value).toBe("a1");
    fail(false);
    cache.serveStale("a");
    await until("the reloaded value", () => cache.peek("a")?.value === "a2", 2000, 5);
    expect(reloads.length).toBe(2);
  });

  test("a reload that read before an invalidation does not store what it read", async () => {
    const store = new Map([["a", "old"]]);
    const { cache, clock, release } = gatedCache(store);
    cache.set("a", "old");
    clock.advance(1500);
    cache.serveStale("a");
    await Bun.sleep(20); // the reload has read "old" and waits
    store.set("a", "new");
    cache.delete("a"); // an admin write's invalidation
    release();
    await Bun.sleep(20);
    expect(cache.peek("a")).toBeUndefined();
  });

  test("another id's invalidation during a reload does not void it; its own does, and a clear voids every read under way", async () => {
    const store = new Map([["a", "a1"], ["b", "b1"]]);
    const { cache, clock, release } = gatedCache(store);
    cache.set("a", "a0");
    cache.set("b", "b0");
    clock.advance(1500);
    cache.serveStale("a");
    cache.serveStale("b");
    await Bun.sleep(20);
    cache.delete("other"); // an admin write about another key, while the reload waits
    cache.delete("b");
    release();
    await until("the reload stored", () => cache.peek("a")?.value === "a1", 2000, 5);
    expect(cache.peek("b")).toBeUndefined(); // its own invalidation came after the read

    // A clear voids every read under way; a load started after an invalidation stores what it read.
    const later = Promise.withResolvers<void>();
    const loaded = cache.load("c", async () => (await later.promise, "c1"));
    cache.clear();
    later.resolve();
    expect(await loaded).toBe("c1");
    expect(cache.peek("c")).toBeUndefined();
    cache.delete("d");
    expect(await cache.load("d", async () => "d1")).toBe("d1");
    expect(cache.peek("d")?.value).toBe("d1");
  });

  test("without a reloader, or with a zero ttl, the caller loads stale entries itself", () => {
    const clock = manualClock(0);
    expect(new TtlCache<string>(10, 1000, clock).serveStale("a")).toBe(false);
    expect(new TtlCache<string>(10, 0, clock, { reloadMany: async () => new Map() }).serveStale("a")).toBe(false);
  });
});

describe("the ids kept for the next start", () => {
  test("the most recently loaded ids, up to the limit; a value `keep` refuses is not stored", async () => {
    const cache = new TtlCache<string | null>(100, 1000, manualClock(0), { keep: (value) => value !== null });
    for (const id of ["a", "b", "c", "d"]) cache.set(id, id);
    expect(await cache.load("nobody", async () => null)).toBeNull();
    expect(cache.peek("nobody")).toBeUndefined();
    cache.set("a", "a2"); // loaded again: now the most recent
    expect(cache.knownIds(10)).toEqual(["b", "c", "d", "a"]);
    expect(cache.knownIds(2)).toEqual(["d", "a"]);
  });
});

describe("misses looked up together", () => {
  test("the first goes at once; those arriving meanwhile share the next query; a failed query fails only its own ids", async () => {
    const queries: string[][] = [];
    let fail = false;
    const lookUp = batchedLookup(async (ids: string[]) => {
      queries.push(ids);
      const failing = fail;
      await Bun.sleep(5);
      if (failing) throw new Error("database down");
      return new Map(ids.filter((id) => id.startsWith("known")).map((id) => [id, id.toUpperCase()]));
    });
    const answers = await Promise.all(["known-1", "x", "known-2", "y", "x"].map(lookUp));
    expect(answers).toEqual(["KNOWN-1", null, "KNOWN-2", null, null]);
    expect(queries).toEqual([["known-1"], ["x", "known-2", "y"]]);
    fail = true;
    const failed = lookUp("known-3");
    fail = false;
    const later = lookUp("known-4"); // waits for the failing query, then goes in its own
    expect(await failed.catch((error: Error) => error.message)).toBe("database down");
    expect(await later).toBe("KNOWN-4");
    expect(queries.slice(2)).toEqual([["known-3"], ["known-4"]]);
  });
});
