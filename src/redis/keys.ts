import type Redis from "ioredis";

const glob = (text: string) => text.replace(/[*?[\]\\]/g, "\\$&");

/**
 * Every Redis key and channel litegate uses, in one place, under `router_settings.redis_namespace`
 * when one is set (`<namespace>:lg:…`): deployments sharing a Redis database each count their own.
 */
export function redisKeysFor(namespace?: string) {
  const root = namespace ? `${namespace}:lg:` : "lg:";
  return {
    /** A counter's shared state: settled value `v`, and per instance its lease `l:<id>` and heartbeat `h:<id>`. */
    counter: (key: string) => `${root}c:${key}`,
    counterPattern: (prefix: string) => `${glob(root)}c:${glob(prefix)}*`,
    /** Exists while an instance is alive; its leases are dropped once it is gone. */
    alive: (instanceId: string) => `${root}alive:${instanceId}`,
    /** What `alive` puts before the instance, for the sync script. */
    alivePrefix: `${root}alive:`,
    /** A deployment's requests `r` and tokens `t` in one minute (minutes since the epoch), summed over instances. */
    deployment: (id: string, minute: number) => `${root}d:${minute}:${id}`,
    /** Set once by whichever instance finds it missing: a new value means Redis lost its data (restarted, emptied). */
    epoch: `${root}epoch`,
    /** Admin writes tell every instance what to forget. */
    invalidations: `${root}invalidate`,
    /** A deployment's failures of the last minute, every instance's (a sorted set scored by time, ms). */
    failures: (id: string) => `${root}f:${id}`,
    /** Deployments cooled down, and until when (ms): a hash of id to time, and the channel that tells the others at once. */
    cooldowns: `${root}cooldowns`,
    /** An instance was refused for room others hold on a counter: they give back what they do not use. */
    reclaim: `${root}reclaim`,
    /** An instance gave back room on a counter the others asked it for: their requests waiting for it ask again at once. */
    freed: `${root}freed`,
  };
}

export type RedisKeys = ReturnType<typeof redisKeysFor>;

/** The keys without a namespace. */
export const redisKeys = redisKeysFor();

/** What goes on `redisKeys.reclaim` (who was refused, for which counter) and on `redisKeys.freed` (who gave room back). */
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
export function deleteCounters(redis: Redis, prefix: string, keys: RedisKeys = redisKeys): void {
  const stream = redis.scanStream({ match: keys.counterPattern(prefix), count: 500 });
  stream.on("data", (keys: string[]) => void (keys.length > 0 && redis.del(...keys).catch(() => {})));
  stream.on("error", () => {});
}
