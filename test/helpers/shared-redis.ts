import { afterAll, beforeAll } from "bun:test";
import { openDatabase } from "../../src/db";
import { silentLogger } from "../../src/log";
import { connectRedis, type RedisLink } from "../../src/redis";
import { type Harness, inProcessGateway } from "./gateway";
import { type RedisServer, sharedPostgres, startRedis } from "./services";

/**
 * A Redis server of a test file's own (started before its tests, stopped after them), and in-process
 * gateways that share their counters and admin invalidations through it, as instances of one deployment.
 */
export function sharedRedis() {
  let redis: RedisServer;
  const links: RedisLink[] = [];
  /** Instances made by `pair`, closed with the file's tests. */
  const owned: Harness[] = [];
  beforeAll(async () => {
    redis = await startRedis();
  }, 120_000);
  afterAll(async () => {
    for (const h of owned) {
      await h.close();
      await h.db.close();
    }
    for (const link of links) await link.close();
    await redis.stop();
  });
  return {
    /** An instance on the Postgres database at `url`; its test closes it and its database handle (`h.db`). */
    async instance(yaml: string, url: string): Promise<Harness> {
      const link = await connectRedis(redis.url, silentLogger);
      links.push(link);
      const h = await inProcessGateway(yaml, { db: await openDatabase({ url, dataDir: "" }), counters: link.counters, broadcast: (m) => link.publish(m) });
      link.subscribe((m) => h.gateway.invalidated(m));
      return h;
    },
    /** Two instances on a new Postgres database, closed after the file's tests. */
    async pair(yaml: string): Promise<[Harness, Harness]> {
      const url = await (await sharedPostgres()).newDatabase();
      const pair: [Harness, Harness] = [await this.instance(yaml, url), await this.instance(yaml, url)];
      owned.push(...pair);
      return pair;
    },
  };
}
