import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { type RunningGateway, startBinary } from "../helpers/binary";
import { type Upstream, startUpstream } from "../helpers/upstream";

/** Rate limits as a client of the compiled binary meets them (embedded database, no Redis). */
let upstream: Upstream;
let gateway: RunningGateway;
beforeAll(async () => {
  upstream = await startUpstream();
  gateway = await startBinary({ config: `
model_list:
  - model_name: m
    litellm_params: {model: openai/m, api_base: "${upstream.url}", api_key: sk-upstream, input_cost_per_token: 0.000001, output_cost_per_token: 0.000002}
  - model_name: n
    litellm_params: {model: openai/n, api_base: "${upstream.url}", api_key: sk-upstream, input_cost_per_token: 0.000001, output_cost_per_token: 0.000002}
general_settings:
  master_key: sk-1234
` });
}, 60_000);
afterAll(async () => {
  await gateway?.stop();
  upstream?.stop();
});

const post = (path: string, body: unknown, key = "sk-1234") =>
  fetch(`${gateway.url}${path}`, { method: "POST", headers: { authorization: `Bearer ${key}`, "content-type": "application/json" }, body: JSON.stringify(body) });
const chat = (key: string) => post("/v1/chat/completions", { model: "m", messages: [{ role: "user", content: "hi" }] }, key);

describe("per-model limits in a key's metadata", () => {
  test("a model_rpm_limit or model_tpm_limit that is not a mapping of models is a 400, not a limit silently dropped", async () => {
    for (const field of ["model_rpm_limit", "model_tpm_limit"]) {
      for (const value of [1, [1], "1", true]) {
        const response = await post("/key/generate", { metadata: { [field]: value } });
        expect(`${field} ${JSON.stringify(value)} ${response.status}`).toBe(`${field} ${JSON.stringify(value)} 400`);
        const { error } = (await response.json()) as any;
        expect(error).toMatchObject({ type: "bad_request_error", param: `metadata.${field}`, code: "400" });
      }
    }
    const key = ((await (await post("/key/generate", {})).json()) as any).key;
    const update = await post("/key/update", { key, metadata: { model_rpm_limit: 1 } });
    expect(update.status).toBe(400);
    // The key was left as it was, and a mapping is still taken and enforced.
    const mapped = await post("/key/update", { key, metadata: { model_rpm_limit: { m: 1 } } });
    expect(mapped.status).toBe(200);
    expect((await chat(key)).status).toBe(200);
    expect((await chat(key)).status).toBe(429);
  });
});

describe("per-model limits of a team", () => {
  const team = async (id: string) => ((await (await fetch(`${gateway.url}/team/info?team_id=${id}`, { headers: { authorization: "Bearer sk-1234" } })).json()) as any).team_info;
  const keyOf = async (teamId: string) => ((await (await post("/key/generate", { team_id: teamId })).json()) as any).key as string;

  test("in its metadata, as LiteLLM keeps them, hold every key of the team on that model only", async () => {
    expect((await post("/team/new", { team_id: "per-model", metadata: { owner: "ops", model_rpm_limit: { m: 2 } } })).status).toBe(200);
    const [a, b] = [await keyOf("per-model"), await keyOf("per-model")];
    const first = await chat(a);
    expect(first.status).toBe(200);
    // The key's own per-model headers are not the team's.
    expect(first.headers.get("x-litellm-key-remaining-requests-m")).toBeNull();
    expect((await chat(b)).status).toBe(200);
    const refused = await chat(a);
    expect(refused.status).toBe(429);
    expect(((await refused.json()) as any).error).toMatchObject({ type: "rate_limit_error", message: expect.stringContaining("team per-model for model=m: rpm_limit=2") });
    // Another model of the same team is not held.
    expect((await post("/v1/chat/completions", { model: "n", messages: [{ role: "user", content: "hi" }] }, b)).status).toBe(200);
    // A key of another team is not held either.
    expect((await post("/team/new", { team_id: "free" })).status).toBe(200);
    expect((await chat(await keyOf("free"))).status).toBe(200);
  });

  test("sent beside the metadata go into it, kept with what it holds; null takes one away", async () => {
    const made = await post("/team/new", { team_id: "folded", metadata: { owner: "ops" }, model_tpm_limit: { m: 100000 } });
    expect(made.status).toBe(200);
    expect((await team("folded")).metadata).toMatchObject({ owner: "ops", model_tpm_limit: { m: 100000 } });
    expect((await post("/team/update", { team_id: "folded", model_rpm_limit: { m: 1 } })).status).toBe(200);
    expect((await team("folded")).metadata).toMatchObject({ owner: "ops", model_tpm_limit: { m: 100000 }, model_rpm_limit: { m: 1 } });
    const key = await keyOf("folded");
    expect((await chat(key)).status).toBe(200);
    expect((await chat(key)).status).toBe(429);
    // Raised: admitted again in the same minute.
    expect((await post("/team/update", { team_id: "folded", model_rpm_limit: { m: 5 } })).status).toBe(200);
    expect((await chat(key)).status).toBe(200);
    expect((await post("/team/update", { team_id: "folded", model_rpm_limit: null, model_tpm_limit: null })).status).toBe(200);
    expect((await team("folded")).metadata).toEqual({ owner: "ops" });
    for (let i = 0; i < 5; i++) expect((await chat(key)).status).toBe(200);
  });

  test("that are not mappings of models to limits are a 400 naming them, and change nothing", async () => {
    expect((await post("/team/new", { team_id: "shaped" })).status).toBe(200);
    for (const [body, param] of [
      [{ metadata: { model_rpm_limit: 1 } }, "metadata.model_rpm_limit"],
      [{ metadata: { model_tpm_limit: { m: -1 } } }, "metadata.model_tpm_limit.m"],
      [{ model_rpm_limit: { m: "many" } }, "model_rpm_limit.m"],
      [{ model_tpm_limit: [5] }, "model_tpm_limit"],
    ] as const) {
      const refused = await post("/team/update", { team_id: "shaped", ...body });
      expect(`${JSON.stringify(body)} ${refused.status}`).toBe(`${JSON.stringify(body)} 400`);
      expect(((await refused.json()) as any).error).toMatchObject({ type: "bad_request_error", param, code: "400" });
    }
    expect((await team("shaped")).metadata).toEqual({});
  });
});
