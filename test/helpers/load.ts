/** What load tests and the benchmarks share: a fully governed key, and a gateway's count of what it sent to Postgres and Redis. */

/**
 * A virtual key with every check on, created through the admin API: a key budget, rpm/tpm/parallel
 * limits and a per-model budget; a team with its own limits; a user with a budget and a budget in the
 * team; and a customer `${prefix}-customer` on a budget tier, for requests to name as `user`. Every
 * limit is far out of reach, so each request runs every check and none refuses.
 */
export async function governedKey(url: string, options: { model: string; prefix: string }): Promise<string> {
  const { model, prefix } = options;
  const post = async (path: string, body: object) => {
    const response = await fetch(`${url}${path}`, {
      method: "POST", headers: { authorization: "Bearer sk-1234", "content-type": "application/json" }, body: JSON.stringify(body),
    });
    const answer = (await response.json()) as any;
    if (response.status !== 200) throw new Error(`${path} answered ${response.status}: ${JSON.stringify(answer)}`);
    return answer;
  };
  const user = `${prefix}-user`;
  const team = await post("/team/new", { max_budget: 1e9, rpm_limit: 1e9, tpm_limit: 2e9, max_parallel_requests: 100_000 });
  await post("/user/new", { user_id: user, auto_create_key: false, max_budget: 1e9 });
  await post("/team/member_add", { team_id: team.team_id, member: { user_id: user, role: "user" }, max_budget_in_team: 1e9 });
  await post("/budget/new", { budget_id: `${prefix}-tier`, max_budget: 1e9, rpm_limit: 1e9, tpm_limit: 2e9 });
  await post("/customer/new", { user_id: `${prefix}-customer`, budget_id: `${prefix}-tier` });
  const key = await post("/key/generate", {
    team_id: team.team_id, user_id: user, max_budget: 1e9, rpm_limit: 1e9, tpm_limit: 2e9, max_parallel_requests: 100_000,
    model_max_budget: { [model]: { budget_limit: 1e9, time_period: "30d" } },
  });
  return key.key;
}

/**
 * Postgres statements, Redis round trips and counters synced by a gateway so far (NaN without Redis),
 * and the requests whose spend it has not written yet, from its metrics: reading them sends nothing.
 */
export async function roundTrips(url: string): Promise<{ db: number; redis: number; counterSyncs: number; spendBacklog: number }> {
  const text = await (await fetch(`${url}/metrics`, { headers: { authorization: "Bearer sk-1234" } })).text();
  const value = (name: string) => Number(new RegExp(`^${name} ([\\d.e+-]+)$`, "m").exec(text)?.[1] ?? Number.NaN);
  return { db: value("litegate_db_statements"), redis: value("litegate_redis_commands"), counterSyncs: value("litegate_redis_counter_syncs"), spendBacklog: value("litegate_spend_backlog_requests") };
}
