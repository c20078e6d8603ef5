import { afterAll, expect, test } from "bun:test";
import { type RunningGateway, startBinary } from "../helpers/binary";
import { startPostgres } from "../helpers/services";

const MASTER = "sk-1234";
const started: RunningGateway[] = [];
afterAll(async () => {
  for (const gateway of started) await gateway.stop().catch(() => {});
});

const call = (gateway: RunningGateway, path: string, key: string, body?: unknown) =>
  fetch(`${gateway.url}${path}`, {
    method: body === undefined ? "GET" : "POST",
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });

const CONFIG = (extra = "") => `
model_list:
  - model_name: mock
    litellm_params:
      model: mock/litegate-mock
      mock_response: hi
      input_cost_per_token: 0.000001
      output_cost_per_token: 0.000002
general_settings:
  master_key: ${MASTER}
${extra}`;

/**
 * LiteLLM's path form of /key/regenerate carries the raw key in the path. Raw keys are never logged
 * nor sent back in errors: not in a 401 to a caller that is no admin, a 404 for a mistyped route, nor
 * the log line of a call the database could not answer.
 */
test("a raw key in a path is neither logged nor echoed in errors (Postgres down, non-admin, mistyped route)", async () => {
  const pg = await startPostgres();
  const gateway = await startBinary({ config: CONFIG(`  database_url: ${await pg.newDatabase()}\n`) });
  started.push(gateway);
  try {
    const made = (await (await call(gateway, "/key/generate", MASTER, {})).json()) as { key: string };
    const user = (await (await call(gateway, "/user/new", MASTER, { user_role: "internal_user" })).json()) as { key: string };
    const secret = made.key;
    const answers: string[] = [];
    // A caller that is no admin, and a mistyped route.
    const refused = await call(gateway, `/key/${secret}/regenerate`, user.key, {});
    expect(refused.status).toBe(401);
    answers.push(await refused.text());
    const mistyped = await call(gateway, `/key/${secret}/regenerat`, MASTER, {});
    expect(mistyped.status).toBe(404);
    answers.push(await mistyped.text());
    // The database gone: the admin call is a 503, and the warning names the route.
    await pg.stop();
    const down = await call(gateway, `/key/${secret}/regenerate`, MASTER, {});
    expect(down.status).toBe(503);
    answers.push(await down.text());
    await gateway.waitForOutput(/database unavailable/);
    for (const answer of answers) expect(answer).not.toContain(secret);
    expect(gateway.output()).not.toContain(secret);
    // The key is still named, by its display form.
    expect(answers[0]).toContain(`sk-...${secret.slice(-4)}`);
  } finally {
    await gateway.stop();
    await pg.stop().catch(() => {});
  }
}, 60_000);

/**
 * An alias (`router_settings.model_group_alias`) is served by the group it names, and each list a
 * key is bounded by may allow it by either name, as LiteLLM checks them: a key listing the alias on
 * a team listing the model it names may use it (and /v1/models lists it).
 */
test("a team key listing an alias may use it when its team lists the model the alias names", async () => {
  const gateway = await startBinary({ config: CONFIG("router_settings:\n  model_group_alias:\n    cheap: mock\n") });
  started.push(gateway);
  try {
    expect((await call(gateway, "/team/new", MASTER, { team_id: "t-alias", models: ["mock"] })).status).toBe(200);
    const { key } = (await (await call(gateway, "/key/generate", MASTER, { team_id: "t-alias", models: ["cheap"] })).json()) as { key: string };
    const chat = (model: string) => call(gateway, "/v1/chat/completions", key, { model, messages: [{ role: "user", content: "hi" }] });
    const viaAlias = await chat("cheap");
    expect(`${viaAlias.status} ${await viaAlias.text()}`).toStartWith("200 ");
    // The key lists the alias only: the model by its own name stays refused.
    const direct = await chat("mock");
    expect(direct.status).toBe(401);
    expect(((await direct.json()) as any).error.type).toBe("key_model_access_denied");
    const listed = (await (await call(gateway, "/v1/models", key)).json()) as { data: { id: string }[] };
    expect(listed.data.map((m) => m.id)).toEqual(["cheap"]);
  } finally {
    await gateway.stop();
  }
}, 60_000);

/** LiteLLM's proxy_admin_viewer: views every key, user, team and spend; changes nothing. */
test("a proxy_admin_viewer's key reads every admin GET route and another key's /key/info, and may change nothing", async () => {
  const gateway = await startBinary({ config: CONFIG() });
  started.push(gateway);
  const viewer = (await (await call(gateway, "/user/new", MASTER, { user_id: "auditor", user_role: "proxy_admin_viewer" })).json()) as { key: string };
  const other = (await (await call(gateway, "/key/generate", MASTER, {})).json()) as { key: string };
  expect((await call(gateway, "/v1/chat/completions", other.key, { model: "mock", messages: [{ role: "user", content: "hi" }] })).status).toBe(200);
  for (const path of ["/key/list", "/user/list", "/team/list", "/budget/list", "/global/spend", "/spend/logs", "/user/info", `/key/info?key=${other.key}`]) {
    expect(`${path} ${(await call(gateway, path, viewer.key)).status}`).toBe(`${path} 200`);
  }
  // LiteLLM's reads that take a POST body.
  expect((await call(gateway, "/budget/new", MASTER, { budget_id: "tier", max_budget: 5 })).status).toBe(200);
  const budgets = await call(gateway, "/budget/info", viewer.key, { budgets: ["tier"] });
  expect(budgets.status).toBe(200);
  expect(JSON.stringify(await budgets.json())).toContain('"max_budget":5');
  for (const [path, body] of [["/key/generate", {}], ["/key/delete", { keys: [other.key] }], ["/user/update", { user_id: "auditor", user_role: "proxy_admin" }], ["/budget/update", { budget_id: "tier", max_budget: 50 }]] as const) {
    const refused = await call(gateway, path, viewer.key, body);
    expect(`${path} ${refused.status}`).toBe(`${path} 401`);
  }
  // Nothing changed: the other key still answers, the viewer is still a viewer.
  expect((await call(gateway, "/v1/chat/completions", other.key, { model: "mock", messages: [{ role: "user", content: "hi" }] })).status).toBe(200);
  expect((await call(gateway, `/key/info?key=${other.key}`, "sk-not-a-key")).status).toBe(401);
});
