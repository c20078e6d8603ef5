import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { inProcessGateway } from "../helpers/gateway";
import { freePort } from "../helpers/services";
import { type Upstream, startUpstream } from "../helpers/upstream";

type Harness = Awaited<ReturnType<typeof inProcessGateway>>;
let h: Harness;
let upstream: Upstream;
let closed: number;

beforeAll(async () => {
  upstream = await startUpstream();
  closed = await freePort();
  h = await inProcessGateway(`
model_list:
  - model_name: local
    litellm_params: {model: mock/local, mock_response: "pong"}
  - model_name: chat
    litellm_params: {model: openai/gpt-4o-mini, api_base: "${upstream.url}", api_key: sk-provider-secret}
  - model_name: embed
    litellm_params: {model: openai/text-embedding-3-small, api_base: "${upstream.url}"}
    model_info: {mode: embedding}
  - model_name: gone
    litellm_params: {model: openai/gpt-4o, api_base: "http://user:pw-secret@127.0.0.1:${closed}/v1?token=url-secret", api_key: sk-other-secret}
general_settings:
  master_key: sk-1234
`);
}, 120_000);
afterAll(async () => {
  await h.close();
  upstream.stop();
});

describe("GET /health (admin)", () => {
  test("each deployment gets the smallest request of its kind; the answer lists healthy and unhealthy endpoints without keys", async () => {
    upstream.reset();
    const response = await h.call("/health");
    expect(response.status).toBe(200);
    const body = (await response.json()) as any;
    expect(body.healthy_count).toBe(3);
    expect(body.unhealthy_count).toBe(1);
    expect(body.healthy_endpoints.map((e: any) => e.model_name).sort()).toEqual(["chat", "embed", "local"]);
    const [gone] = body.unhealthy_endpoints;
    // Its api_base as /model/info shows it: the password and the token in it are left out.
    expect(gone).toMatchObject({ model: "openai/gpt-4o", model_name: "gone", api_base: `http://127.0.0.1:${closed}/v1` });
    expect(gone.error).toContain("502");
    expect(JSON.stringify(body)).not.toContain("secret");
    // What the providers received: a one-token chat and an embedding, each under its upstream name.
    const sent = upstream.requests.map((r) => [r.path, r.body.model, r.body.max_tokens ?? r.body.input]).sort();
    expect(sent).toEqual([["/v1/chat/completions", "gpt-4o-mini", 1], ["/v1/embeddings", "text-embedding-3-small", "ping"]]);
  });

  test("?model= checks that model's deployments only; an upstream error makes it unhealthy with the provider's message", async () => {
    upstream.reset();
    upstream.set({ status: 503, errorMessage: "overloaded" });
    try {
      const body = (await (await h.call("/health?model=chat")).json()) as any;
      expect([body.healthy_count, body.unhealthy_count]).toEqual([0, 1]);
      expect(body.unhealthy_endpoints[0].error).toContain("overloaded");
    } finally {
      upstream.reset();
    }
    expect((await h.call("/health?model=nope")).status).toBe(404);
  });

  test("admins only", async () => {
    const key = await h.createKey();
    expect((await h.call("/health", undefined, key)).status).toBe(401);
    expect((await h.call("/health", undefined, null)).status).toBe(401);
  });
});
