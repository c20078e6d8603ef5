import { describe, expect, test } from "bun:test";
import { gatewayFor } from "../helpers/gateway";

/** Every field of an admin screen's user form, the blank ones as it sends them. */
const BLANK_FORM = {
  user_email: null, user_alias: null, user_role: null, soft_budget: null, budget_duration: null, models: [],
  tpm_limit: null, rpm_limit: null, max_parallel_requests: null, metadata: {}, model_max_budget: {}, spend: null,
  model_rpm_limit: null, model_tpm_limit: {},
};
const LIMITED = {
  user_alias: "Alice", soft_budget: 3, budget_duration: "7d", models: ["mock"], tpm_limit: 1000, rpm_limit: 1,
  max_parallel_requests: 4, metadata: { team: "core" }, model_max_budget: { mock: { budget_limit: 2, time_period: "1d" } },
};

for (const kind of ["pglite", "postgres"] as const) describe(`/user/update reads nulls as LiteLLM does, on ${kind}`, () => {
  const gateway = gatewayFor(kind);
  const json = gateway.json;
  const user = async (id: string) => (await json(`/user/info?user_id=${id}`)).body.user_info;

  test("a form sent with its blank fields null or empty leaves the user's limits and budgets as they were", async () => {
    const made = await json("/user/new", { user_id: "form-user", max_budget: 5, ...LIMITED });
    expect(made.status).toBe(200);
    const before = await user("form-user");
    const saved = await json("/user/update", { user_id: "form-user", max_budget: 5, ...BLANK_FORM });
    expect(saved.status).toBe(200);
    expect({ ...(await user("form-user")), updated_at: null }).toEqual({ ...before, updated_at: null });
    // Still held to its rpm_limit of 1.
    expect((await gateway.h.chat(made.body.key)).status).toBe(200);
    expect((await gateway.h.chat(made.body.key)).status).toBe(429);
  });

  test("only blanks change nothing and answer the user, as LiteLLM answers", async () => {
    await json("/user/new", { user_id: "blank-only", auto_create_key: false, rpm_limit: 7 });
    const saved = await json("/user/update", { user_id: "blank-only", ...BLANK_FORM });
    expect(saved).toMatchObject({ status: 200, body: { user_id: "blank-only", rpm_limit: 7 } });
    expect((await json("/user/update", { user_id: "nobody-here", rpm_limit: null })).status).toBe(404);
  });

  test("max_budget null takes the budget away, as in LiteLLM; 0 and values are set", async () => {
    await json("/user/new", { user_id: "clear-budget", auto_create_key: false, max_budget: 5, rpm_limit: 3 });
    expect((await json("/user/update", { user_id: "clear-budget", max_budget: null, rpm_limit: 0 })).status).toBe(200);
    expect(await user("clear-budget")).toMatchObject({ max_budget: null, rpm_limit: 0 });
  });

  test("the fields named in unset are taken away; one also sent with a value is a 400", async () => {
    await json("/user/new", { user_id: "unset-user", auto_create_key: false, max_budget: 5, ...LIMITED });
    const unset = ["max_budget", "soft_budget", "budget_duration", "models", "tpm_limit", "rpm_limit", "max_parallel_requests", "metadata", "model_max_budget", "user_alias"];
    expect((await json("/user/update", { user_id: "unset-user", unset })).status).toBe(200);
    expect(await user("unset-user")).toMatchObject({
      max_budget: null, soft_budget: null, budget_duration: null, models: [], tpm_limit: null, rpm_limit: null, max_parallel_requests: null,
      metadata: {}, model_max_budget: {}, user_alias: null,
    });
    // Sent null too, it is taken away all the same.
    expect((await json("/user/update", { user_id: "unset-user", max_budget: null, rpm_limit: null, unset: ["max_budget", "rpm_limit"] })).status).toBe(200);
    expect(await json("/user/update", { user_id: "unset-user", rpm_limit: 2, unset: ["rpm_limit"] })).toMatchObject({ status: 400, body: { error: { param: "unset" } } });
    expect(await json("/user/update", { user_id: "unset-user", unset: ["spend"] })).toMatchObject({ status: 400, body: { error: { param: "unset[0]" } } });
  });
});
