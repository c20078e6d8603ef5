import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { hashKey } from "../../src/auth/keys";
import { inProcessGateway, oneModelConfig } from "../helpers/gateway";
import { type Upstream, startUpstream } from "../helpers/upstream";

/**
 * A burst of concurrent requests overspends a budget by at most one request only if each reservation
 * is at least what the request costs: prompts the estimate undercounts (non-Latin text, images) let
 * the whole burst through.
 */

const IN = 0.000001;
const OUT = 0.000002;
const COMPLETION = 20;

let upstream: Upstream;
let h: Awaited<ReturnType<typeof inProcessGateway>>;
beforeAll(async () => {
  // The provider takes a while to answer: every request of the burst is admitted (or not) while the others are in flight.
  upstream = await startUpstream({ firstByteDelayMs: 200 });
  h = await inProcessGateway(oneModelConfig(upstream.url, IN, OUT));
}, 120_000);
afterAll(async () => {
  await h.close();
  upstream.stop();
});

/** Sends `count` requests at once; returns how many were answered and the key's spend after. */
async function burst(key: string, content: unknown, count: number, limits: Record<string, number> = { max_tokens: COMPLETION }): Promise<{ admitted: number; spend: number }> {
  const answers = await Promise.all(Array.from({ length: count }, () => h.chat(key, { messages: [{ role: "user", content }], ...limits }, "m")));
  const statuses = answers.map((a) => a.status);
  await Promise.all(answers.map((a) => a.text()));
  expect(statuses.every((s) => s === 200 || s === 400)).toBe(true);
  await h.flush();
  const [row] = await h.db.query("select spend from keys where token = $1", [hashKey(key)]);
  return { admitted: statuses.filter((s) => s === 200).length, spend: Number(row!.spend) };
}

describe("a concurrent burst stays within a budget plus one request", () => {
  test("with a prompt of CJK text (about 1.1 tokens a character, not a quarter)", async () => {
    // 2,700 characters, 3,000 cl100k tokens; the provider bills 3,007 with the framing.
    upstream.set({ usage: { prompt_tokens: 3007, completion_tokens: COMPLETION } });
    const oneRequest = 3007 * IN + COMPLETION * OUT;
    const budget = 5 * oneRequest;
    const key = await h.createKey({ max_budget: budget });
    const { admitted, spend } = await burst(key, "预算超支测试请忽略".repeat(300), 20);
    expect(admitted).toBeGreaterThanOrEqual(1);
    expect(spend).toBeLessThanOrEqual(budget + oneRequest + 1e-12);
  });

  test("with an image in the prompt", async () => {
    upstream.set({ usage: { prompt_tokens: 2000, completion_tokens: COMPLETION } });
    const oneRequest = 2000 * IN + COMPLETION * OUT;
    const budget = 1e-3;
    const key = await h.createKey({ max_budget: budget });
    const content = [{ type: "text", text: "What is in this picture?" }, { type: "image_url", image_url: { url: "https://example.com/picture.png" } }];
    const { admitted, spend } = await burst(key, content, 20);
    expect(admitted).toBeGreaterThanOrEqual(1);
    expect(spend).toBeLessThanOrEqual(budget + oneRequest + 1e-12);
  });

  test("with max_tokens and max_completion_tokens both sent, the larger is reserved", async () => {
    // Providers differ in which of the two they obey: this one answers with the larger.
    upstream.set({ usage: { prompt_tokens: 10, completion_tokens: 500 } });
    const oneRequest = 10 * IN + 500 * OUT;
    const budget = 4 * oneRequest;
    for (const limits of [{ max_tokens: 1, max_completion_tokens: 500 }, { max_tokens: 500, max_completion_tokens: 1 }]) {
      const key = await h.createKey({ max_budget: budget });
      const { admitted, spend } = await burst(key, "hello", 20, limits);
      expect(admitted).toBeGreaterThanOrEqual(1);
      expect(spend).toBeLessThanOrEqual(budget + oneRequest + 1e-12);
    }
  });
});
