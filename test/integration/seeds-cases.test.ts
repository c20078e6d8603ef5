import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { type RunningGateway, startBinary } from "../helpers/binary";
import { sharedPostgres } from "../helpers/services";

/**
 * Seed 003's customers: `max_end_user_budget` is the budget of a `user` the gateway has no budget for;
 * a customer given a budget of its own (a /budget/new tier, or inline limits) is held to that budget
 * alone, as LiteLLM holds it: a tier that sets only rate limits caps no spend.
 */
const CONFIG = (url: string) => `
model_list:
  - model_name: azure-gpt-3.5
    litellm_params: {model: mock/azure-gpt-3.5, mock_response: "Hello! I am a mock model.", input_cost_per_token: 0.00001, output_cost_per_token: 0.00002}
general_settings:
  master_key: sk-1234
  database_url: ${url}
litellm_settings:
  max_end_user_budget: 0.0001
`;

let gateway: RunningGateway;
beforeAll(async () => {
  gateway = await startBinary({ config: CONFIG(await (await sharedPostgres()).newDatabase()) });
}, 120_000);
afterAll(() => gateway.stop("SIGKILL"));

const post = async (path: string, body: unknown) => {
  const response = await fetch(`${gateway.url}${path}`, { method: "POST", headers: { authorization: "Bearer sk-1234", "content-type": "application/json" }, body: JSON.stringify(body) });
  return { status: response.status, body: (await response.json()) as any };
};
const ask = (user: string) => post("/chat/completions", { model: "azure-gpt-3.5", user, messages: [{ role: "user", content: "what time is it" }] });

describe("seed 003: customers with a budget of their own", () => {
  test("a customer without one is held to max_end_user_budget (each answer costs more than it)", async () => {
    expect((await ask("anonymous")).status).toBe(200);
    const refused = await ask("anonymous");
    expect(refused.status).toBe(400);
    expect(refused.body.error.message).toContain("End User=anonymous over budget");
  });

  test("a /budget/new tier with rate limits only caps no spend", async () => {
    expect((await post("/budget/new", { budget_id: "pro-tier", rpm_limit: 100 })).status).toBe(200);
    expect((await post("/customer/new", { user_id: "palantir", budget_id: "pro-tier" })).status).toBe(200);
    for (let i = 0; i < 3; i++) expect((await ask("palantir")).status).toBe(200);
  });

  test("nor does a budget of inline limits from /customer/new", async () => {
    expect((await post("/customer/new", { user_id: "inline-limits", tpm_limit: 100_000 })).status).toBe(200);
    for (let i = 0; i < 3; i++) expect((await ask("inline-limits")).status).toBe(200);
  });

  test("a tier's own max_budget holds, whatever max_end_user_budget says", async () => {
    expect((await post("/budget/new", { budget_id: "big-tier", max_budget: 0.0005 })).status).toBe(200);
    expect((await post("/customer/new", { user_id: "big", budget_id: "big-tier" })).status).toBe(200);
    let answered = 0;
    while ((await ask("big")).status === 200) answered++;
    expect(answered).toBeGreaterThan(1);
    const refused = await ask("big");
    expect(refused.body.error.message).toContain("End User=big over budget");
    expect(refused.body.error.message).toContain("Budget=0.0005");
  });
});
