import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import postgres from "postgres";
import { hashKey } from "../../src/auth/keys";
import { type Harness, mockModelEntry } from "../helpers/gateway";
import { sharedPostgres } from "../helpers/services";
import { sharedRedis } from "../helpers/shared-redis";
import { until } from "../helpers/until";

// A per-model budget set where there was none (on a user, a team, a customer's budget, or on a key
// under an alias) while requests are in flight on another instance: that instance reads the records
// again to learn where their spend now goes. Requests that end before it has read them are
// recorded once it has, so their spend reaches the new budget's stored per-model row too (not only
// its counter, which a restart or a new period would make again from that row).

const CONFIG = `
model_list:${mockModelEntry("slow", 700)}${mockModelEntry("fast", 0, "one two")}
router_settings:
  model_group_alias: {"slow-alias": slow}
general_settings:
  master_key: sk-1234
`;

const redis = sharedRedis();
let url: string;
let hs: Harness[] = [];
let sql: postgres.Sql;

beforeAll(async () => {
  url = await (await sharedPostgres()).newDatabase();
  hs = [await redis.instance(CONFIG, url), await redis.instance(CONFIG, url)];
  sql = postgres(url, { max: 1, onnotice: () => {} });
}, 120_000);
afterAll(async () => {
  await sql.end();
  for (const h of hs) await h.close();
  for (const h of hs) await h.db.close();
});

const admin = async (path: string, body: unknown) => {
  const answer = await hs[0]!.call(path, body);
  expect(answer.status).toBe(200);
  return answer.json() as Promise<Record<string, any>>;
};
const generate = async (fields: Record<string, unknown>) => (await admin("/key/generate", fields)).key as string;
const ok = async (h: Harness, key: string, body: Record<string, unknown>, model: string) => {
  const answer = await h.chat(key, { max_tokens: 10, ...body }, model);
  await answer.text();
  expect(answer.status).toBe(200);
};

/**
 * The spend stored on a per-model row, once there is some: the requests' spend is recorded when their
 * instance has read the records again (it waited for its write, a second at most), and written after.
 */
async function storedOn(table: string, column: string, id: string, model: string): Promise<number> {
  let spend = 0;
  await until(`spend on ${table} for ${model}`, async () => {
    for (const h of hs) await h.flush();
    const [row] = await hs[0]!.db.query(`select spend from ${table} where ${column} = $1 and model = $2`, [id, model]);
    spend = Number(row?.spend ?? 0);
    return spend > 0;
  });
  return spend;
}

/** One request's cost on the slow model. */
async function oneRequest(): Promise<number> {
  const key = await generate({});
  await ok(hs[0]!, key, {}, "slow");
  for (const h of hs) await h.flush();
  const [row] = await hs[0]!.db.query("select spend from keys where token = $1", [hashKey(key)]);
  return Number(row!.spend);
}

/**
 * Four requests in flight on the second instance (the provider answers after 700 ms) when `set` gives
 * their scope a per-model budget on the first. The second instance reads the records again only after
 * writing what it has not written yet, and that write is held up (a lock on spend_logs) until the four
 * have ended: each ends before its instance knows where its spend now goes.
 */
async function endBeforeRead(key: string, body: Record<string, unknown>, set: () => Promise<unknown>, readHeldMs = 0): Promise<void> {
  const far = hs[1]!;
  const first = Promise.all(Array.from({ length: 4 }, () => far.chat(key, { max_tokens: 10, ...body }, "slow")));
  expect(await Promise.race([first.then(() => "answered"), Bun.sleep(400).then(() => "in flight")])).toBe("in flight");
  // Something of its own not written yet, so that it writes before it reads.
  await ok(far, await generate({}), {}, "fast");
  const lock = await sql.reserve();
  try {
    await lock`begin`;
    await lock`lock table spend_logs in access exclusive mode`;
    const recorded = far.gateway.spend.progress.recorded();
    await set();
    const setAt = Date.now();
    // The records' read itself held up as well, for `readHeldMs`: a database that does not answer. (On
    // a table the read takes in and the held write does not, or the two would deadlock.)
    if (readHeldMs > 0) await lock`lock table budgets in access exclusive mode`;
    const answers = await first;
    await Promise.all(answers.map((answer) => answer.text()));
    expect(answers.map((answer) => answer.status)).toEqual([200, 200, 200, 200]);
    if (readHeldMs > 0) {
      // Still held: their spend was recorded all the same, where it was planned, 3 s after the change.
      await Bun.sleep(setAt + 3_500 - Date.now());
      expect(far.gateway.spend.progress.recorded() - recorded).toBe(4);
      await Bun.sleep(setAt + readHeldMs - Date.now());
    }
  } finally {
    await lock`rollback`;
    lock.release();
  }
}

describe("a per-model budget set while requests in flight on another instance end before it reads the records again", () => {
  const perModel = (model: string, budget: number) => ({ [model]: { budget_limit: budget, time_period: "1h" } });
  const four = (cost: number) => (spend: number) => expect(Math.abs(spend - 4 * cost)).toBeLessThan(cost / 100);

  test("on a user, a team, a customer's budget, or a key under an alias: the requests' spend is stored on the new per-model row", async () => {
    const cost = await oneRequest();

    const user = `user-${crypto.randomUUID()}`;
    await admin("/user/new", { user_id: user });
    await endBeforeRead(await generate({ user_id: user }), {}, () => admin("/user/update", { user_id: user, model_max_budget: perModel("slow", 1) }));
    four(cost)(await storedOn("user_model_spend", "user_id", user, "slow"));

    const team = `team-${crypto.randomUUID()}`;
    await admin("/team/new", { team_id: team });
    await endBeforeRead(await generate({ team_id: team }), {}, () => admin("/team/update", { team_id: team, model_max_budget: perModel("slow", 1) }));
    four(cost)(await storedOn("team_model_spend", "team_id", team, "slow"));

    const customer = `customer-${crypto.randomUUID()}`;
    const budgetId = `budget-${crypto.randomUUID()}`;
    await admin("/budget/new", { budget_id: budgetId });
    await admin("/customer/new", { user_id: customer, budget_id: budgetId });
    await endBeforeRead(await generate({}), { user: customer }, () => admin("/budget/update", { budget_id: budgetId, model_max_budget: perModel("slow", 1) }));
    four(cost)(await storedOn("customer_model_spend", "user_id", customer, "slow"));

    const key = await generate({});
    await endBeforeRead(key, { model: "slow-alias" }, () => admin("/key/update", { key, model_max_budget: perModel("slow-alias", 1) }));
    four(cost)(await storedOn("key_model_spend", "token", hashKey(key), "slow-alias"));
  }, 60_000);

  test("a read of the records that does not come holds their spend back a few seconds at most: it is stored where it was planned", async () => {
    const cost = await oneRequest();
    const user = `user-${crypto.randomUUID()}`;
    await admin("/user/new", { user_id: user });
    const key = await generate({ user_id: user });
    await endBeforeRead(key, {}, () => admin("/user/update", { user_id: user, model_max_budget: perModel("slow", 1) }), 4_000);
    // Nothing lost: the key, its user and its own spend on the model have the four requests' cost.
    four(cost)(await storedOn("key_model_spend", "token", hashKey(key), "slow"));
    const [row] = await hs[0]!.db.query("select k.spend as key, u.spend as user from keys k join users u on u.user_id = k.user_id where k.token = $1", [hashKey(key)]);
    four(cost)(Number(row!.key));
    four(cost)(Number(row!.user));
  }, 60_000);
});
