import type Redis from "ioredis";

/** Every Redis key and channel litegate uses, in one place. */
export const redisKeys = {
  /** A counter's shared state: settled value `v`, and per instance its lease `l:<id>` and heartbeat `h:<id>`. */
  counter: (key: string) => `lg:c:${key}`,
  counterPattern: (prefix: string) => `lg:c:${prefix.replace(/[*?[\]\\]/g, "\\$&")}*`,
  /** Exists while an instance is alive; its leases are dropped once it is gone. */
  alive: (instanceId: string) => `lg:alive:${instanceId}`,
  /** Set once by whichever instance finds it missing: a new value means Redis lost its data (restarted, emptied). */
  epoch: "lg:epoch",
  /** Admin writes tell every instance what to forget. */
  invalidations: "lg:invalidate",
  /** An instance was refused for room others hold on a counter: they give back what they do not use. */
  reclaim: "lg:reclaim",
};

/** What goes on `redisKeys.reclaim`: who was refused, for which counter. */
export const reclaimMessage = {
  of: (instanceId: string, key: string) => JSON.stringify([instanceId, key]),
  read(text: string): { from: string | null; key: string | null } {
    try {
      const [from, key] = JSON.parse(text) as unknown[];
      return { from: typeof from === "string" ? from : null, key: typeof key === "string" ? key : null };
    } catch {
      return { from: null, key: null };
    }
  },
};

/** Deletes every counter whose key starts with `prefix`, in the background (a scan, never KEYS). */
export function deleteCounters(redis: Redis, prefix: string): void {
  const stream = redis.scanStream({ match: redisKeys.counterPattern(prefix), count: 500 });
  stream.on("data", (keys: string[]) => void (keys.length > 0 && redis.del(...keys).catch(() => {})));
  stream.on("error", () => {});
}
