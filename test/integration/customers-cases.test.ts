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
async function inFlight(h: Harness, user: string, key = "sk-1234"): Promise<{ answer: Promise<Response> }> {
  const sent = upstream.requests.length;
  const answer = h.chat(key, { user }, "m");
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

  test("deleted, it is not made again by an admin change to the key its request in flight came with", async () => {
    const { key } = await admin("/key/generate", { max_budget: 10 });
    await admin("/customer/new", { user_id: "gone-for-good" });
    const before = await inFlight(hs[0]!, "gone-for-good", key);
    await admin("/customer/delete", { user_ids: ["gone-for-good"] });
    // The key's spend set: its counter starts again, and the requests in flight are counted on it.
    await admin("/key/update", { key, spend: 0 });
    expect((await before.answer).status).toBe(200);
    for (const h of hs) await h.flush();
    expect((await hs[0]!.call("/customer/info?end_user_id=gone-for-good")).status).toBe(404);
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

// Customers without a budget of their own are held to a millionth of a cent: one request uses it up.
const DEFAULT_CAP = `${MOCK_CONFIG}
litellm_settings:
  max_end_user_budget: 0.00000001
`;

for (const kind of ["pglite", "postgres"] as const) describe(`/customer/update sent fields that change nothing, as an admin screen saves every field (${kind})`, () => {
  const g = gatewayFor(kind, DEFAULT_CAP);

  test("nulls for a customer on no budget leave it held to max_end_user_budget (it got an empty budget of its own: no cap at all)", async () => {
    expect((await g.json("/customer/new", { user_id: "saved-nulls" })).status).toBe(200);
    const saved = await g.json("/customer/update", { user_id: "saved-nulls", alias: "Saved", blocked: false, max_budget: null, budget_duration: null, rpm_limit: null, tpm_limit: null });
    expect(saved).toMatchObject({ status: 200, body: { alias: "Saved", budget_id: null, litellm_budget_table: null } });
    expect((await g.h.chat("sk-1234", { user: "saved-nulls" })).status).toBe(200);
    expect((await g.h.chat("sk-1234", { user: "saved-nulls" })).status).toBe(400);
  });

  test("a shared budget's own values leave the customer on it: a change to the budget still reaches it", async () => {
    expect((await g.json("/budget/new", { budget_id: "saved-tier", max_budget: 0.00000001, rpm_limit: 100, budget_duration: "1d" })).status).toBe(200);
    expect((await g.json("/customer/new", { user_id: "saved-on-tier", budget_id: "saved-tier" })).status).toBe(200);
    const saved = await g.json("/customer/update", { user_id: "saved-on-tier", blocked: false, max_budget: 0.00000001, rpm_limit: 100, tpm_limit: null, budget_duration: "24h" });
    expect(saved).toMatchObject({ status: 200, body: { budget_id: "saved-tier" } });
    expect((await g.h.chat("sk-1234", { user: "saved-on-tier" })).status).toBe(200);
    expect((await g.h.chat("sk-1234", { user: "saved-on-tier" })).status).toBe(400);
    // The tier raised: its customers may spend again.
    expect((await g.json("/budget/update", { budget_id: "saved-tier", max_budget: 100 })).status).toBe(200);
    expect((await g.h.chat("sk-1234", { user: "saved-on-tier" })).status).toBe(200);
  });
});
