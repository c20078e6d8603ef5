import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import OpenAI from "openai";
import { type RunningGateway, startBinary, startOnPostgres } from "../helpers/binary";
import { PRICED_COST, type Upstream, pricedModels, startUpstream } from "../helpers/upstream";

/**
 * A customer's per-model budgets (its budget's model_max_budget, LiteLLM's end-user model budget) and
 * `litellm_settings.max_end_user_budget_id`, against the binary on real Postgres, with the fake OpenAI
 * upstream as the only stand-in.
 * Upstream usage: 10 prompt + 20 completion tokens; price 1e-6 in, 2e-6 out: every request costs 5e-5.
 */
const COST = PRICED_COST;
const MODELS = pricedModels;
let upstream: Upstream;

beforeAll(async () => {
  upstream = await startUpstream();
});
afterAll(() => upstream?.stop());

function clientOf(gateway: RunningGateway) {
  const call = async (method: "GET" | "POST", path: string, body?: unknown) => {
    const response = await fetch(`${gateway.url}${path}`, {
      method, headers: { authorization: "Bearer sk-1234", "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: response.status, body: await response.json() as any };
  };
  /** One chat completion through the openai client as customer `user`: the status (or the error's) and message. */
  const chat = async (user: string, model = "m"): Promise<{ status: number; message?: string }> => {
    const client = new OpenAI({ apiKey: "sk-1234", baseURL: `${gateway.url}/v1`, maxRetries: 0 });
    try {
      await client.chat.completions.create({ model, messages: [{ role: "user", content: "hi" }], user });
      return { status: 200 };
    } catch (error: any) {
      return { status: error.status ?? 0, message: error.error?.message ?? error.message };
    }
  };
  return { post: (path: string, body: unknown) => call("POST", path, body), get: (path: string) => call("GET", path), chat };
}

/** The binary with the two models on a new Postgres database, `settings` added to its config. */
async function onPostgres(settings = ""): Promise<RunningGateway> {
  return (await startOnPostgres(MODELS(upstream.url), settings)).gateway;
}

/** Polls until `read` gives what `done` accepts (spend is written in batches, a few times a second). */
async function eventually<T>(read: () => Promise<T>, done: (value: T) => boolean, ms = 5000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const value = await read();
    if (done(value) || Date.now() > end) return value;
    await Bun.sleep(100);
  }
}

describe("a customer's model_max_budget", () => {
  let gateway: RunningGateway;
  let api: ReturnType<typeof clientOf>;
  beforeAll(async () => {
    gateway = await onPostgres();
    api = clientOf(gateway);
  }, 120_000);
  afterAll(async () => {
    await gateway?.stop("SIGTERM");
  });

  test("is enforced per model, as LiteLLM enforces an end user's model budget", async () => {
    const made = await api.post("/customer/new", { user_id: "cust-mmb", model_max_budget: { m: { budget_limit: COST / 10, time_period: "1d" } } });
    expect(made.status).toBe(200);
    expect(made.body.litellm_budget_table.model_max_budget.m.budget_limit).toBe(COST / 10);
    // The first request may pass (its own estimate need not fit); the budget is then spent 10 times over.
    expect((await api.chat("cust-mmb")).status).toBe(200);
    const second = await api.chat("cust-mmb");
    expect(second.status).toBe(400);
    expect(second.message).toContain("ExceededBudget: End User=cust-mmb exceeded budget for model=m");
    // Another model is not held to m's budget, and the customer's spend in all counts both.
    expect((await api.chat("cust-mmb", "other")).status).toBe(200);
    const info = await eventually(() => api.get("/customer/info?end_user_id=cust-mmb"), (r) => r.body.spend >= 2 * COST * 0.999);
    expect(info.body.spend).toBeCloseTo(2 * COST, 12);
    // Its spend per model is kept for the model its budget holds it to only.
    expect(info.body.model_spend).toEqual({ m: COST });
  });

  test("a shared budget's model_max_budget (budget_id from /budget/new) holds its customers too", async () => {
    expect((await api.post("/budget/new", { budget_id: "tier-mmb", model_max_budget: { m: { max_budget: COST / 10, budget_duration: "1d" } } })).status).toBe(200);
    expect((await api.post("/customer/new", { user_id: "cust-mmb2", budget_id: "tier-mmb" })).status).toBe(200);
    expect((await api.post("/customer/new", { user_id: "cust-mmb3", budget_id: "tier-mmb" })).status).toBe(200);
    expect((await api.chat("cust-mmb2")).status).toBe(200);
    expect((await api.chat("cust-mmb2")).status).toBe(400);
    // Each customer on the budget has its own spend per model.
    expect((await api.chat("cust-mmb3")).status).toBe(200);
  });

  test("survives a restart: the spend per model is read back from the database", async () => {
    expect((await api.post("/customer/new", { user_id: "cust-restart", model_max_budget: { m: { budget_limit: COST / 10, time_period: "30d" } } })).status).toBe(200);
    expect((await api.chat("cust-restart")).status).toBe(200);
    await eventually(() => api.get("/customer/info?end_user_id=cust-restart"), (r) => r.body.model_spend?.m > 0);
    const config = await Bun.file(gateway.configPath).text();
    await gateway.stop("SIGTERM");
    gateway = await startBinary({ config });
    api = clientOf(gateway);
    expect((await api.chat("cust-restart")).status).toBe(400);
  }, 60_000);

  test("deleting a customer drops its spend per model: made again, it starts from nothing", async () => {
    expect((await api.post("/customer/new", { user_id: "cust-gone", model_max_budget: { m: { budget_limit: COST / 10, time_period: "1d" } } })).status).toBe(200);
    expect((await api.chat("cust-gone")).status).toBe(200);
    await eventually(() => api.get("/customer/info?end_user_id=cust-gone"), (r) => r.body.model_spend?.m > 0);
    expect((await api.post("/customer/delete", { user_ids: ["cust-gone"] })).status).toBe(200);
    expect((await api.post("/customer/new", { user_id: "cust-gone", model_max_budget: { m: { budget_limit: COST / 10, time_period: "1d" } } })).status).toBe(200);
    expect((await api.get("/customer/info?end_user_id=cust-gone")).body.model_spend).toEqual({});
    expect((await api.chat("cust-gone")).status).toBe(200);
  });

  test("a budget per model added by /customer/update holds from the next request", async () => {
    expect((await api.post("/customer/new", { user_id: "cust-upd" })).status).toBe(200);
    expect((await api.chat("cust-upd")).status).toBe(200);
    expect((await api.post("/customer/update", { user_id: "cust-upd", model_max_budget: { m: { budget_limit: COST / 10, time_period: "1d" } } })).status).toBe(200);
    expect((await api.chat("cust-upd")).status).toBe(200);
    expect((await api.chat("cust-upd")).status).toBe(400);
  });
});

describe("litellm_settings.max_end_user_budget_id (a /budget/new budget every customer without one is held to)", () => {
  let gateway: RunningGateway;
  let api: ReturnType<typeof clientOf>;
  beforeAll(async () => {
    gateway = await onPostgres("litellm_settings:\n  max_end_user_budget_id: default-tier\n  max_end_user_budget: 1\n");
    api = clientOf(gateway);
  }, 120_000);
  afterAll(async () => {
    await gateway?.stop("SIGTERM");
  });

  test("a budget that does not exist is warned about at start, and holds no customer to anything", async () => {
    await gateway.waitForOutput(/max_end_user_budget_id: budget "default-tier" does not exist/);
    expect(gateway.output()).not.toContain("max_end_user_budget_id: not supported by litegate");
    // max_end_user_budget still holds them.
    expect((await api.chat("walk-in-0")).status).toBe(200);
    expect((await api.chat("walk-in-0")).status).toBe(200);
  });

  test("once made, a customer with no budget of its own is held to its max_budget (a customer seen before too)", async () => {
    expect((await api.post("/budget/new", { budget_id: "default-tier", max_budget: COST / 10 })).status).toBe(200);
    expect((await api.chat("walk-in")).status).toBe(200);
    const second = await api.chat("walk-in");
    expect(second.status).toBe(400);
    expect(second.message).toContain("ExceededBudget: End User=walk-in over budget");
    expect((await api.chat("walk-in-0")).status).toBe(400);
    // A customer with a budget of its own is held to that one.
    expect((await api.post("/customer/new", { user_id: "own-budget", max_budget: 1 })).status).toBe(200);
    expect((await api.chat("own-budget")).status).toBe(200);
    expect((await api.chat("own-budget")).status).toBe(200);
    // LiteLLM shows the customer's own budget only.
    expect((await api.get("/customer/info?end_user_id=walk-in")).body.litellm_budget_table).toBeNull();
  });

  test("its limits and model_max_budget apply too, and an update of it holds at once", async () => {
    expect((await api.post("/budget/update", { budget_id: "default-tier", max_budget: 1, rpm_limit: 1 })).status).toBe(200);
    expect((await api.chat("walk-in-2")).status).toBe(200);
    const limited = await api.chat("walk-in-2");
    expect(limited.status).toBe(429);
    expect(limited.message).toContain("end user walk-in-2");
    expect((await api.post("/budget/update", { budget_id: "default-tier", rpm_limit: null, model_max_budget: { other: { budget_limit: COST / 10, time_period: "1d" } } })).status).toBe(200);
    expect((await api.chat("walk-in-3", "other")).status).toBe(200);
    expect((await api.chat("walk-in-3", "other")).status).toBe(400);
    expect((await api.chat("walk-in-3", "m")).status).toBe(200);
  });

  test("deleted, it holds no customer any more (max_end_user_budget does again)", async () => {
    expect((await api.post("/budget/update", { budget_id: "default-tier", max_budget: COST / 10, model_max_budget: {} })).status).toBe(200);
    expect((await api.chat("walk-in")).status).toBe(400);
    expect((await api.post("/budget/delete", { id: "default-tier" })).status).toBe(200);
    expect((await api.chat("walk-in")).status).toBe(200);
  });
});
