import { afterAll, beforeAll, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import OpenAI from "openai";
import { type RunningGateway, startBinary } from "../helpers/binary";
import { type Upstream, startUpstream } from "../helpers/upstream";

let upstream: Upstream;
let gateway: RunningGateway;

beforeAll(async () => {
  upstream = await startUpstream();
  gateway = await startBinary({
    config: `
model_list:
  - model_name: test-model
    litellm_params:
      model: openai/test-model
      api_base: ${upstream.url}
      api_key: sk-provider-secret-123
general_settings:
  master_key: sk-1234
  litellm_key_header_name: X-Litellm-Key
`,
  });
}, 120_000);
afterAll(async () => {
  await gateway.stop("SIGKILL");
  upstream.stop();
});

const post = (path: string, headers: Record<string, string>, body: unknown = {}) =>
  fetch(`${gateway.url}${path}`, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify(body) });
const chat = { model: "test-model", messages: [{ role: "user" as const, content: "hi" }] };

test("litellm_key_header_name: keys are read from that header only, for admin and inference calls alike", async () => {
  const made = await post("/key/generate", { "X-Litellm-Key": "Bearer sk-1234", authorization: "Bearer sk-gateway-in-front" }, { max_budget: 1 });
  expect(made.status).toBe(200);
  const { key } = (await made.json()) as { key: string };

  // The openai SDK sends its own Authorization; the key travels beside it as a default header.
  const client = new OpenAI({ apiKey: "sk-not-a-litegate-key", baseURL: `${gateway.url}/v1`, maxRetries: 0, defaultHeaders: { "X-Litellm-Key": `Bearer ${key}` } });
  const answer = await client.chat.completions.create(chat);
  expect(answer.choices[0]!.message.content).toBe("Hello from the test upstream");
  expect(upstream.requests.at(-1)!.headers.authorization).toBe("Bearer sk-provider-secret-123");

  // A valid key anywhere else is not read: 401, naming the header to use.
  for (const [path, body] of [["/key/generate", {}], ["/v1/chat/completions", chat]] as const) {
    const elsewhere: Record<string, string>[] = [{ authorization: "Bearer sk-1234" }, { "x-litellm-api-key": `Bearer ${key}` }, { "x-api-key": key }];
    for (const headers of elsewhere) {
      const refused = await post(path, headers, body);
      expect(`${path} ${Object.keys(headers)[0]} ${refused.status}`).toBe(`${path} ${Object.keys(headers)[0]} 401`);
      expect(((await refused.json()) as any).error.message).toContain("X-Litellm-Key header");
    }
  }
  const withoutKey = new OpenAI({ apiKey: key, baseURL: `${gateway.url}/v1`, maxRetries: 0 });
  const status = await withoutKey.chat.completions.create(chat).then(() => 200, (error: { status: number }) => error.status);
  expect(status).toBe(401);
  expect((await post("/v1/chat/completions", { "X-Litellm-Key": "Bearer sk-unknown" }, chat)).status).toBe(401);
});

test("a reload that removes litellm_key_header_name reads Authorization again", async () => {
  const config = readFileSync(gateway.configPath, "utf8");
  writeFileSync(gateway.configPath, config.replace("  litellm_key_header_name: X-Litellm-Key\n", ""));
  expect((await post("/config/reload", { "X-Litellm-Key": "Bearer sk-1234" })).status).toBe(200);
  expect((await post("/key/generate", { authorization: "Bearer sk-1234" })).status).toBe(200);
  expect((await post("/key/generate", { "X-Litellm-Key": "Bearer sk-1234" })).status).toBe(401);
});
