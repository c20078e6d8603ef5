import { expect, test } from "bun:test";
import { startBinary } from "../helpers/binary";

/** How the binary starts from what its environment and command line say. */

const MODELS = `
model_list:
  - model_name: m
    litellm_params: {model: mock/m, mock_response: hi, input_cost_per_token: 0.000001, output_cost_per_token: 0.000001}
`;

const generate = (url: string, key: string) =>
  fetch(`${url}/key/generate`, { method: "POST", headers: { authorization: `Bearer ${key}` }, body: "{}" });

test("LITELLM_MASTER_KEY is the master key when config.yaml sets none; without either, the start warns that the admin API is unusable", async () => {
  const fromEnv = await startBinary({ config: MODELS, env: { LITELLM_MASTER_KEY: "sk-from-env" } });
  try {
    expect((await generate(fromEnv.url, "sk-from-env")).status).toBe(200);
    expect(fromEnv.output()).not.toContain("no master key");
  } finally {
    await fromEnv.stop();
  }
  const configured = await startBinary({ config: `${MODELS}general_settings:\n  master_key: sk-from-config\n`, env: { LITELLM_MASTER_KEY: "sk-from-env" } });
  try {
    expect((await generate(configured.url, "sk-from-config")).status).toBe(200);
    expect((await generate(configured.url, "sk-from-env")).status).toBe(401);
  } finally {
    await configured.stop();
  }
  const none = await startBinary({ config: MODELS, env: { LITELLM_MASTER_KEY: "" } });
  try {
    await none.waitForOutput(/no master key \(general_settings\.master_key or LITELLM_MASTER_KEY\): the admin API refuses/);
  } finally {
    await none.stop();
  }
}, 60_000);
