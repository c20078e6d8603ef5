import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { type RunningGateway, startBinary } from "../helpers/binary";
import { until } from "../helpers/until";
import { PRICED_COST, type Upstream, pricedModels, startUpstream } from "../helpers/upstream";

const ADMIN = { authorization: "Bearer sk-1234", "content-type": "application/json" };

describe("log rows of failed requests whose error text holds a lone surrogate", () => {
  let upstream: Upstream;
  let gateway: RunningGateway;
  beforeAll(async () => {
    upstream = await startUpstream();
    gateway = await startBinary({ config: `${pricedModels(upstream.url)}\ngeneral_settings:\n  master_key: sk-1234\n` });
  }, 120_000);
  afterAll(async () => {
    await gateway?.stop("SIGKILL");
    upstream?.stop();
  });

  const admin = async (path: string, body?: object): Promise<any> => {
    const response = await fetch(`${gateway.url}${path}`, body ? { method: "POST", headers: ADMIN, body: JSON.stringify(body) } : { headers: ADMIN });
    expect(response.status).toBe(200);
    return response.json();
  };
  const chat = (key: string, raw: string) =>
    fetch(`${gateway.url}/v1/chat/completions`, { method: "POST", headers: { authorization: `Bearer ${key}`, "content-type": "application/json" }, body: raw });

  test("a refusal naming a model with a lone surrogate is logged, and the spend written with it reaches the key", async () => {
    const { key } = await admin("/key/generate", {});
    const token = new Bun.CryptoHasher("sha256").update(key).digest("hex");
    // Written as JSON's escape: the body itself is valid UTF-8.
    const refused = await chat(key, String.raw`{"model":"no-such-\ud800-model","messages":[{"role":"user","content":"hi"}]}`);
    expect(refused.status).toBeGreaterThanOrEqual(400);
    expect(refused.status).toBeLessThan(500);
    const ok = await chat(key, JSON.stringify({ model: "m", messages: [{ role: "user", content: "hi" }] }));
    expect(ok.status).toBe(200);
    await until("the spend written", async () => (await admin(`/key/info?key=${key}`)).info.spend > 0, 15_000, 200);
    expect((await admin(`/key/info?key=${key}`)).info.spend).toBeCloseTo(PRICED_COST, 12);
    const rows: any[] = await admin(`/spend/logs?api_key=${token}`);
    expect(rows.map((r) => r.status).sort()).toEqual(["failure", "success"]);
  }, 60_000);

  test("a provider error with a lone surrogate in its message is logged, and the spend written with it reaches the key", async () => {
    const { key } = await admin("/key/generate", {});
    const token = new Bun.CryptoHasher("sha256").update(key).digest("hex");
    upstream.set({ status: 400, errorMessage: "bad \ud800 input" });
    const failed = await chat(key, JSON.stringify({ model: "m", messages: [{ role: "user", content: "hi" }] }));
    upstream.reset();
    expect(failed.status).toBe(400);
    const ok = await chat(key, JSON.stringify({ model: "m", messages: [{ role: "user", content: "hi" }] }));
    expect(ok.status).toBe(200);
    await until("the spend written", async () => (await admin(`/key/info?key=${key}`)).info.spend > 0, 15_000, 200).catch((e) => {
      throw new Error(`${e}\n${gateway.output().slice(-3000)}`);
    });
    expect((await admin(`/key/info?key=${key}`)).info.spend).toBeCloseTo(PRICED_COST, 12);
    const rows: any[] = await admin(`/spend/logs?api_key=${token}`);
    expect(rows.map((r) => r.status).sort()).toEqual(["failure", "success"]);
  }, 60_000);
});
