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

describe("per-model limits in a team's metadata", () => {
  test("are refused with a 400, as the team's own model_rpm_limit is, rather than stored and not enforced", async () => {
    for (const field of ["model_rpm_limit", "model_tpm_limit"]) {
      const made = await post("/team/new", { team_id: `meta-${field}`, metadata: { [field]: { m: 1 } } });
      expect(made.status).toBe(400);
      const { error } = (await made.json()) as any;
      expect(error).toMatchObject({ type: "bad_request_error", param: `metadata.${field}`, code: "400", message: expect.stringContaining("per-model limits on teams") });
    }
    expect((await post("/team/new", { team_id: "meta-team", metadata: { owner: "ops", model_rpm_limit: {} } })).status).toBe(200);
    const updated = await post("/team/update", { team_id: "meta-team", metadata: { model_rpm_limit: { m: 1 } } });
    expect(updated.status).toBe(400);
    // Nothing was stored that would read as a limit: the team's keys run as before.
    const key = ((await (await post("/key/generate", { team_id: "meta-team" })).json()) as any).key;
    expect((await chat(key)).status).toBe(200);
    expect((await chat(key)).status).toBe(200);
  });
});
