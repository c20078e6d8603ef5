import { afterAll, describe, expect, test } from "bun:test";
import { type Harness, MOCK_CONFIG, inProcessGateway } from "../helpers/gateway";
import { answerFault, generator } from "../helpers/random-input";
import { sharedRedis } from "../helpers/shared-redis";

/**
 * One customer, key, user, team or budget changed by eight calls at once, spread over two instances on
 * one Postgres (and over one instance on the embedded database), for 30 rounds: every answer is 2xx or
 * a clear 4xx, and what is stored stays whole (a customer's budget of its own is the one it is on, and
 * only one). Found by the random-input test: two changes of one customer at once answered 500, and so
 * did a budget deleted while a customer left it.
 */

type Call = [path: string, body: Record<string, unknown>];
interface Race {
  /** Makes (again) what the round's calls change; gives what they name. */
  setUp: (h: Harness) => Promise<Record<string, string>>;
  calls: ((named: Record<string, string>) => Call)[];
  /** What must hold once a round's calls are all answered. */
  afterwards?: (h: Harness) => Promise<void>;
}

const modelBudget = { mock: { budget_limit: 1, time_period: "1d" } };
const RACES: Record<string, Race> = {
  customer: {
    setUp: async (h) => {
      await h.call("/customer/new", { user_id: "c1", max_budget: 1 });
      return {};
    },
    calls: [
      () => ["/customer/update", { user_id: "c1", max_budget: "", blocked: false }], () => ["/customer/update", { user_id: "c1", max_budget: 2 }],
      () => ["/customer/update", { user_id: "c1", budget_id: "shared" }], () => ["/customer/update", { user_id: "c1", budget_id: null }],
      () => ["/customer/update", { user_id: "c1", max_budget: null }], () => ["/customer/update", { user_id: "c1", budget_duration: "1d" }],
      () => ["/customer/update", { user_id: "c1", spend: 0.5 }], () => ["/customer/update", { user_id: "c1", model_max_budget: modelBudget }],
      () => ["/customer/delete", { user_ids: ["c1"] }],
    ],
    afterwards: async (h) => {
      const [customer] = await h.db.query("select budget_id from end_users where user_id = 'c1'");
      const own = (await h.db.query("select budget_id from budgets where budget_id like 'customer:c1:%'")).map((row) => row.budget_id);
      expect(own).toEqual(customer?.budget_id?.startsWith("customer:c1:") ? [customer.budget_id] : []);
    },
  },
  key: {
    setUp: async (h) => ({ key: ((await (await h.call("/key/generate", { max_budget: 1 })).json()) as any).key }),
    calls: [
      ({ key }) => ["/key/update", { key, max_budget: 2 }], ({ key }) => ["/key/update", { key, budget_id: "shared" }], ({ key }) => ["/key/update", { key, budget_id: null }],
      ({ key }) => ["/key/update", { key, budget_duration: "1d" }], ({ key }) => ["/key/update", { key, spend: 0.3 }], ({ key }) => ["/key/update", { key, model_max_budget: modelBudget }],
      ({ key }) => ["/key/update", { key, duration: "1h" }], ({ key }) => ["/key/update", { key, max_budget: null, budget_duration: null }],
      ({ key }) => ["/key/regenerate", { key }], ({ key }) => ["/key/block", { key }], ({ key }) => ["/key/delete", { keys: [key] }],
    ],
  },
  user: {
    setUp: async (h) => {
      await h.call("/user/new", { user_id: "u1", max_budget: 1 });
      return {};
    },
    calls: [
      () => ["/user/update", { user_id: "u1", max_budget: 2 }], () => ["/user/update", { user_id: "u1", budget_duration: "1d" }], () => ["/user/update", { user_id: "u1", spend: 0.1 }],
      () => ["/user/update", { user_id: "u1", max_budget: null }], () => ["/user/update", { user_id: "u1", model_max_budget: modelBudget }],
      () => ["/user/update", { user_id: "u1", user_role: "proxy_admin" }], () => ["/user/delete", { user_ids: ["u1"] }],
    ],
  },
  team: {
    setUp: async (h) => {
      await h.call("/team/new", { team_id: "t1", max_budget: 1 });
      await h.call("/user/new", { user_id: "m1" });
      return {};
    },
    calls: [
      () => ["/team/update", { team_id: "t1", max_budget: 2 }], () => ["/team/update", { team_id: "t1", budget_duration: "1d" }], () => ["/team/update", { team_id: "t1", spend: 0.1 }],
      () => ["/team/update", { team_id: "t1", team_member_budget: 0.5 }], () => ["/team/update", { team_id: "t1", team_member_budget: null }],
      () => ["/team/member_add", { team_id: "t1", member: { role: "user", user_id: "m1" }, max_budget_in_team: 1 }],
      () => ["/team/member_update", { team_id: "t1", user_id: "m1", max_budget_in_team: 2 }], () => ["/team/member_delete", { team_id: "t1", user_id: "m1" }],
      () => ["/team/model/add", { team_id: "t1", models: ["slow"] }], () => ["/team/block", { team_id: "t1" }], () => ["/team/delete", { team_ids: ["t1"] }],
    ],
  },
  budget: {
    setUp: async (h) => {
      await h.call("/budget/new", { budget_id: "bx", max_budget: 1 });
      await h.call("/customer/new", { user_id: "cb", budget_id: "bx" });
      return {};
    },
    calls: [
      () => ["/budget/update", { budget_id: "bx", max_budget: 2 }], () => ["/budget/update", { budget_id: "bx", budget_duration: "1d" }],
      () => ["/budget/update", { budget_id: "bx", budget_duration: null }], () => ["/budget/update", { budget_id: "bx", model_max_budget: modelBudget }],
      () => ["/budget/delete", { id: "bx" }], () => ["/customer/update", { user_id: "cb", budget_id: "bx" }], () => ["/customer/update", { user_id: "cb", budget_id: "shared" }],
    ],
  },
};

/** `rounds` rounds of eight calls of `race` at once, round-robin over `instances`; the answers by status, and any 5xx. */
async function run(race: Race, instances: Harness[], rounds: number, seed: number) {
  const random = generator(seed);
  const statuses: Record<number, number> = {};
  const faults: string[] = [];
  for (let round = 0; round < rounds; round++) {
    const named = await race.setUp(instances[0]);
    const calls = Array.from({ length: 8 }, () => random.pick(race.calls)(named));
    const answers = await Promise.all(calls.map(([path, body], i) => instances[i % instances.length].call(path, body)));
    for (const [i, answer] of answers.entries()) {
      statuses[answer.status] = (statuses[answer.status] ?? 0) + 1;
      const text = await answer.text();
      const fault = answerFault(answer.status, text);
      if (fault) faults.push(`round ${round} ${calls[i][0]} ${JSON.stringify(calls[i][1])} → ${answer.status} ${fault}: ${text.slice(0, 200)}`);
    }
    await race.afterwards?.(instances[0]);
  }
  return { statuses, faults };
}

const shared = (h: Harness) => h.call("/budget/new", { budget_id: "shared", max_budget: 10, budget_duration: "1d" });

describe("the same thing changed by eight calls at once, over two instances on Postgres", () => {
  const redis = sharedRedis();
  const instances: Harness[] = [];

  for (const [name, race] of Object.entries(RACES)) {
    test(`${name}: every answer 2xx or a clear 4xx, and what is stored stays whole`, async () => {
      if (instances.length === 0) {
        instances.push(...(await redis.pair(MOCK_CONFIG)));
        expect((await shared(instances[0])).status).toBe(200);
      }
      const { statuses, faults } = await run(race, instances, name === "budget" ? 100 : 30, name.length * 7919);
      expect(faults).toEqual([]);
      // The rounds got past the lookups: changes landed, not only "not found" after a delete.
      expect(statuses[200] ?? 0).toBeGreaterThan(60);
    }, 120_000);
  }
});

describe("the same customer and budget changed by eight calls at once on the embedded database", () => {
  let h: Harness;
  afterAll(() => h?.close());

  test("every answer 2xx or a clear 4xx, and a customer's own budget is the one it is on", async () => {
    h = await inProcessGateway(MOCK_CONFIG);
    expect((await shared(h)).status).toBe(200);
    for (const name of ["customer", "budget"]) {
      const { statuses, faults } = await run(RACES[name]!, [h], 30, 1205);
      expect(faults).toEqual([]);
      expect(statuses[200] ?? 0).toBeGreaterThan(60);
    }
  }, 120_000);
});
