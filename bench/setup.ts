/** What every benchmark run shares: request bodies, the gateway's config and a fully governed key. */
export const BENCH_BODY = JSON.stringify({ model: "bench-model", messages: [{ role: "user", content: "Hello there" }] });
export const GOVERNED_BODY = JSON.stringify({ model: "bench-model", user: "bench-customer", messages: [{ role: "user", content: "Hello there" }] });
export const STREAM_BODY = JSON.stringify({ model: "bench-model", stream: true, messages: [{ role: "user", content: "Hello there" }] });
export const json = { "content-type": "application/json" };
export const bearer = (key: string) => ({ ...json, authorization: `Bearer ${key}` });

export const benchConfig = (upstream: string, general: Record<string, unknown> = {}) => ({
  model_list: [{ model_name: "bench-model", litellm_params: { model: "openai/bench-model", api_base: upstream, api_key: "sk-upstream", input_cost_per_token: 0.000001, output_cost_per_token: 0.000002 } }],
  general_settings: { master_key: "sk-1234", log_level: "warn", ...general },
});

/** A virtual key with every check on: key budget and limits, a team, a user, and the customer in the body. */
export async function governedKey(url: string): Promise<string> {
  const post = (path: string, body: object) => fetch(`${url}${path}`, { method: "POST", headers: bearer("sk-1234"), body: JSON.stringify(body) }).then((r) => r.json() as any);
  const team = await post("/team/new", { max_budget: 1e9, rpm_limit: 1e9, tpm_limit: 2e9, max_parallel_requests: 100000 });
  await post("/user/new", { user_id: "bench-user", auto_create_key: false, max_budget: 1e9 });
  await post("/team/member_add", { team_id: team.team_id, member: { user_id: "bench-user", role: "user" }, max_budget_in_team: 1e9 });
  await post("/budget/new", { budget_id: "bench-tier", max_budget: 1e9, rpm_limit: 1e9, tpm_limit: 2e9 });
  await post("/customer/new", { user_id: "bench-customer", budget_id: "bench-tier" });
  const key = await post("/key/generate", {
    team_id: team.team_id, user_id: "bench-user", max_budget: 1e9, rpm_limit: 1e9, tpm_limit: 2e9, max_parallel_requests: 100000,
    model_max_budget: { "bench-model": { budget_limit: 1e9, time_period: "30d" } },
  });
  if (!key.key) throw new Error(`could not create the governed key: ${JSON.stringify(key)}`);
  return key.key;
}
