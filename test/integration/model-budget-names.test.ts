import { describe, expect, test } from "bun:test";
import { MOCK_CONFIG, inProcessGateway } from "../helpers/gateway";

// Per-model key budgets and limits keyed by the name a request uses: an alias (router_settings.model_group_alias)
// or a provider-prefixed name served by a wildcard entry, as LiteLLM looks them up.
const CONFIG = MOCK_CONFIG.replace("general_settings:", `  - model_name: "oa/*"
    litellm_params: {model: "mock/*", input_cost_per_token: 0.000001, output_cost_per_token: 0.000002}
general_settings:`) + `
router_settings:
  model_group_alias: {"gpt-4": mock}
`;

const TINY = { budget_limit: 1e-7, time_period: "1d" };

async function generate(h: Awaited<ReturnType<typeof inProcessGateway>>, body: Record<string, unknown>): Promise<string> {
  const response = await h.call("/key/generate", body);
  expect(response.status).toBe(200);
  return ((await response.json()) as any).key;
}

const statuses = async (h: Awaited<ReturnType<typeof inProcessGateway>>, key: string, model: string, n: number) => {
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push((await h.chat(key, {}, model)).status);
  return out;
};

describe("per-model key budgets by the name asked for", () => {
  test("a budget keyed by an alias or by the bare name of a prefixed one applies, its spend shown and kept under that name across a restart", async () => {
    const before = await inProcessGateway(CONFIG);
    let after: Awaited<ReturnType<typeof inProcessGateway>> | undefined;
    try {
      const byAlias = await generate(before, { model_max_budget: { "gpt-4": TINY } });
      const byBare = await generate(before, { model_max_budget: { ok: TINY } });
      const byGroup = await generate(before, { model_max_budget: { mock: TINY } });
      expect(await statuses(before, byAlias, "gpt-4", 2)).toEqual([200, 400]);
      expect(await statuses(before, byBare, "oa/ok", 2)).toEqual([200, 400]);
      expect(await statuses(before, byGroup, "gpt-4", 2)).toEqual([200, 400]);
      // The alias's own budget is the one entry charged: asked for by its group's name, the key is not limited.
      expect(await statuses(before, byAlias, "mock", 2)).toEqual([200, 200]);
      await before.flush();
      const info = async (g: typeof before, key: string) => ((await (await g.call(`/key/info?key=${key}`)).json()) as any).info.model_spend;
      expect(Object.keys(await info(before, byAlias)).sort()).toEqual(["gpt-4", "mock"]);
      expect(Object.keys(await info(before, byBare))).toEqual(["ok"]);
      await before.gateway.close();
      after = await inProcessGateway(CONFIG, { db: before.db });
      expect(await statuses(after, byAlias, "gpt-4", 1)).toEqual([400]);
      expect(await statuses(after, byBare, "oa/ok", 1)).toEqual([400]);
    } finally {
      await after?.gateway.close();
      await before.db.close();
    }
  });

  test("per-model rate limits keyed by an alias apply to it; keyed by the bare name, to the prefixed one", async () => {
    const h = await inProcessGateway(CONFIG);
    try {
      const byAlias = await generate(h, { metadata: { model_rpm_limit: { "gpt-4": 1 } } });
      expect(await statuses(h, byAlias, "gpt-4", 2)).toEqual([200, 429]);
      const byBare = await generate(h, { model_rpm_limit: { ok: 1 } });
      expect(await statuses(h, byBare, "oa/ok", 2)).toEqual([200, 429]);
      const inBudget = await generate(h, { model_max_budget: { "gpt-4": { budget_limit: 100, rpm_limit: 1 } } });
      expect(await statuses(h, inBudget, "gpt-4", 2)).toEqual([200, 429]);
      // An entry may hold limits alone, with no budget (LiteLLM's budget there is optional too).
      const limitsOnly = await h.call("/key/generate", { model_max_budget: { "gpt-4": { rpm_limit: 1 } } });
      expect(limitsOnly.status).toBe(200);
      const onlyKey = ((await limitsOnly.json()) as any).key;
      expect(await statuses(h, onlyKey, "gpt-4", 2)).toEqual([200, 429]);
    } finally {
      await h.close();
    }
  });
});
