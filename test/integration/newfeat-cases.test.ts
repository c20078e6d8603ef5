import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { type RunningGateway, adminCall, binaryOnUpstream, startBinary } from "../helpers/binary";
import { type PostgresServer, startPostgres } from "../helpers/services";
import { until } from "../helpers/until";
import { PRICED_COST, type Upstream, pricedModels, startUpstream } from "../helpers/upstream";

for (const kind of ["embedded", "postgres"] as const) describe(`log rows of failed requests whose error text holds a lone surrogate (${kind})`, () => {
  const on = binaryOnUpstream(kind, pricedModels);

  const admin = (path: string, body?: object) => adminCall(on.gateway.url, path, body);
  const chat = (key: string, raw: string) =>
    fetch(`${on.gateway.url}/v1/chat/completions`, { method: "POST", headers: { authorization: `Bearer ${key}`, "content-type": "application/json" }, body: raw });

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
    on.upstream.set({ status: 400, errorMessage: "bad \ud800 input" });
    const failed = await chat(key, JSON.stringify({ model: "m", messages: [{ role: "user", content: "hi" }] }));
    on.upstream.reset();
    expect(failed.status).toBe(400);
    const ok = await chat(key, JSON.stringify({ model: "m", messages: [{ role: "user", content: "hi" }] }));
    expect(ok.status).toBe(200);
    await until("the spend written", async () => (await admin(`/key/info?key=${key}`)).info.spend > 0, 15_000, 200).catch((e) => {
      throw new Error(`${e}\n${on.gateway.output().slice(-3000)}`);
    });
    expect((await admin(`/key/info?key=${key}`)).info.spend).toBeCloseTo(PRICED_COST, 12);
    const rows: any[] = await admin(`/spend/logs?api_key=${token}`);
    expect(rows.map((r) => r.status).sort()).toEqual(["failure", "success"]);
  }, 60_000);
});

describe("a stream the provider fails with an error event", () => {
  const on = binaryOnUpstream("embedded", pricedModels);

  const admin = (path: string, body?: object) => adminCall(on.gateway.url, path, body);
  const role = { id: "c", object: "chat.completion.chunk", created: 1, model: "m", choices: [{ index: 0, delta: { role: "assistant" }, finish_reason: null }] };
  const content = { ...role, choices: [{ index: 0, delta: { content: "Hello there" }, finish_reason: null }] };

  test("whose chunks carry `\"error\": null` is no failure: the row is a success, charged the provider's usage", async () => {
    const { key } = await admin("/key/generate", {});
    const token = new Bun.CryptoHasher("sha256").update(key).digest("hex");
    const usage = { prompt_tokens: 10, completion_tokens: 20, total_tokens: 30 };
    on.upstream.set({ events: [
      { ...content, error: null },
      { ...role, choices: [{ index: 0, delta: {}, finish_reason: "stop" }], error: null },
      { ...role, choices: [], usage, error: null },
      "[DONE]",
    ] });
    try {
      const response = await fetch(`${on.gateway.url}/v1/chat/completions`, {
        method: "POST", headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
        body: JSON.stringify({ model: "m", stream: true, messages: [{ role: "user", content: "hi" }] }),
      });
      expect(await response.text()).toContain("Hello there");
    } finally {
      on.upstream.reset();
    }
    await until("the row", async () => (await admin(`/spend/logs?api_key=${token}`)).length === 1, 10_000, 100);
    const [row] = await admin(`/spend/logs?api_key=${token}`);
    expect(row.status).toBe("success");
    expect(row.spend).toBeCloseTo(PRICED_COST, 12);
  }, 60_000);

  for (const [name, events, status] of [
    ["before any text", [role, { error: { message: "The model is overloaded now", type: "server_error", code: "rate_limit_exceeded" } }], "failure"],
    ["after some text", [content, { error: { message: "The model is overloaded now", type: "server_error", code: "rate_limit_exceeded" } }], "stream_failed"],
  ] as const) {
    test(`${name} has its row's metadata.error_information, as a failure answered as JSON has`, async () => {
      const { key } = await admin("/key/generate", {});
      const token = new Bun.CryptoHasher("sha256").update(key).digest("hex");
      on.upstream.set({ events: [...events] });
      try {
        const response = await fetch(`${on.gateway.url}/v1/chat/completions`, {
          method: "POST", headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
          body: JSON.stringify({ model: "m", stream: true, messages: [{ role: "user", content: "hi" }] }),
        });
        expect(await response.text()).toContain("The model is overloaded now");
      } finally {
        on.upstream.reset();
      }
      await until("the row", async () => (await admin(`/spend/logs?api_key=${token}`)).length === 1, 10_000, 100);
      const [row] = await admin(`/spend/logs?api_key=${token}`);
      expect(row.status).toBe(status);
      const info = row.metadata.error_information;
      expect(info).toBeDefined();
      expect(info.error_code).toBe("429");
      expect(info.error_message).toMatch(/overloaded now/);
    }, 60_000);
  }
});

describe("refused requests' log rows over a Postgres outage", () => {
  let upstream: Upstream;
  let pg: PostgresServer;
  let gateway: RunningGateway;
  beforeAll(async () => {
    upstream = await startUpstream();
    pg = await startPostgres();
    const dbUrl = await pg.newDatabase();
    gateway = await startBinary({
      config: `${pricedModels(upstream.url)}\ngeneral_settings:\n  master_key: sk-1234\n  database_url: ${dbUrl}\n  allow_requests_on_db_unavailable: true\n`,
    });
  }, 120_000);
  afterAll(async () => {
    await gateway?.stop("SIGKILL");
    upstream?.stop();
    await pg?.stop();
  });

  const admin = (path: string, body?: object) => adminCall(gateway.url, path, body);
  const ask = (key: string, model = "m") => fetch(`${gateway.url}/v1/chat/completions`, {
    method: "POST", headers: { authorization: `Bearer ${key}`, "content-type": "application/json" }, body: JSON.stringify({ model, messages: [{ role: "user", content: "hi" }] }),
  });

  for (const outage of ["stopped", "hung"] as const) {
    test(`rows made while the database is ${outage} are written once when it is back, and the spend with them`, async () => {
      const { key } = await admin("/key/generate", { models: ["m"] });
      const token = new Bun.CryptoHasher("sha256").update(key).digest("hex");
      expect((await ask(key)).status).toBe(200);
      await until("the first row", async () => (await admin(`/spend/logs?api_key=${token}`)).length === 1, 10_000, 100);
      if (outage === "stopped") await pg.stop();
      else pg.pause();
      try {
        for (let i = 0; i < 3; i++) {
          expect((await ask(key)).status).toBe(200);
          expect((await ask(key, "other")).status).toBe(401);
        }
        await Bun.sleep(3000);
      } finally {
        if (outage === "stopped") await pg.start();
        else pg.resume();
      }
      await until("every row", async () => (await admin(`/spend/logs?api_key=${token}`)).length >= 7, 30_000, 250);
      await Bun.sleep(2000);
      const rows: any[] = await admin(`/spend/logs?api_key=${token}`);
      expect(rows.filter((r) => r.status === "success").length).toBe(4);
      expect(rows.filter((r) => r.status === "failure").length).toBe(3);
      expect(new Set(rows.map((r) => r.request_id)).size).toBe(7);
      expect((await admin(`/key/info?key=${key}`)).info.spend).toBeCloseTo(4 * PRICED_COST, 12);
    }, 90_000);
  }
});
