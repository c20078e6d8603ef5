import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { hashKey } from "../../src/auth/keys";
import { type Database, openDatabase } from "../../src/db";
import { MOCK_CONFIG, inProcessGateway } from "../helpers/gateway";
import { type PostgresServer, startPostgres } from "../helpers/services";
import { until } from "../helpers/until";

type Harness = Awaited<ReturnType<typeof inProcessGateway>>;

let pg: PostgresServer;
const databases: Database[] = [];
beforeAll(async () => {
  pg = await startPostgres();
}, 120_000);
afterAll(async () => {
  for (const db of databases) await db.close();
  await pg.stop();
});

for (const engine of ["PGlite", "Postgres"] as const) {
  describe(`the key cache after its ttl (${engine})`, () => {
    let h: Harness;
    beforeAll(async () => {
      const db = engine === "Postgres" ? await openDatabase({ url: await pg.newDatabase(), dataDir: "" }) : undefined;
      if (db) databases.push(db);
      h = await inProcessGateway(MOCK_CONFIG + "\n  key_cache_ttl_seconds: 60\n", { db });
    }, 120_000);
    afterAll(() => h.close());

    test("stale keys are served at once, then reloaded together in one statement: changes made in the database show", async () => {
      const keys = await Promise.all([h.createKey(), h.createKey(), h.createKey()]);
      for (const key of keys) expect((await h.chat(key)).status).toBe(200);
      // Changed behind the gateway's back (no admin call, so no invalidation): only the ttl brings it in.
      await h.db.query("update keys set blocked = true where token = $1", [hashKey(keys[0]!)]);
      await h.db.query("delete from keys where token = $1", [hashKey(keys[1]!)]);
      expect((await h.chat(keys[0]!)).status).toBe(200); // still fresh in the cache

      h.clock.advance(61_000);
      const before = h.db.statements();
      // Each stale key answers without waiting for the database.
      for (const key of keys) expect((await h.chat(key)).status).toBe(200);
      expect(h.db.statements()).toBe(before);
      await until("the batched reload", () => h.db.statements() > before);
      await Bun.sleep(50);
      expect(h.db.statements() - before).toBe(1);

      expect((await h.chat(keys[0]!)).status).toBe(403); // blocked, as the database now says
      const deleted = await h.chat(keys[1]!);
      expect(deleted.status).toBe(401);
      expect(((await deleted.json()) as any).error.type).toBe("auth_error");
      expect((await h.chat(keys[2]!)).status).toBe(200);
    });

    test("an admin change is seen at once, stale or not (the cache entry is dropped, not left to its ttl)", async () => {
      const created = await h.call("/key/generate", { max_budget: 10 });
      const { key } = (await created.json()) as any;
      expect((await h.chat(key)).status).toBe(200);
      h.clock.advance(61_000);
      expect((await h.call("/key/block", { key })).status).toBe(200);
      expect((await h.chat(key)).status).toBe(403);
    });
  });
}

describe("a key read again before its spend is written", () => {
  test("x-litellm-key-spend still counts what this instance charged it (a key without a budget, pushed out of a cache of one)", async () => {
    const h = await inProcessGateway(`${MOCK_CONFIG}  key_cache_size: 1\n`);
    try {
      const [key, other] = [await h.createKey(), await h.createKey()];
      const seen: number[] = [];
      for (let i = 0; i < 4; i++) {
        seen.push(Number((await h.chat(key)).headers.get("x-litellm-key-spend")));
        expect((await h.chat(other)).status).toBe(200); // takes the only place: the next request reads the key again
      }
      // Nothing written yet (the harness writes on flush only): each count comes from this instance.
      expect(seen[0]).toBeGreaterThan(0);
      for (let i = 1; i < 4; i++) expect(seen[i]).toBeCloseTo((i + 1) * seen[0]!, 12);
      await h.flush();
      expect(Number((await h.chat(key)).headers.get("x-litellm-key-spend"))).toBeCloseTo(5 * seen[0]!, 12);
    } finally {
      await h.close();
    }
  });
});
