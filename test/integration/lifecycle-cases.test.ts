import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import OpenAI from "openai";
import { type RunningGateway, startBinary } from "../helpers/binary";
import { startUpstream, type Upstream } from "../helpers/upstream";
import { tempDir } from "../helpers/services";

/**
 * Keys, users and teams through their lifecycle on the compiled binary (the embedded database), with
 * traffic through the `openai` client: role changes, regenerations.
 */
let up: Upstream;
let gw: RunningGateway;
// Every request costs 10 × 1e-6 + 20 × 2e-6 = 5e-5 (the upstream's usage).
const COST = 0.00005;

beforeAll(async () => {
  up = await startUpstream();
  gw = await startBinary({ config: `
model_list:
  - model_name: m
    litellm_params: {model: openai/m, api_base: "${up.url}", api_key: sk-up, input_cost_per_token: 0.000001, output_cost_per_token: 0.000002}
litellm_settings:
  max_internal_user_budget: ${COST * 2.4}
general_settings:
  master_key: sk-1234
  data_dir: ${tempDir("lifecycle")}
` });
});
afterAll(async () => {
  await gw?.stop();
  up?.stop();
});

const admin = async (path: string, body?: unknown) => {
  const response = await fetch(gw.url + path, {
    method: body === undefined ? "GET" : "POST",
    headers: { authorization: "Bearer sk-1234", "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: response.status, body: (await response.json()) as any };
};
const client = (key: string) => new OpenAI({ apiKey: key, baseURL: `${gw.url}/v1`, maxRetries: 0 });
/** A chat completion's status: 200, or the error's status and message. */
const ask = (key: string) => client(key).chat.completions.create({ model: "m", messages: [{ role: "user", content: "hi" }] })
  .then(() => "200", (error) => `${error.status} ${error.message}`);

describe("user roles", () => {
  test("an internal user made proxy_admin and back: max_internal_user_budget counts what it spent meanwhile", async () => {
    await admin("/user/new", { user_id: "role-flip", auto_create_key: false });
    const key = (await admin("/key/generate", { user_id: "role-flip" })).body.key;
    expect(await ask(key)).toBe("200");
    // As proxy_admin the default budget of internal users does not hold it: two more requests.
    expect((await admin("/user/update", { user_id: "role-flip", user_role: "proxy_admin" })).status).toBe(200);
    expect(await ask(key)).toBe("200");
    expect(await ask(key)).toBe("200");
    // An internal user again, it has spent 3 × COST of a budget of 2.4 × COST.
    expect((await admin("/user/update", { user_id: "role-flip", user_role: "internal_user" })).status).toBe(200);
    expect(await ask(key)).toMatch(/^400 .*ExceededBudget: User=role-flip over budget\. Spend=0\.00015/);
  });
});

describe("key regeneration", () => {
  test("the master key is not regenerated (new_master_key): a 400 saying so, not 'Key not found'", async () => {
    const answer = await admin("/key/regenerate", { key: "sk-1234", new_master_key: "sk-5678" });
    expect(answer.status).toBe(400);
    expect(answer.body.error.param).toBe("new_master_key");
    expect(await ask("sk-1234")).toBe("200");
  });
});

describe("key expiry", () => {
  test("/key/update with duration null (as LiteLLM reads it: no change) keeps the key's expiry; \"-1\" lifts it", async () => {
    const made = (await admin("/key/generate", { duration: "1h" })).body;
    const updated = await admin("/key/update", { key: made.key, duration: null, key_alias: "still-expiring" });
    expect(updated.status).toBe(200);
    expect(updated.body).toMatchObject({ key_alias: "still-expiring", expires: made.expires });
    const regenerated = await admin("/key/regenerate", { key: made.key, duration: null });
    expect(regenerated.body.expires).toBe(made.expires);
    const lifted = await admin("/key/update", { key: regenerated.body.key, duration: "-1" });
    expect(lifted.body.expires).toBeNull();
  });
});

describe("per-model budgets", () => {
  test("a key's budget for a model taken off (its entry kept, for limits or a period) and set again counts what the model cost meanwhile", async () => {
    for (const [off, on] of [
      [{ rpm_limit: 100 }, { budget_limit: COST * 2.4 }],
      [{ budget_limit: null, time_period: "1d" }, { budget_limit: COST * 2.4, time_period: "1d" }],
    ]) {
      // Of a user with a budget of its own, far from it (max_internal_user_budget does not hold it).
      await admin("/user/new", { user_id: "per-model", max_budget: 1, auto_create_key: false });
      const key = (await admin("/key/generate", { user_id: "per-model", model_max_budget: { m: on } })).body.key;
      expect(await ask(key)).toBe("200");
      expect((await admin("/key/update", { key, model_max_budget: { m: off } })).status).toBe(200);
      expect(await ask(key)).toBe("200");
      expect(await ask(key)).toBe("200");
      // Set again: the model has cost 3 × COST of 2.4 × COST.
      expect((await admin("/key/update", { key, model_max_budget: { m: on } })).status).toBe(200);
      expect(await ask(key)).toMatch(/^400 .*exceeded budget for model=m\. Spend=0\.00015/);
    }
  });
});

describe("per-model budgets of a shared budget", () => {
  test("a budget_id's per-model budget taken off and set again by /budget/update counts what its keys' model cost meanwhile", async () => {
    const on = { m: { budget_limit: COST * 2.4 } };
    await admin("/user/new", { user_id: "shared-model", max_budget: 1, auto_create_key: false });
    expect((await admin("/budget/new", { budget_id: "shared-model-budget", model_max_budget: on })).status).toBe(200);
    const key = (await admin("/key/generate", { user_id: "shared-model", budget_id: "shared-model-budget" })).body.key;
    expect(await ask(key)).toBe("200");
    expect((await admin("/budget/update", { budget_id: "shared-model-budget", model_max_budget: { m: { rpm_limit: 100 } } })).status).toBe(200);
    expect(await ask(key)).toBe("200");
    expect(await ask(key)).toBe("200");
    expect((await admin("/budget/update", { budget_id: "shared-model-budget", model_max_budget: on })).status).toBe(200);
    expect(await ask(key)).toMatch(/^400 .*exceeded budget for model=m\. Spend=0\.00015/);
  });
});

describe("default budgets turned off and on again by reloads", () => {
  let own: RunningGateway;
  afterAll(async () => {
    await own?.stop();
  });

  test("max_internal_user_budget and max_end_user_budget back on count what users and customers spent while they were off", async () => {
    const base = `
model_list:
  - model_name: m
    litellm_params: {model: openai/m, api_base: "${up.url}", api_key: sk-up, input_cost_per_token: 0.000001, output_cost_per_token: 0.000002}
general_settings:
  master_key: sk-1234
  data_dir: ${tempDir("lifecycle-reload")}
`;
    const withDefaults = `${base}litellm_settings:\n  max_internal_user_budget: ${COST * 2.4}\n  max_end_user_budget: ${COST * 2.4}\n`;
    own = await startBinary({ config: withDefaults });
    const reload = async (text: string) => {
      const reloads = own.output().split("config reloaded").length;
      await Bun.write(own.configPath, text);
      own.proc.kill("SIGHUP");
      while (own.output().split("config reloaded").length === reloads) await Bun.sleep(20);
    };
    const call = (key: string, customer: string) => new OpenAI({ apiKey: key, baseURL: `${own.url}/v1`, maxRetries: 0 }).chat.completions
      .create({ model: "m", messages: [{ role: "user", content: "hi" }], user: customer })
      .then(() => "200", (error) => `${error.status} ${error.message}`);
    const made = await fetch(`${own.url}/key/generate`, { method: "POST", headers: { authorization: "Bearer sk-1234" }, body: JSON.stringify({ user_id: "off-on" }) });
    const key = ((await made.json()) as any).key;

    expect(await call(key, "off-on-customer")).toBe("200");
    await reload(base);
    expect(await call(key, "off-on-customer")).toBe("200");
    expect(await call(key, "off-on-customer")).toBe("200");
    // Both defaults back: the user and the customer have spent 3 × COST of 2.4 × COST each.
    await reload(withDefaults);
    expect(await call(key, "another-customer")).toMatch(/^400 .*ExceededBudget: User=off-on over budget/);
    expect(await call("sk-1234", "off-on-customer")).toMatch(/^400 .*ExceededBudget: End User=off-on-customer over budget/);
  });
});
