import Redis from "ioredis";
import type { Invalidation } from "../auth";
import type { Logger } from "../log";
import { SharedCounters } from "./counters";
import { redisKeys } from "./keys";

export { SharedCounters } from "./counters";
export { redisKeys } from "./keys";

export interface RedisLink {
  counters: SharedCounters;
  publish(message: Invalidation): void;
  subscribe(handler: (message: Invalidation) => void): void;
  /** "connected", or "degraded" while Redis is unreachable. */
  status(): string;
  /** Round trips to Redis, for benchmarks that prove syncs ≈ ticks, not requests. */
  commands(): number;
  close(): Promise<void>;
}

export async function connectRedis(url: string, log: Logger, now: () => number = Date.now): Promise<RedisLink> {
  const options = {
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    connectTimeout: 2000,
    commandTimeout: 1000,
    retryStrategy: (attempt: number) => Math.min(50 * attempt, 1000),
  };
  const client = new Redis(url, options);
  const subscriber = new Redis(url, { ...options, maxRetriesPerRequest: null, enableOfflineQueue: true });
  for (const connection of [client, subscriber]) connection.on("error", () => {});
  // The gateway starts even when Redis is down: it serves with per-instance limits until Redis answers.
  await client.connect().catch((error) => log.error("redis unreachable at start", { error: String(error) }));
  await subscriber.connect().catch(() => {});

  const instanceId = crypto.randomUUID();
  const counters = new SharedCounters({ redis: client, instanceId, log, now });
  let published = 0;

  return {
    counters,
    publish(message) {
      published++;
      client.publish(redisKeys.invalidations, JSON.stringify(message)).catch((error) => {
        log.warn("invalidation not published (redis unreachable); other instances catch up within the key cache TTL", { error: String(error) });
      });
    },
    subscribe(handler) {
      subscriber.subscribe(redisKeys.invalidations).catch(() => {});
      subscriber.on("message", (_channel, text) => {
        try {
          handler(JSON.parse(text) as Invalidation);
        } catch {
          log.warn("ignored a malformed invalidation message");
        }
      });
    },
    status: () => (counters.isDegraded || client.status !== "ready" ? "degraded" : "connected"),
    commands: () => counters.roundTrips + published,
    async close() {
      await counters.close();
      subscriber.disconnect();
      await client.quit().catch(() => client.disconnect());
    },
  };
}
