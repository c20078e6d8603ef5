import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { type RunningGateway, startBinary } from "../helpers/binary";
import { type PostgresServer, type RedisServer, startPostgres, startRedis } from "../helpers/services";
import { type Upstream, startUpstream } from "../helpers/upstream";
import { configFor, newKey } from "../../chaos/scenarios";

/** Postgres and Redis in trouble under instances sharing them (real servers, the compiled binary). */
let pg: PostgresServer;
let redis: RedisServer;
let upstream: Upstream;
beforeAll(async () => {
  [pg, redis, upstream] = await Promise.all([startPostgres(), startRedis(), startUpstream()]);
}, 120_000);
/** Every gateway a test starts, stopped at the end even when its test failed midway. */
const started: RunningGateway[] = [];
const start = async (config: string) => {
  const gateway = await startBinary({ config });
  started.push(gateway);
  return gateway;
};
afterAll(async () => {
  for (const gateway of started) if (gateway.proc.exitCode === null) await gateway.stop("SIGKILL");
  pg.resume();
  redis.resume();
  await redis.stop();
  await pg.stop();
  upstream.stop();
});

const chat = async (g: RunningGateway, key: string, body: object = {}) => {
  const started = Date.now();
  const response = await fetch(`${g.url}/v1/chat/completions`, {
    method: "POST", headers: { authorization: `Bearer ${key}` }, signal: AbortSignal.timeout(30_000),
    body: JSON.stringify({ model: "m", messages: [{ role: "user", content: "hi" }], ...body }),
  });
  return { status: response.status, body: (await response.json()) as any, ms: Date.now() - started };
};
const admin = (g: RunningGateway, path: string, body: object) =>
  fetch(`${g.url}${path}`, { method: "POST", headers: { authorization: "Bearer sk-1234" }, body: JSON.stringify(body) }).then((r) => r.json() as Promise<any>);

describe("Postgres hung (a stalled server, or a cut network)", () => {
  test("a key the instance has not cached is answered 503 in the envelope within seconds, not held until Postgres answers", async () => {
    const config = configFor({ pg, redis, upstream }, await pg.newDatabase(), { request_timeout: 5 });
    const [a, b] = [await start(config), await start(config)];
    const known = await newKey(a, {});
    const other = await newKey(a, {});
    expect((await chat(a, known.key)).status).toBe(200);
    pg.pause();
    try {
      expect((await chat(a, known.key)).status).toBe(200);
      const [unknownKey, bogus] = await Promise.all([chat(b, other.key), chat(b, "sk-not-a-key")]);
      for (const answer of [unknownKey, bogus]) {
        expect(answer.status).toBe(503);
        expect(answer.body.error.type).toBe("service_unavailable");
        expect(answer.ms).toBeLessThan(8000);
      }
    } finally {
      pg.resume();
    }
    expect((await chat(b, other.key)).status).toBe(200);
    await Promise.all([a.stop(), b.stop()]);
  }, 60_000);
});

describe("Postgres hung, admin calls", () => {
  test("/key/generate is answered 503 in the envelope within seconds, as /key/info is, not held until Postgres answers", async () => {
    const config = configFor({ pg, redis, upstream }, await pg.newDatabase());
    const gateway = await start(config);
    const known = await newKey(gateway, {});
    expect((await chat(gateway, known.key)).status).toBe(200);
    const admin = (path: string, body: object) => fetch(`${gateway.url}${path}`, {
      method: "POST", headers: { authorization: "Bearer sk-1234" }, body: JSON.stringify(body), signal: AbortSignal.timeout(30_000),
    }).then(async (r) => ({ status: r.status, body: (await r.json()) as any }), (error) => ({ status: 0, body: String(error) }));
    pg.pause();
    try {
      // Spend not written yet: /key/regenerate waits for the spend writer first, whose flush hangs too.
      expect((await chat(gateway, known.key)).status).toBe(200);
      for (const [path, body] of [["/key/generate", {}], ["/key/update", { key: known.key, max_budget: 5 }], ["/key/regenerate", { key: known.key }]] as const) {
        const started = Date.now();
        const answer = await admin(path, body);
        expect(`${path} ${answer.status}`).toBe(`${path} 503`);
        expect(answer.body.error.type).toBe("service_unavailable");
        expect(answer.body.error.message).toContain("stopped answering");
        expect(Date.now() - started).toBeLessThan(15_000);
      }
    } finally {
      pg.resume();
    }
    // Postgres back: admin calls go through again, nothing held up behind the ones answered 503 (which
    // may have applied once it resumed, as their message says: the regenerate did here).
    expect((await admin("/key/generate", {})).status).toBe(200);
    await gateway.stop();
  }, 60_000);
});

describe("Redis restarted while Postgres is down", () => {
  test("cached keys are still served, and a customer past its budget is still refused", async () => {
    const config = configFor({ pg, redis, upstream }, await pg.newDatabase());
    const gateways = [await start(config), await start(config)];
    await admin(gateways[0]!, "/customer/new", { user_id: "acme", max_budget: 0.00001 });
    const { key } = await newKey(gateways[0]!, {});
    for (const g of gateways) expect((await chat(g, key)).status).toBe(200);
    // One request spends past the customer's budget (0.00005 > 0.00001); the next is refused.
    expect((await chat(gateways[0]!, key, { user: "acme" })).status).toBe(200);
    await Bun.sleep(500);
    for (const g of gateways) expect((await chat(g, key, { user: "acme" })).status).toBe(400);
    await pg.stop();
    try {
      await redis.stop();
      await redis.start();
      // The instances reconnect (within a second) and take it that they may have missed admin changes.
      await Bun.sleep(2500);
      for (const g of gateways) {
        const served = await chat(g, key);
        expect(`${served.status} ${served.body.error?.message ?? ""}`).toBe("200 ");
        const customer = await chat(g, key, { user: "acme" });
        expect(customer.status).toBe(400);
        expect(customer.body.error.type).toBe("budget_exceeded");
      }
    } finally {
      await pg.start();
    }
    await Promise.all(gateways.map((g) => g.stop()));
  }, 60_000);
});
