import Redis, { type RedisOptions } from "ioredis";
import type { Invalidation } from "../auth";
import type { Logger } from "../log";
import { SharedCounters } from "./counters";
import { SharedDeploymentUsage } from "./deployment-usage";
import { redisKeysFor } from "./keys";

export { SharedCounters } from "./counters";
export { redisKeys, redisKeysFor } from "./keys";

export interface RedisLink {
  counters: SharedCounters;
  deploymentUsage: SharedDeploymentUsage;
  publish(message: Invalidation): void;
  subscribe(handler: (message: Invalidation) => void): void;
  /** "connected", or "degraded" while Redis is unreachable. */
  status(): string;
  /** Round trips to Redis, for benchmarks that prove syncs ≈ ticks, not requests. */
  commands(): number;
  close(): Promise<void>;
}

/**
 * ioredis options from a `redis://` or `rediss://` URL (user, password, host, port, database number).
 * Parsed here with the WHATWG parser: handing ioredis the string makes it use Node's deprecated
 * `url.parse`, which prints a deprecation warning on every start.
 */
export function redisOptionsOf(value: string): RedisOptions {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new Error(`redis_url is not a URL: expected redis://[user:password@]host[:port][/db]`);
  }
  if (url.protocol !== "redis:" && url.protocol !== "rediss:") {
    throw new Error(`redis_url must start with redis:// or rediss:// (got ${url.protocol}//)`);
  }
  const options: RedisOptions = { host: url.hostname.replace(/^\[(.*)\]$/, "$1") || "127.0.0.1", port: url.port ? Number(url.port) : 6379 };
  if (url.username) options.username = decodeURIComponent(url.username);
  if (url.password) options.password = decodeURIComponent(url.password);
  const db = url.pathname.replace(/^\//, "");
  if (db !== "") {
    if (!/^\d+$/.test(db)) throw new Error(`redis_url: the path must be a database number (got /${db})`);
    options.db = Number(db);
  }
  if (url.protocol === "rediss:") options.tls = {};
  return options;
}

/** Connects to Redis; every key and channel is under `namespace` when one is given (`router_settings.redis_namespace`). */
export async function connectRedis(url: string, log: Logger, now: () => number = Date.now, namespace?: string): Promise<RedisLink> {
  const redisKeys = redisKeysFor(namespace);
  const options = {
    ...redisOptionsOf(url),
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    connectTimeout: 2000,
    commandTimeout: 1000,
    retryStrategy: (attempt: number) => Math.min(50 * attempt, 1000),
  };
  const client = new Redis(options);
  const subscriber = new Redis({ ...options, maxRetriesPerRequest: null, enableOfflineQueue: true });
  for (const connection of [client, subscriber]) connection.on("error", () => {});
  // The gateway starts even when Redis is down: it serves with per-instance limits until Redis answers.
  await client.connect().catch((error) => log.error("redis unreachable at start", { error: String(error) }));
  await subscriber.connect().catch(() => {});

  const instanceId = crypto.randomUUID();
  const counters = new SharedCounters({ redis: client, instanceId, log, now, keys: redisKeys });
  const deploymentUsage = new SharedDeploymentUsage(client, redisKeys, now);
  subscriber.subscribe(redisKeys.reclaim, redisKeys.freed, redisKeys.cooldowns).catch(() => {});
  subscriber.on("message", (channel, text) => {
    if (channel === redisKeys.reclaim) counters.reclaimed(text);
    else if (channel === redisKeys.freed) counters.freed(text);
    else if (channel === redisKeys.cooldowns) deploymentUsage.heard(text);
  });
  // The cooldowns other instances decided before this one listened (or while it could not hear them).
  subscriber.on("ready", () => void deploymentUsage.loadCooldowns());
  void deploymentUsage.loadCooldowns();
  let published = 0;
  /** An invalidation could not be published: once Redis is back, every other instance is told to forget everything. */
  let missed = false;
  const send = (message: Invalidation) => {
    published++;
    client.publish(redisKeys.invalidations, JSON.stringify({ ...message, from: instanceId })).catch((error) => {
      missed = true;
      log.warn("invalidation not published (redis unreachable); sent as a full invalidation when it is back", { error: String(error) });
    });
  };
  client.on("ready", () => {
    if (!missed) return;
    missed = false;
    send({ kind: "all" });
  });

  return {
    counters,
    deploymentUsage,
    publish: send,
    subscribe(handler) {
      subscriber.subscribe(redisKeys.invalidations).catch(() => {});
      // Connected again after a break (the first connection was made above): whatever was published
      // meanwhile never arrived, so everything cached is read again (and served while the database cannot answer).
      subscriber.on("ready", () => handler({ kind: "all", recheck: true }));
      subscriber.on("message", (channel, text) => {
        if (channel !== redisKeys.invalidations) return;
        try {
          // This instance's own changes were applied here when made: heard back a moment later, they would
          // drop what was read since (a key just served, needed again while the database cannot answer).
          const { from, ...message } = JSON.parse(text) as Invalidation & { from?: string };
          if (from !== instanceId) handler(message);
        } catch {
          log.warn("ignored a malformed invalidation message");
        }
      });
    },
    status: () => (counters.isDegraded || client.status !== "ready" ? "degraded" : "connected"),
    commands: () => counters.roundTrips + deploymentUsage.roundTrips + published,
    async close() {
      deploymentUsage.close();
      await counters.close();
      subscriber.disconnect();
      await client.quit().catch(() => client.disconnect());
    },
  };
}
