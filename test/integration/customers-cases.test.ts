import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { type Harness, MOCK_CONFIG, gatewayFor, inProcessGateway, oneModelConfig } from "../helpers/gateway";
import { sharedPostgres } from "../helpers/services";
import { sharedRedis } from "../helpers/shared-redis";
import { until } from "../helpers/until";
import { startUpstream } from "../helpers/upstream";

// Customers (the `user` of requests) through their whole life, with requests in flight at each admin change.

// The provider answers after 700 ms: requests are in flight while the admin changes are made.
const upstream = await startUpstream({ firstByteDelayMs: 700 });
afterAll(() => upstream.stop());
const CONFIG = oneModelConfig(upstream.url, 0.001, 0.001);

const redis = sharedRedis();

/** One gateway on its own counters, or two sharing Postgres and Redis. */
async function gateways(counters: "local" | "redis"): Promise<Harness[]> {
  if (counters === "local") return [await inProcessGateway(CONFIG)];
  const url = await (await sharedPostgres()).newDatabase();
  return [await redis.instance(CONFIG, url), await redis.instance(CONFIG, url)];
}

/** A request of `user` sent on `h`, once the provider has it (admitted, its plan made); its answer to come. */
async function inFlight(h: Harness, user: string): Promise<{ answer: Promise<Response> }> {
  const sent = upstream.requests.length;
  const answer = h.chat("sk-1234", { user }, "m");
  await until("the request reaches the provider", () => upstream.requests.length > sent);
  return { answer };
}

for (const counters of ["local", "redis"] as const) describe(`a customer deleted with a request in flight (${counters} counters)`, () => {
  let hs: Harness[] = [];
  beforeAll(async () => {
    hs = await gateways(counters);
  }, 120_000);
  afterAll(async () => {
    for (const h of hs) await h.close();
    if (counters === "redis") for (const h of hs) await h.db.close();
  });
  const admin = async (path: string, body: unknown) => {
    const response = await hs[0]!.call(path, body);
    expect(`${path} ${response.status}`).toBe(`${path} 200`);
    return (await response.json()) as any;
  };
  const last = () => hs[hs.length - 1]!;

  test("made again under the same id, it has all its max_parallel_requests slots", async () => {
    await admin("/budget/new", { budget_id: "one-at-a-time", max_parallel_requests: 1 });
    await admin("/customer/new", { user_id: "again-slots", budget_id: "one-at-a-time" });
    const before = await inFlight(hs[0]!, "again-slots");
    await admin("/customer/delete", { user_ids: ["again-slots"] });
    await admin("/customer/new", { user_id: "again-slots", budget_id: "one-at-a-time" });
    await Bun.sleep(50);
    // The deleted customer's request still holds its slot; the customer made again has its own.
    const now = await last().chat("sk-1234", { user: "again-slots" }, "m");
    expect((await before.answer).status).toBe(200);
    expect(now.status).toBe(200);
  });

  test("made again under the same id, it starts with no spend: the deleted one's request in flight stays in its log row", async () => {
    await admin("/customer/new", { user_id: "again-spend", max_budget: 100 });
    const before = await inFlight(hs[0]!, "again-spend");
    await admin("/customer/delete", { user_ids: ["again-spend"] });
    await admin("/customer/new", { user_id: "again-spend", max_budget: 100 });
    expect((await before.answer).status).toBe(200);
    for (const h of hs) await h.flush();
    expect((await admin("/customer/info?end_user_id=again-spend", undefined)).spend).toBe(0);
    const logs = await hs[0]!.db.query("select spend from spend_logs where end_user = 'again-spend'");
    expect(logs.length).toBe(1);
    expect(logs[0]!.spend).toBeGreaterThan(0);
  });
});

for (const kind of ["pglite", "postgres"] as const) describe(`a customer's first reset sent to /customer/new (${kind})`, () => {
  const g = gatewayFor(kind, MOCK_CONFIG);
  const day = 86_400_000;

  for (const [name, budget] of [["an inline budget", { max_budget: 1e-9, budget_duration: "30d" }], ["a shared budget", { budget_id: "monthly" }]] as const) {
    test(`with ${name}, is when its spend first resets (it was ignored: the period ran its whole duration)`, async () => {
      if ("budget_id" in budget) expect((await g.json("/budget/new", { budget_id: "monthly", max_budget: 1e-9, budget_duration: "30d" })).status).toBe(200);
      const user = `first-reset-${"budget_id" in budget ? "shared" : "inline"}`;
      const first = new Date(g.h.clock.now() + day);
      const made = await g.json("/customer/new", { user_id: user, ...budget, budget_reset_at: first.toISOString() });
      expect(made.status).toBe(200);
      expect(made.body.budget_reset_at).toBe(first.toISOString());
      expect((await g.h.chat("sk-1234", { user })).status).toBe(200);
      expect((await g.h.chat("sk-1234", { user })).status).toBe(400);
      // A day and an hour on (not thirty days): a new period.
      g.h.clock.advance(day + 3_600_000);
      expect((await g.h.chat("sk-1234", { user })).status).toBe(200);
      expect((await g.json(`/customer/info?end_user_id=${user}`)).body.budget_reset_at).toBe(new Date(first.getTime() + 30 * day).toISOString());
    });
  }
});
