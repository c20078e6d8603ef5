import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { type Harness, inProcessGateway } from "../helpers/gateway";
import { type Upstream, startUpstream } from "../helpers/upstream";

// Model names as LiteLLM configs write them: a catch-all next to a priced pattern, credentials in
// places other than api_key, access groups and all-team-models in key lists.
let upstream: Upstream;
let h: Harness;

beforeAll(async () => {
  upstream = await startUpstream();
  const base = new URL(upstream.url);
  h = await inProcessGateway(`
model_list:
  - model_name: "*"
    litellm_params: {model: "*", api_base: "${upstream.url}", api_key: sk-upstream}
  - model_name: "priced/*"
    litellm_params: {model: "openai/*", api_base: "${upstream.url}", input_cost_per_token: 0.01, output_cost_per_token: 0.01}
  - model_name: secretive
    litellm_params:
      model: openai/m
      api_base: "http://user:hunter2@${base.host}${base.pathname}?key=query-secret"
      extra_headers: {Authorization: "Bearer upstream-secret-123"}
      api_base_auth: {user: u, pass: hunter2}
      input_cost_per_token: 0.000001
      output_cost_per_token: 0.000002
    model_info: {access_groups: [beta-models]}
general_settings:
  master_key: sk-1234
router_settings:
  model_group_alias: {"gpt-4": "secretive", "quiet-alias": {model: "secretive", hidden: true}}
`);
}, 120_000);
afterAll(async () => {
  await h.close();
  upstream.stop();
});

const json = async (path: string, body?: unknown, key = "sk-1234") => {
  const response = await h.call(path, body, key);
  return { status: response.status, body: (await response.json()) as any, headers: response.headers };
};

describe("model names and access", () => {
  test("the most specific wildcard entry serves a name, whatever the file's order: its price and its upstream name", async () => {
    upstream.reset();
    const answer = await h.chat("sk-1234", {}, "priced/whatever");
    expect(answer.status).toBe(200);
    // 10 prompt and 20 completion tokens at 0.01 each.
    expect(Number(answer.headers.get("x-litellm-response-cost"))).toBeCloseTo(0.3, 12);
    expect(upstream.requests.at(-1)!.body.model).toBe("whatever");
  });

  test("the catch-all `model: \"*\"` sends a provider-named model to that provider, without the prefix, priced as its model", async () => {
    upstream.reset();
    const prefixed = await h.chat("sk-1234", {}, "openai/gpt-4o");
    const bare = await h.chat("sk-1234", {}, "gpt-4o");
    expect([prefixed.status, bare.status]).toEqual([200, 200]);
    expect(upstream.requests.map((r) => r.body.model)).toEqual(["gpt-4o", "gpt-4o"]);
    const cost = Number(prefixed.headers.get("x-litellm-response-cost"));
    expect(cost).toBeGreaterThan(0);
    expect(cost).toBe(Number(bare.headers.get("x-litellm-response-cost")));
  });

  test("all-team-models on a key without a team allows no model; on a team key, the team's", async () => {
    const alone = (await json("/key/generate", { models: ["all-team-models"] })).body.key;
    const refused = await json("/v1/chat/completions", { model: "gpt-4o", messages: [{ role: "user", content: "hi" }] }, alone);
    expect(refused.status).toBe(401);
    expect(refused.body.error.type).toBe("key_model_access_denied");
    expect((await json("/v1/models", undefined, alone)).body.data).toEqual([]);
    await json("/team/new", { team_id: "names-team", models: ["secretive"] });
    const teamKey = (await json("/key/generate", { models: ["all-team-models"], team_id: "names-team" })).body.key;
    expect((await h.chat(teamKey, {}, "secretive")).status).toBe(200);
    expect((await h.chat(teamKey, {}, "gpt-4o")).status).toBe(401);
  });

  test("a key limited to some models is refused another one before being told whether it exists", async () => {
    const limited = (await json("/key/generate", { models: ["secretive"] })).body.key;
    const answer = await json("/v1/chat/completions", { model: "no-such-model-xyz", messages: [{ role: "user", content: "hi" }] }, limited);
    expect(answer.status).toBe(401);
    expect(answer.body.error.type).toBe("key_model_access_denied");
  });

  test("/v1/models lists models a key names, never its access groups or all-proxy-models", async () => {
    // (gpt-4 is an alias of secretive, listed with it: see the model_group_alias test)
    const grouped = (await json("/key/generate", { models: ["beta-models", "priced/x"] })).body.key;
    expect((await json("/v1/models", undefined, grouped)).body.data.map((m: any) => m.id).sort()).toEqual(["gpt-4", "priced/x", "secretive"]);
    const everything = (await json("/key/generate", { models: ["all-proxy-models"] })).body.key;
    expect((await json("/v1/models", undefined, everything)).body.data.map((m: any) => m.id).sort()).toEqual(["gpt-4", "secretive"]);
  });

  test("/model/info shows no credential: nested headers and auth are left out, api_base loses its user, password and query", async () => {
    const member = (await json("/key/generate", { models: ["beta-models"] })).body.key;
    for (const key of [member, "sk-1234"]) {
      const info = await json("/model/info", undefined, key);
      const text = JSON.stringify(info.body);
      for (const secret of ["hunter2", "upstream-secret-123", "query-secret", "sk-upstream"]) expect(text).not.toContain(secret);
      const entry = info.body.data.find((d: any) => d.model_name === "secretive");
      expect(entry.litellm_params).toEqual({
        model: "openai/m", api_base: `${new URL(upstream.url).origin}${new URL(upstream.url).pathname}`, input_cost_per_token: 0.000001, output_cost_per_token: 0.000002,
      });
    }
  });

  test("a model name with a control character or invalid Unicode is refused before anything is spent or stored", async () => {
    for (const model of ["openai/a\u0000b", "priced/a\nb", "priced/\ud800"]) {
      const answer = await json("/v1/chat/completions", { model, messages: [{ role: "user", content: "hi" }] });
      expect(answer.status).toBe(400);
      expect(answer.body.error.param).toBe("model");
    }
  });

  test("model_group_alias: the alias is served by the group it names, usable by either name, listed unless hidden", async () => {
    upstream.reset();
    const viaAlias = await h.chat("sk-1234", {}, "gpt-4");
    expect(viaAlias.status).toBe(200);
    expect(upstream.requests.at(-1)!.body.model).toBe("m");
    // Charged at the group's price (10 prompt and 20 completion tokens).
    expect(Number(viaAlias.headers.get("x-litellm-response-cost"))).toBeCloseTo(10 * 0.000001 + 20 * 0.000002, 12);
    const byTarget = (await json("/key/generate", { models: ["secretive"] })).body.key;
    const byAlias = (await json("/key/generate", { models: ["gpt-4"] })).body.key;
    expect((await h.chat(byTarget, {}, "gpt-4")).status).toBe(200);
    expect((await h.chat(byAlias, {}, "gpt-4")).status).toBe(200);
    expect((await h.chat(byAlias, {}, "secretive")).status).toBe(401);
    expect((await json("/v1/models", undefined, byTarget)).body.data.map((m: any) => m.id).sort()).toEqual(["gpt-4", "secretive"]);
    expect((await json("/v1/models", undefined, byAlias)).body.data.map((m: any) => m.id)).toEqual(["gpt-4"]);
    expect((await h.chat(byTarget, {}, "quiet-alias")).status).toBe(200);
    expect((await json("/v1/models/gpt-4", undefined, byAlias)).body.id).toBe("gpt-4");
    expect((await json("/v1/models/quiet-alias", undefined, byTarget)).status).toBe(404);
  });

  test("the caller's key may come in x-litellm-api-key, beside a provider key in Authorization", async () => {
    const key = (await json("/key/generate", {})).body.key;
    const answer = await h.call("/v1/chat/completions", { model: "secretive", messages: [{ role: "user", content: "hi" }] }, null,
      { headers: { "content-type": "application/json", "x-litellm-api-key": `Bearer ${key}`, authorization: "Bearer sk-provider-own" } });
    expect(answer.status).toBe(200);
  });
});

describe("LiteLLM's default fallback", () => {
  test("fallbacks under `*` serve any model without its own, and may name a model only a wildcard serves", async () => {
    const failing = await startUpstream({ status: 500, errorMessage: "down" });
    const g = await inProcessGateway(`
model_list:
  - model_name: broken
    litellm_params: {model: openai/m, api_base: "${failing.url}", input_cost_per_token: 0.000001, output_cost_per_token: 0.000001}
  - model_name: also-broken
    litellm_params: {model: openai/m, api_base: "${failing.url}", input_cost_per_token: 0.000001, output_cost_per_token: 0.000001}
  - model_name: "spare/*"
    litellm_params: {model: "openai/*", api_base: "${upstream.url}", input_cost_per_token: 0.000002, output_cost_per_token: 0.000002}
general_settings:
  master_key: sk-1234
litellm_settings:
  fallbacks: [{"*": ["spare/small"]}, {"also-broken": ["broken"]}]
router_settings:
  model_group_alias: {"spare-alias": "spare/small"}
`);
    try {
      upstream.reset();
      const answered = await g.chat("sk-1234", {}, "broken");
      expect(answered.status).toBe(200);
      expect(Number(answered.headers.get("x-litellm-response-cost"))).toBeCloseTo(30 * 0.000002, 12);
      expect(upstream.requests.at(-1)!.body.model).toBe("small");
      // A model with fallbacks of its own uses those, not the default ones.
      expect((await g.chat("sk-1234", {}, "also-broken")).status).toBe(500);
      // An alias (with no catch-all to serve its name) is a model /v1/models/{id} knows, as /v1/models lists it.
      expect((await (await g.call("/v1/models/spare-alias")).json() as any).id).toBe("spare-alias");
      expect((await g.call("/v1/models/no-such-alias")).status).toBe(404);
    } finally {
      await g.close();
      failing.stop();
    }
  });
});
