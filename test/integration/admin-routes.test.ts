import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { type RunningGateway, startOnPostgres } from "../helpers/binary";
import { type Upstream, startUpstream } from "../helpers/upstream";

/**
 * LiteLLM's admin routes beyond the basic ones (/team/model/*, /budget/settings, /key/health, /user/info
 * without user_id or with a `+` in it), as its clients call them: against the binary on real Postgres.
 */
let upstream: Upstream;
let gateway: RunningGateway;

beforeAll(async () => {
  upstream = await startUpstream();
  const model = (name: string) => `  - model_name: ${name}
    litellm_params: {model: openai/${name}, api_base: "${upstream.url}", api_key: fake, input_cost_per_token: 0.000001, output_cost_per_token: 0.000002}`;
  ({ gateway } = await startOnPostgres(`
model_list:
${model("m")}
${model("other")}`));
}, 120_000);
afterAll(async () => {
  await gateway?.stop("SIGTERM");
  upstream?.stop();
});

/** A call as curl makes it: the path and query sent as written. */
async function call(method: "GET" | "POST", path: string, body?: string, key: string | null = "sk-1234") {
  const response = await fetch(`${gateway.url}${path}`, {
    method, body, headers: { ...(key === null ? {} : { authorization: `Bearer ${key}` }), "content-type": "application/json" },
  });
  const text = await response.text();
  return { status: response.status, body: text === "" ? null : JSON.parse(text) };
}
const post = (path: string, body: unknown, key?: string) => call("POST", path, JSON.stringify(body), key);
const get = (path: string, key?: string) => call("GET", path, undefined, key);
const chat = async (key: string, model: string) =>
  (await post("/v1/chat/completions", { model, messages: [{ role: "user", content: "hi" }] }, key)).status;

describe("/team/model/add and /team/model/delete", () => {
  test("add to and remove from a team's models, answering the team; its keys are held to the list at once", async () => {
    expect((await post("/team/new", { team_id: "models-t", models: ["m"] })).status).toBe(200);
    const { body: key } = await post("/key/generate", { team_id: "models-t" });
    expect(await chat(key.key, "other")).toBe(401);
    const added = await post("/team/model/add", { team_id: "models-t", models: ["other", "m"] });
    expect(added).toMatchObject({ status: 200, body: { team_id: "models-t", models: ["m", "other"] } });
    expect(await chat(key.key, "other")).toBe(200);
    const removed = await post("/team/model/delete", { team_id: "models-t", models: ["m", "never-listed"] });
    expect(removed).toMatchObject({ status: 200, body: { team_id: "models-t", models: ["other"] } });
    expect((await get("/team/info?team_id=models-t")).body.team_info.models).toEqual(["other"]);
    expect(await chat(key.key, "m")).toBe(401);
  });

  test("a team allowed every model keeps every model beside those added (LiteLLM's all-proxy-models), and no call empties a list", async () => {
    expect((await post("/team/new", { team_id: "all-t" })).status).toBe(200);
    const { body: key } = await post("/key/generate", { team_id: "all-t" });
    expect((await post("/team/model/add", { team_id: "all-t", models: ["m"] })).body.models).toEqual(["all-proxy-models", "m"]);
    expect(await chat(key.key, "other")).toBe(200);
    // Removing a team's last model would leave an empty list, which allows every model.
    expect((await post("/team/new", { team_id: "one-t", models: ["m"] })).status).toBe(200);
    const emptied = await post("/team/model/delete", { team_id: "one-t", models: ["m"] });
    expect(emptied).toMatchObject({ status: 400, body: { error: { param: "models" } } });
    expect((await get("/team/info?team_id=one-t")).body.team_info.models).toEqual(["m"]);
  });

  test("an unknown team is a 404, and models must be a list", async () => {
    expect((await post("/team/model/add", { team_id: "no-such-team", models: ["m"] })).status).toBe(404);
    expect((await post("/team/model/delete", { team_id: "no-such-team", models: ["m"] })).status).toBe(404);
    expect((await post("/team/model/add", { team_id: "models-t" })).body.error.param).toBe("models");
  });
});

describe("/budget/settings", () => {
  test("lists the budget's fields with their values, as LiteLLM's admin UI reads them", async () => {
    expect((await post("/budget/new", { budget_id: "settings-b", max_budget: 7, rpm_limit: 3, budget_duration: "1d" })).status).toBe(200);
    const settings = await get("/budget/settings?budget_id=settings-b");
    expect(settings.status).toBe(200);
    expect(settings.body.map((f: any) => f.field_name)).toEqual(["max_budget", "soft_budget", "max_parallel_requests", "tpm_limit", "rpm_limit", "budget_duration", "model_max_budget"]);
    const byName = Object.fromEntries(settings.body.map((f: any) => [f.field_name, f]));
    expect(byName.max_budget).toMatchObject({ field_type: "Float", field_value: 7, stored_in_db: true });
    expect(byName.rpm_limit).toMatchObject({ field_type: "Integer", field_value: 3 });
    expect(byName.budget_duration.field_value).toBe("1d");
    expect(byName.tpm_limit.field_value).toBeNull();
  });

  test("an unknown budget is a 404, a missing budget_id a 400", async () => {
    expect((await get("/budget/settings?budget_id=no-such-budget")).status).toBe(404);
    expect((await get("/budget/settings")).status).toBe(400);
  });
});

describe("/key/health", () => {
  test("any valid key checks itself (no body needed); a key litegate does not know is a 401", async () => {
    const { body: key } = await post("/key/generate", {});
    for (const caller of [key.key, "sk-1234"]) {
      expect(await call("POST", "/key/health", undefined, caller)).toEqual({ status: 200, body: { key: "healthy", logging_callbacks: null } });
    }
    expect((await post("/key/health", {}, key.key)).status).toBe(200);
    expect((await call("POST", "/key/health", undefined, "sk-unknown")).status).toBe(401);
    expect((await call("POST", "/key/health", undefined, null)).status).toBe(401);
  });
});

describe("/user/info", () => {
  test("a '+' written unescaped in user_id stays a '+', as LiteLLM reads it; a space sent as %20 stays a space", async () => {
    for (const user_id of ["krrish+routes@berri.ai", "two words"]) {
      expect((await post("/user/new", { user_id, auto_create_key: false })).status).toBe(200);
    }
    for (const path of ["/user/info?user_id=krrish+routes@berri.ai", "/user/info?user_id=krrish%2Broutes%40berri.ai"]) {
      expect((await get(path)).body.user_id).toBe("krrish+routes@berri.ai");
    }
    expect((await get("/user/info?user_id=two%20words")).body.user_id).toBe("two words");
    expect((await get("/user/info?user_id=two+words")).status).toBe(404);
  });

  test("without user_id, an admin gets LiteLLM's admin view: every key and team, and its own user", async () => {
    expect((await post("/team/new", { team_id: "view-t", team_alias: "view team" })).status).toBe(200);
    const { body: teamKey } = await post("/key/generate", { team_id: "view-t" });
    const master = await get("/user/info");
    expect(master.status).toBe(200);
    expect(master.body).toMatchObject({ user_id: null, user_info: null });
    expect(master.body.keys.find((k: any) => k.token === teamKey.token_id)).toMatchObject({ team_id: "view-t", team_alias: "view team" });
    expect(master.body.teams.map((t: any) => t.team_id)).toContain("view-t");
    const { body: admin } = await post("/user/new", { user_id: "view-admin", user_role: "proxy_admin" });
    const own = await get("/user/info", admin.key);
    expect(own).toMatchObject({ status: 200, body: { user_id: "view-admin", user_info: { user_id: "view-admin", user_role: "proxy_admin" } } });
    expect(own.body.keys.length).toBe(master.body.keys.length + 1);
  });
});
