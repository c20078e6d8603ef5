import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { hashKey } from "../../src/auth/keys";
import { type Harness, inProcessGateway, mockModelEntry } from "../helpers/gateway";
import { sharedPostgres } from "../helpers/services";
import { sharedRedis } from "../helpers/shared-redis";

// An admin change that starts a budget's counter again (a new duration, a spend set, a new per-model
// period) while requests are in flight: their reservations pass to the new counter and they settle
// there. Made again from the stored spend alone, the counter let the budget be spent a second time by
// what was in flight, whose cost reaches the database only after it ends.

const CUSTOMERS_DEFAULT = "customers-default";

const CONFIG = `
model_list:${mockModelEntry("slow", 700)}
router_settings:
  model_group_alias: {"slow-alias": slow}
general_settings:
  master_key: sk-1234
litellm_settings:
  # Made by a test below, the last of each set: before it, customers have no budget unless given one.
  max_end_user_budget_id: ${CUSTOMERS_DEFAULT}
`;

const redis = sharedRedis();

/** One gateway on its own counters, or two sharing Postgres and Redis. */
async function gateways(counters: "local" | "redis"): Promise<Harness[]> {
  if (counters === "local") return [await inProcessGateway(CONFIG)];
  const url = await (await sharedPostgres()).newDatabase();
  return [await redis.instance(CONFIG, url), await redis.instance(CONFIG, url)];
}

for (const counters of ["local", "redis"] as const) describe(`a budget counter started again with requests in flight (${counters} counters)`, () => {
  let hs: Harness[] = [];
  beforeAll(async () => {
    hs = await gateways(counters);
  }, 120_000);
  afterAll(async () => {
    for (const h of hs) await h.close();
    if (counters === "redis") for (const h of hs) await h.db.close();
  });

  /** `count` requests to one instance; resolves once each was admitted or refused (the bodies later). */
  async function burst(h: Harness, key: string, count: number) {
    const answers = await Promise.all(Array.from({ length: count }, () => h.chat(key, { max_tokens: 10 }, "slow")));
    expect(answers.every((a) => a.status === 200 || a.status === 400 || a.status === 429)).toBe(true);
    return { admitted: answers.filter((a) => a.status === 200).length, done: Promise.all(answers.map((a) => a.text())) };
  }

  /** The cost of one request, measured on a key of its own. */
  async function oneRequest(): Promise<number> {
    const key = await hs[0]!.createKey();
    expect((await hs[0]!.chat(key, { max_tokens: 10 }, "slow").then(async (r) => (await r.text(), r.status)))).toBe(200);
    return spendOf(key);
  }

  async function spendOf(key: string): Promise<number> {
    for (const h of hs) await h.flush();
    const [row] = await hs[0]!.db.query("select spend from keys where token = $1", [hashKey(key)]);
    return Number(row!.spend);
  }

  const admin = async (path: string, body: unknown) => expect((await hs[0]!.call(path, body)).status).toBe(200);
  const regenerate = async (key: string) => {
    const answer = await hs[0]!.call("/key/regenerate", { key });
    expect(answer.status).toBe(200);
    return ((await answer.json()) as { key: string }).key;
  };

  /**
   * A first burst is admitted up to the budget and held in flight (the provider answers after 700 ms)
   * while `change` runs (on the first instance); a second burst follows at once. Both bursts go to the
   * instance `on`: with Redis, the second one, whose counters the change reaches by pub/sub.
   */
  async function throughChange(fields: Record<string, unknown>, change: (key: string) => Promise<string | void>, on: 0 | 1) {
    const h = hs[Math.min(on, hs.length - 1)]!;
    const made = await hs[0]!.call("/key/generate", fields);
    expect(made.status).toBe(200);
    const { key } = (await made.json()) as { key: string };
    const first = burst(h, key, 12);
    // The first burst's admissions are decided well before its answers come.
    expect(await Promise.race([first.then(() => "answered"), Bun.sleep(400).then(() => "in flight")])).toBe("in flight");
    // A regeneration gives the key another secret: the second burst uses it.
    const next = (await change(key)) ?? key;
    // The change reached every instance (pub/sub takes a few ms).
    await Bun.sleep(50);
    const second = await burst(h, next, 12);
    await Promise.all([second.done, (await first).done]);
    expect((await first).admitted).toBe(4);
    return { key: next, second: second.admitted };
  }

  /** A key with a budget of 4 requests spends at most 5 through `change`, made while 4 are in flight. */
  async function heldThrough(fields: (budget: number) => Record<string, unknown>, change: (key: string, budget: number) => Promise<string | void>, on: 0 | 1) {
    const cost = await oneRequest();
    const budget = 4 * cost;
    const { key, second } = await throughChange(fields(budget), (key) => change(key, budget), on);
    expect(second).toBeLessThanOrEqual(1);
    expect(await spendOf(key)).toBeLessThanOrEqual(budget + cost * 1.01);
  }

  /**
   * Eight requests in flight on a scope with no budget (the provider answers after 700 ms); a budget of
   * four requests is set meanwhile (on the first instance), and a second burst follows on instance `on`:
   * what is in flight already fills the new budget, so none of it is admitted. Returns one request's cost.
   */
  async function setWhileInFlight(key: string, body: Record<string, unknown>, set: (budget: number) => Promise<void>, on: 0 | 1) {
    const cost = await oneRequest();
    const h = hs[Math.min(on, hs.length - 1)]!;
    const send = (count: number) => Promise.all(Array.from({ length: count }, () => h.chat(key, { max_tokens: 10, ...body }, "slow")));
    const first = send(8);
    expect(await Promise.race([first.then(() => "answered"), Bun.sleep(400).then(() => "in flight")])).toBe("in flight");
    await set(4 * cost);
    await Bun.sleep(50);
    const second = await send(12);
    const statuses = [...(await first).map((r) => r.status), ...second.map((r) => r.status)];
    await Promise.all([...(await first), ...second].map((r) => r.text()));
    expect(statuses.filter((status) => status === 200).length).toBe(8);
    return cost;
  }

  test("a key's max_budget set where there was none: the requests in flight count against it", async () => {
    const made = (await (await hs[0]!.call("/key/generate", {})).json()) as { key: string };
    await setWhileInFlight(made.key, {}, (budget) => admin("/key/update", { key: made.key, max_budget: budget }), 1);
  });

  test("a team's and a customer's max_budget set where there was none: the requests in flight count against it", async () => {
    const team = `team-${crypto.randomUUID()}`;
    await admin("/team/new", { team_id: team });
    const made = (await (await hs[0]!.call("/key/generate", { team_id: team })).json()) as { key: string };
    await setWhileInFlight(made.key, {}, (budget) => admin("/team/update", { team_id: team, max_budget: budget }), 1);
    const customer = `customer-${crypto.randomUUID()}`;
    await admin("/customer/new", { user_id: customer });
    const other = (await (await hs[0]!.call("/key/generate", {})).json()) as { key: string };
    await setWhileInFlight(other.key, { user: customer }, (budget) => admin("/customer/update", { user_id: customer, max_budget: budget }), 1);
  });

  test("a per-model budget set on a key where there was none: the requests in flight count against it", async () => {
    const made = (await (await hs[0]!.call("/key/generate", {})).json()) as { key: string };
    await setWhileInFlight(made.key, {}, (budget) => admin("/key/update", { key: made.key, model_max_budget: { slow: { budget_limit: budget, time_period: "1h" } } }), 1);
  });

  test("a per-model budget set on a user, a team, a customer's budget, or on a key under the alias its requests use, where there was none: the requests in flight count, and their spend is kept there", async () => {
    const storedOn = async (table: string, column: string, id: string, model: string) => {
      for (const h of hs) await h.flush();
      const [row] = await hs[0]!.db.query(`select spend from ${table} where ${column} = $1 and model = $2`, [id, model]);
      return Number(row?.spend ?? 0);
    };
    const perModel = (model: string, budget: number) => ({ [model]: { budget_limit: budget, time_period: "1h" } });
    const generate = async (fields: Record<string, unknown>) => ((await (await hs[0]!.call("/key/generate", fields)).json()) as { key: string }).key;
    // The eight in flight, and only they: the burst after the change is refused.
    const eight = (cost: number) => (spend: number) => expect(Math.abs(spend - 8 * cost)).toBeLessThan(cost / 100);

    const user = `user-${crypto.randomUUID()}`;
    await admin("/user/new", { user_id: user });
    let cost = await setWhileInFlight(await generate({ user_id: user }), {}, (budget) => admin("/user/update", { user_id: user, model_max_budget: perModel("slow", budget) }), 1);
    eight(cost)(await storedOn("user_model_spend", "user_id", user, "slow"));

    const team = `team-${crypto.randomUUID()}`;
    await admin("/team/new", { team_id: team });
    cost = await setWhileInFlight(await generate({ team_id: team }), {}, (budget) => admin("/team/update", { team_id: team, model_max_budget: perModel("slow", budget) }), 1);
    eight(cost)(await storedOn("team_model_spend", "team_id", team, "slow"));

    const customer = `customer-${crypto.randomUUID()}`;
    const budgetId = `budget-${crypto.randomUUID()}`;
    await admin("/budget/new", { budget_id: budgetId });
    await admin("/customer/new", { user_id: customer, budget_id: budgetId });
    cost = await setWhileInFlight(await generate({}), { user: customer }, (budget) => admin("/budget/update", { budget_id: budgetId, model_max_budget: perModel("slow", budget) }), 1);
    eight(cost)(await storedOn("customer_model_spend", "user_id", customer, "slow"));

    const key = await generate({});
    cost = await setWhileInFlight(key, { model: "slow-alias" }, (budget) => admin("/key/update", { key, model_max_budget: perModel("slow-alias", budget) }), 1);
    eight(cost)(await storedOn("key_model_spend", "token", hashKey(key), "slow-alias"));
  });

  test("a key moved onto a budget (budget_id) where it had none, and a team's member budget set where there was none: the requests in flight count", async () => {
    const made = (await (await hs[0]!.call("/key/generate", {})).json()) as { key: string };
    const budgetId = `budget-${crypto.randomUUID()}`;
    await setWhileInFlight(made.key, {}, async (budget) => {
      await admin("/budget/new", { budget_id: budgetId, max_budget: budget, budget_duration: "1h" });
      await admin("/key/update", { key: made.key, budget_id: budgetId });
    }, 1);
    const team = `team-${crypto.randomUUID()}`;
    const user = `user-${crypto.randomUUID()}`;
    await admin("/team/new", { team_id: team });
    await admin("/team/member_add", { team_id: team, member: { role: "user", user_id: user } });
    const member = (await (await hs[0]!.call("/key/generate", { team_id: team, user_id: user })).json()) as { key: string };
    await setWhileInFlight(member.key, {}, (budget) => admin("/team/update", { team_id: team, team_member_budget: budget }), 1);
  });

  /**
   * Requests in flight on the last instance (as many as `fields` admit of 8) through `change` made on
   * the first; that instance takes no other request there, and the counter is made on the first
   * from the stored spend, which lacks them: they count all the same, before and after they end.
   */
  async function countedElsewhere(fields: (budget: number) => Record<string, unknown>, change: (key: string, budget: number) => Promise<void>) {
    const cost = await oneRequest();
    const made = (await (await hs[0]!.call("/key/generate", fields(4 * cost))).json()) as { key: string };
    const far = hs[hs.length - 1]!;
    const first = Promise.all(Array.from({ length: 8 }, () => far.chat(made.key, { max_tokens: 10 }, "slow")));
    expect(await Promise.race([first.then(() => "answered"), Bun.sleep(400).then(() => "in flight")])).toBe("in flight");
    await change(made.key, 4 * cost);
    await Bun.sleep(100);
    const next = await hs[0]!.chat(made.key, { max_tokens: 10 }, "slow");
    await next.text();
    expect(next.status).toBe(400);
    await Promise.all((await first).map((r) => r.text()));
    expect((await first).filter((r) => r.status === 200).length).toBeGreaterThanOrEqual(4);
    for (const h of hs) await h.flush();
    const later = await Promise.all(Array.from({ length: 6 }, () => hs[0]!.chat(made.key, { max_tokens: 10 }, "slow")));
    await Promise.all(later.map((r) => r.text()));
    expect(later.filter((r) => r.status === 200).length).toBe(0);
  }

  test("a budget set where there was none, or a spend set, with requests in flight on an instance that takes no other request there: they count", async () => {
    await countedElsewhere(() => ({}), (key, budget) => admin("/key/update", { key, max_budget: budget }));
    await countedElsewhere((budget) => ({ max_budget: budget }), (key) => admin("/key/update", { key, spend: 0 }));
  });

  test("a key moved onto a budget with a duration while requests are in flight: its stored spend keeps their cost", async () => {
    const cost = await oneRequest();
    const budgetId = `budget-${crypto.randomUUID()}`;
    await admin("/budget/new", { budget_id: budgetId, max_budget: 20 * cost, budget_duration: "1h" });
    const made = (await (await hs[0]!.call("/key/generate", {})).json()) as { key: string };
    const h = hs[hs.length - 1]!;
    const first = burst(h, made.key, 4);
    await Bun.sleep(300);
    await admin("/key/update", { key: made.key, budget_id: budgetId });
    await (await first).done;
    for (const each of hs) await each.flush(); // their cost written first, then the requests of the budget's period
    const second = await burst(h, made.key, 4);
    await second.done;
    expect((await first).admitted + second.admitted).toBe(8);
    for (const each of hs) await each.flush();
    expect(await spendOf(made.key)).toBeCloseTo(8 * cost, 12);
  });

  test("a new budget_duration: the requests in flight still count against the budget", () =>
    heldThrough((budget) => ({ max_budget: budget, budget_duration: "1h" }), (key) => admin("/key/update", { key, budget_duration: "2h" }), 1));

  // The spend starts from 0 with the first burst's 4 requests still to come: the second may add at most one more.
  test("a spend set with requests in flight: their cost lands on top of it, and counts", () =>
    heldThrough((budget) => ({ max_budget: budget }), (key) => admin("/key/update", { key, spend: 0 }), 0));

  test("a per-model budget given another period: the requests in flight still count", () =>
    heldThrough((budget) => ({ model_max_budget: { slow: { budget_limit: budget, time_period: "1h" } } }),
      (key, budget) => admin("/key/update", { key, model_max_budget: { slow: { budget_limit: budget, time_period: "2h" } } }), 1));

  test("a regenerated key: the requests in flight under the old secret count against its budget", () =>
    heldThrough((budget) => ({ max_budget: budget }), (key) => regenerate(key), 1));

  test("a team's budget_duration changed: its members' requests in flight still count", async () => {
    const cost = await oneRequest();
    const budget = 4 * cost;
    const team = `team-${crypto.randomUUID()}`;
    await admin("/team/new", { team_id: team, max_budget: budget, budget_duration: "1h" });
    const { second } = await throughChange({ team_id: team }, () => admin("/team/update", { team_id: team, budget_duration: "2h" }), 0);
    for (const h of hs) await h.flush();
    const [row] = await hs[0]!.db.query("select spend from teams where team_id = $1", [team]);
    expect(second).toBeLessThanOrEqual(1);
    expect(Number(row!.spend)).toBeLessThanOrEqual(budget + cost * 1.01);
  });

  test("a regenerated key: the requests in flight under the old secret hold its parallel slots", async () => {
    const made = await hs[0]!.call("/key/generate", { max_parallel_requests: 2 });
    const { key } = (await made.json()) as { key: string };
    const h = hs[hs.length - 1]!;
    const first = burst(h, key, 2);
    await Bun.sleep(300);
    const regenerated = await hs[0]!.call("/key/regenerate", { key });
    const next = ((await regenerated.json()) as { key: string }).key;
    await Bun.sleep(50);
    // Both slots are still taken by the old secret's requests.
    const during = await h.chat(next, { max_tokens: 10 }, "slow");
    expect(during.status).toBe(429);
    expect((await first).admitted).toBe(2);
    await (await first).done;
    // They ended: their slots are the key's again.
    const after = await burst(h, next, 3);
    await after.done;
    expect(after.admitted).toBe(2);
  });

  test("a regenerated key: the requests in flight under the old secret on one instance hold its slots and budget on the others", async () => {
    const cost = await oneRequest();
    const made = await hs[0]!.call("/key/generate", { max_parallel_requests: 2, max_budget: 3 * cost });
    const { key } = (await made.json()) as { key: string };
    const first = burst(hs[hs.length - 1]!, key, 2);
    await Bun.sleep(300);
    const regenerated = await hs[0]!.call("/key/regenerate", { key });
    const next = ((await regenerated.json()) as { key: string }).key;
    await Bun.sleep(100);
    // The instance they run on takes no request under the new secret: the others count them all the same.
    const during = await hs[0]!.chat(next, { max_tokens: 10 }, "slow");
    await during.text();
    expect(during.status).toBe(429);
    expect((await first).admitted).toBe(2);
    await (await first).done;
    for (const h of hs) await h.flush();
    // Two of three requests' budget spent: one more fits.
    const after = await burst(hs[0]!, next, 2);
    await after.done;
    expect(after.admitted).toBe(1);
  });

  test("requests that end before any other arrives: their cost still counts, once, whether written yet or not", async () => {
    const cost = await oneRequest();
    for (const written of [false, true]) {
      const budget = 8 * cost;
      const h = hs[hs.length - 1]!;
      const made = await hs[0]!.call("/key/generate", { max_budget: budget });
      const { key } = (await made.json()) as { key: string };
      const first = burst(h, key, 4);
      await Bun.sleep(300);
      await admin("/key/update", { key, spend: 0 });
      // Nothing comes while they are in flight: no counter takes their reservations before they end.
      await (await first).done;
      expect((await first).admitted).toBe(4);
      // Written (the next counter's stored spend has them) or not yet (it adds them): 4 of 8 either way.
      if (written) for (const one of hs) await one.flush();
      const second = await burst(h, key, 8);
      await second.done;
      expect(second.admitted).toBeGreaterThanOrEqual(4);
      expect(second.admitted).toBeLessThanOrEqual(5);
    }
  });

  test("a key regenerated twice while a request is in flight: the request holds a slot of the newest secret, then frees it", async () => {
    for (const between of [false, true]) {
      const made = await hs[0]!.call("/key/generate", { max_parallel_requests: 2 });
      const { key } = (await made.json()) as { key: string };
      const h = hs[hs.length - 1]!;
      const first = h.chat(key, { max_tokens: 10 }, "slow");
      await Bun.sleep(200);
      const second = await regenerate(key);
      // A request under the second secret takes the other slot (and makes its counter) before the next regeneration.
      const middle = between ? h.chat(second, { max_tokens: 10 }, "slow") : null;
      if (middle) await Bun.sleep(100);
      const third = await regenerate(second);
      await Bun.sleep(50);
      const during = await h.chat(third, { max_tokens: 10 }, "slow");
      await during.text();
      expect(during.status).toBe(between ? 429 : 200);
      await (await first).text();
      await (await middle)?.text();
      // Nothing in flight: both slots are the key's again.
      const after = await burst(h, third, 3);
      await after.done;
      expect(after.admitted).toBe(2);
    }
  });

  test("the customers' default budget (max_end_user_budget_id) made where there was none, then given a per-model budget: a customer's requests in flight count against each", async () => {
    const made = (await (await hs[0]!.call("/key/generate", {})).json()) as { key: string };
    await setWhileInFlight(made.key, { user: `customer-${crypto.randomUUID()}` }, (budget) => admin("/budget/new", { budget_id: CUSTOMERS_DEFAULT, max_budget: budget }), 1);
    await admin("/budget/update", { budget_id: CUSTOMERS_DEFAULT, max_budget: 1000 });
    const customer = `customer-${crypto.randomUUID()}`;
    const other = (await (await hs[0]!.call("/key/generate", {})).json()) as { key: string };
    const cost = await setWhileInFlight(other.key, { user: customer }, (budget) =>
      admin("/budget/update", { budget_id: CUSTOMERS_DEFAULT, model_max_budget: { slow: { budget_limit: budget, time_period: "1h" } } }), 1);
    for (const h of hs) await h.flush();
    const [row] = await hs[0]!.db.query("select spend from customer_model_spend where user_id = $1 and model = 'slow'", [customer]);
    expect(Math.abs(Number(row?.spend ?? 0) - 8 * cost)).toBeLessThan(cost / 100);
    await admin("/budget/delete", { id: CUSTOMERS_DEFAULT });
  });
});
