import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { hashKey } from "../../src/auth/keys";
import { parseConfig } from "../../src/config";
import { MASTER, MOCK_CONFIG, inProcessGateway } from "../helpers/gateway";

type Harness = Awaited<ReturnType<typeof inProcessGateway>>;
let h: Harness;
beforeAll(async () => {
  // "slower" keeps a request in flight long enough for an admin change to land during it.
  const slower = "  - model_name: slower\n    litellm_params: {model: mock/slower, mock_response: hi, mock_delay_ms: 400, input_cost_per_token: 0.000001, output_cost_per_token: 0.000002}\n";
  h = await inProcessGateway(MOCK_CONFIG.replace("general_settings:", `${slower}general_settings:`) + `
litellm_settings:
  max_end_user_budget: 0.00001
`);
}, 120_000);
afterAll(() => h.close());

const one = async (sql: string, params: unknown[] = []) => (await h.db.query(sql, params))[0]!;

describe("spend and budgets end to end", () => {
  test("key budget: the first call passes, the call after the budget is used is refused with the numbers", async () => {
    const key = await h.createKey({ max_budget: 2e-7 });
    const first = await h.chat(key);
    expect(first.status).toBe(200);
    expect(Number(first.headers.get("x-litellm-response-cost"))).toBeGreaterThan(0);
    const second = await h.chat(key);
    expect(second.status).toBe(400);
    const body = (await second.json()) as any;
    expect(body.error.type).toBe("budget_exceeded");
    expect(body.error.code).toBe("400");
    expect(body.error.message).toMatch(/^ExceededBudget: Key=sk-\.\.\.\w{4} over budget\. Spend=[\d.e-]+, Budget=2e-7$/);
  });

  test("stored spend equals usage × configured price, on every level", async () => {
    await h.db.query("insert into users (user_id) values ('spender')");
    await h.db.query("insert into budgets (budget_id, max_budget) values ('big', 100)");
    await h.db.query("insert into end_users (user_id, budget_id) values ('cust-a', 'big')");
    const key = await h.createKey({ user_id: "spender" });
    let expected = 0;
    for (let i = 0; i < 5; i++) {
      const response = await h.chat(key, { user: "cust-a" });
      const body = (await response.json()) as any;
      const cost = body.usage.prompt_tokens * 0.000001 + body.usage.completion_tokens * 0.000002;
      expect(Number(response.headers.get("x-litellm-response-cost"))).toBeCloseTo(cost, 15);
      expected += cost;
    }
    await h.flush();
    expect((await one("select spend from keys where token = $1", [hashKey(key)])).spend).toBeCloseTo(expected, 15);
    expect((await one("select spend from users where user_id = 'spender'")).spend).toBeCloseTo(expected, 15);
    expect((await one("select spend from end_users where user_id = 'cust-a'")).spend).toBeCloseTo(expected, 15);
    expect((await one("select spend from key_model_spend where token = $1 and model = 'mock'", [hashKey(key)])).spend).toBeCloseTo(expected, 15);
    expect((await one("select count(*)::int as n, sum(spend) as s from spend_logs where api_key = $1", [hashKey(key)])).n).toBe(5);
  });

  test("a team key's spend log row names the key's user, a member of the team or not; that user's own spend is not charged", async () => {
    await h.db.query("insert into users (user_id) values ('outsider'), ('insider')");
    await h.db.query("insert into teams (team_id) values ('log-team')");
    await h.db.query("insert into team_memberships (team_id, user_id) values ('log-team', 'insider')");
    for (const user of ["outsider", "insider"]) {
      const key = await h.createKey({ team_id: "log-team", user_id: user });
      expect((await h.chat(key)).status).toBe(200);
      await h.flush();
      expect((await one("select user_id, team_id from spend_logs where api_key = $1", [hashKey(key)]))).toEqual({ user_id: user, team_id: "log-team" });
      expect((await one("select spend from users where user_id = $1", [user])).spend).toBe(0);
    }
  });

  test("a streamed request is charged from its usage", async () => {
    const key = await h.createKey();
    const response = await h.chat(key, { stream: true });
    expect(response.headers.get("content-type")).toContain("text/event-stream");
    const text = await response.text();
    expect(text).toContain("data: [DONE]");
    await h.flush();
    const row = await one("select spend, status, completion_tokens from spend_logs where api_key = $1", [hashKey(key)]);
    expect(row.status).toBe("success");
    expect(row.spend).toBeGreaterThan(0);
    expect(row.completion_tokens).toBeGreaterThan(0);
  });

  test("an abandoned stream is charged for what was sent and frees its parallel slot", async () => {
    const key = await h.createKey({ max_parallel_requests: 1 });
    const response = await h.chat(key, { stream: true }, "slow");
    const reader = response.body!.getReader();
    await reader.read();
    await reader.read();
    const busy = await h.chat(key, {}, "mock");
    expect(busy.status).toBe(429);
    await reader.cancel();
    const after = await h.chat(key, {}, "mock");
    expect(after.status).toBe(200);
    await h.flush();
    const row = await one("select spend, status from spend_logs where api_key = $1 and model = 'slow'", [hashKey(key)]);
    expect(row.status).toBe("client_disconnected");
    expect(row.spend).toBeGreaterThan(0);
  });

  test("tpm_limit holds under a concurrent burst: in-flight requests hold the tokens they may use", async () => {
    const key = await h.createKey({ tpm_limit: 100 });
    const responses = await Promise.all(Array.from({ length: 30 }, () => h.chat(key, { max_tokens: 10 }, "slow")));
    const admitted = responses.filter((r) => r.status === 200);
    // About 20 tokens each (a short prompt, max_tokens 10): five fit in 100; all 30 went through before.
    expect(admitted.length).toBeGreaterThanOrEqual(4);
    expect(admitted.length).toBeLessThanOrEqual(6);
    expect(responses.filter((r) => r.status === 429).length).toBe(30 - admitted.length);
    let used = 0;
    for (const r of admitted) used += ((await r.json()) as any).usage.total_tokens;
    expect(used).toBeLessThanOrEqual(100 + 20);
  });

  test("a client that stops reading at [DONE], as the SDKs do, completed its stream", async () => {
    const key = await h.createKey();
    const response = await h.chat(key, { stream: true });
    const reader = response.body!.getReader();
    const decoder = new TextDecoder();
    let seen = "";
    while (!seen.includes("data: [DONE]")) {
      const { done, value } = await reader.read();
      if (done) throw new Error("the stream ended without [DONE]");
      seen += decoder.decode(value);
    }
    await reader.cancel();
    await h.flush();
    const row = await one("select status, completion_tokens from spend_logs where api_key = $1", [hashKey(key)]);
    expect(row.status).toBe("success");
    expect(row.completion_tokens).toBeGreaterThan(0);
  });

  test("customers: max_end_user_budget refuses the second call naming the end user", async () => {
    const key = await h.createKey();
    expect((await h.chat(key, { user: "ishaan3", max_tokens: 10 })).status).toBe(200);
    const second = await h.chat(key, { user: "ishaan3" });
    expect(second.status).toBe(400);
    expect(((await second.json()) as any).error.message).toContain("End User=ishaan3 over budget");
  });

  test("200 concurrent requests against a budget that covers 10 admit at most 11", async () => {
    const key = await h.createKey({ max_budget: 0.0001 });
    // Each call costs about 9 prompt + 10 completion tokens ≈ 2.9e-5 → the budget covers ~3.4 calls; reservations use max_tokens.
    const responses = await Promise.all(Array.from({ length: 200 }, () => h.chat(key, { max_tokens: 10 }, "slow")));
    const ok = responses.filter((r) => r.status === 200).length;
    await Promise.all(responses.map((r) => r.text()));
    await h.flush();
    const spent = (await one("select spend from keys where token = $1", [hashKey(key)])).spend;
    const perCall = spent / ok;
    const covers = Math.floor(0.0001 / perCall) + (0.0001 % perCall === 0 ? 0 : 1);
    expect(ok).toBeGreaterThanOrEqual(1);
    expect(ok).toBeLessThanOrEqual(covers + 1);
  });

  test("a request's reservation counts every completion it asks for: n, best_of, and each prompt of a list", async () => {
    // 9 prompt tokens + 20 × 10 completion tokens reserve ≈ 4e-4: a 1e-3 budget takes three such at once (the one that crosses it included).
    const concurrent = async (body: Record<string, unknown>, path = "/v1/chat/completions") => {
      const key = await h.createKey({ max_budget: 0.001 });
      const payload = path.endsWith("chat/completions") ? { model: "slow", messages: [{ role: "user", content: "Hello there" }], ...body } : { model: "slow", ...body };
      const responses = await Promise.all(Array.from({ length: 20 }, () => h.call(path, payload, key)));
      await Promise.all(responses.map((r) => r.text()));
      return responses.filter((r) => r.status === 200).length;
    };
    expect(await concurrent({ max_tokens: 20 })).toBe(20);
    expect(await concurrent({ max_tokens: 20, n: 10 })).toBe(3);
    expect(await concurrent({ max_tokens: 20, prompt: "Hello there", best_of: 10 }, "/v1/completions")).toBe(3);
    expect(await concurrent({ max_tokens: 20, n: 2, prompt: ["Hello", "there", "you", "all", "five"] }, "/v1/completions")).toBe(3);
  });

  test("a reservation never holds more than an answer can use: max_tokens past the model's output cap, n past 128", async () => {
    const capped = await inProcessGateway(MOCK_CONFIG.replace("general_settings:",
      "  - model_name: short\n    litellm_params: {model: mock/short, mock_response: hi, mock_delay_ms: 300, input_cost_per_token: 0.000001, output_cost_per_token: 0.000002}\n" +
      "    model_info: {max_output_tokens: 100}\n" +
      "  - model_name: held\n    litellm_params: {model: mock/held, mock_response: hi, mock_delay_ms: 500, input_cost_per_token: 0.000001, output_cost_per_token: 0.000002}\n" +
      "general_settings:") + "litellm_settings:\n  max_budget: 40\n");
    try {
      const send = (key: string, body: Record<string, unknown>, model = "held") =>
        capped.call("/v1/chat/completions", { model, messages: [{ role: "user", content: "Hello there" }], ...body }, key);
      // The whole gateway's $40: a request asking for 1e300 tokens, 128 times, holds at most 128 answers of
      // the default cap (131,072 tokens, $33.55 here) while in flight, and another key still passes.
      const attacker = await capped.createKey({ max_budget: 0.001 });
      const victim = await capped.createKey({});
      const held = send(attacker, { max_tokens: 1e300, n: 128 });
      await Bun.sleep(100);
      const passed = await send(victim, {}, "mock");
      expect(passed.status).toBe(200);
      expect(await (await send(attacker, { n: 129 })).json()).toMatchObject({ error: { param: "n", message: "n: must be at most 128 (got 129)" } });
      const prompts = (count: number, n = 1) => capped.call("/v1/completions", { model: "mock", prompt: Array.from({ length: count }, () => "a"), n, max_tokens: 1 }, victim);
      expect((await prompts(2048)).status).toBe(200);
      expect(await (await prompts(1025, 2)).json()).toMatchObject({ error: { param: "prompt", message: "prompt: at most 2048 completions per request (1025 prompts × 2)" } });
      const first = await held;
      expect(`${first.status} ${first.status === 200 ? "" : await first.text()}`).toBe("200 ");
      // model_info.max_output_tokens bounds it further: 5,000 asked, 100 held, so a tpm limit of 300 takes two at once.
      const key = await capped.createKey({ tpm_limit: 300 });
      const both = await Promise.all([send(key, { max_tokens: 5000 }, "short"), send(key, { max_tokens: 5000 }, "short")]);
      expect(both.map((r) => r.status)).toEqual([200, 200]);
    } finally {
      await capped.close();
    }
  });

  test("spend set to 0 while a request is in flight unblocks the key: the request's cost counts, the old spend does not come back", async () => {
    const created = (await (await h.call("/key/generate", { max_budget: 0.0001, spend: 0.00009 })).json()) as any;
    const inFlight = h.chat(created.key, {}, "slower");
    await Bun.sleep(50);
    expect((await h.call("/key/update", { key: created.key, spend: 0 })).status).toBe(200);
    const answered = await inFlight;
    expect(answered.status).toBe(200);
    const cost = Number(answered.headers.get("x-litellm-response-cost"));
    expect((await h.chat(created.key)).status).toBe(200);
    await h.flush();
    const spend = (await one("select spend from keys where token = $1", [hashKey(created.key)])).spend;
    expect(spend).toBeGreaterThan(cost);
    expect(spend).toBeLessThan(0.00009);
  });

  test("per-model limits are read where LiteLLM reads them: the key's metadata first, then its own fields, then model_max_budget; bad ones are a 400 when set", async () => {
    const generate = async (body: Record<string, unknown>) => {
      const response = await h.call("/key/generate", body);
      expect(response.status).toBe(200);
      return ((await response.json()) as any).key as string;
    };
    const admitted = async (key: string, tries: number) => {
      let n = 0;
      for (let i = 0; i < tries; i++) if ((await h.chat(key)).status === 200) n++;
      return n;
    };
    expect(await admitted(await generate({ metadata: { model_rpm_limit: { mock: 1 } } }), 3)).toBe(1);
    expect(await admitted(await generate({ metadata: { model_tpm_limit: { mock: 1 } } }), 3)).toBe(1);
    expect(await admitted(await generate({ model_max_budget: { mock: { budget_limit: 100, rpm_limit: 2 } } }), 4)).toBe(2);
    expect(await admitted(await generate({ model_max_budget: { mock: { max_budget: 100, tpm_limit: 1 } } }), 3)).toBe(1);
    // The metadata wins over the key's own field, which wins over model_max_budget.
    expect(await admitted(await generate({ metadata: { model_rpm_limit: { mock: 2 } }, model_rpm_limit: { mock: 1 } }), 4)).toBe(2);
    expect(await admitted(await generate({ model_rpm_limit: { mock: 1 }, model_max_budget: { mock: { budget_limit: 100, rpm_limit: 3 } } }), 3)).toBe(1);
    const refused = await h.chat(await generate({ metadata: { model_rpm_limit: { mock: 0 } } }));
    expect(refused.status).toBe(429);
    expect(((await refused.json()) as any).error.message).toContain("for model=mock: rpm_limit=0");
    for (const [body, param] of [
      [{ metadata: { model_rpm_limit: { mock: "many" } } }, "metadata.model_rpm_limit.mock"],
      [{ metadata: { model_tpm_limit: { mock: 1.5 } } }, "metadata.model_tpm_limit.mock"],
      [{ model_max_budget: { mock: { budget_limit: 1, rpm_limit: -1 } } }, "model_max_budget.mock"],
    ] as const) {
      const response = await h.call("/key/generate", body);
      expect(response.status).toBe(400);
      expect(((await response.json()) as any).error.param).toStartWith(param);
    }
  });

  test("a budget is usable again right after its period ends, with no scheduler run", async () => {
    const key = await h.createKey({ max_budget: 1e-9, budget_duration: "30s", budget_reset_at: new Date(h.clock.now() + 30_000) });
    expect((await h.chat(key)).status).toBe(200);
    expect((await h.chat(key)).status).toBe(400);
    h.clock.advance(30_001);
    expect((await h.chat(key)).status).toBe(200);
    expect((await h.chat(key)).status).toBe(400);
  });
});

describe("prices past any budget", () => {
  test("a cost too large to be a number is charged as the largest budget: stored, written, and the key stopped", async () => {
    const absurd = await inProcessGateway(`
model_list:
  - model_name: priceless
    litellm_params:
      model: mock/priceless
      mock_response: "worth every cent"
      input_cost_per_token: 1e300
      output_cost_per_token: 1e300
`);
    try {
      const key = await absurd.createKey({ max_budget: 1e15 });
      const first = await absurd.chat(key, {}, "priceless");
      expect(first.status).toBe(200);
      expect(Number(first.headers.get("x-litellm-response-cost"))).toBe(1e15);
      await absurd.flush();
      const [row] = await absurd.db.query("select spend from keys where token = $1", [hashKey(key)]);
      expect(row!.spend).toBe(1e15);
      const [log] = await absurd.db.query("select spend from spend_logs where api_key = $1", [hashKey(key)]);
      expect(log!.spend).toBe(1e15);
      expect((await absurd.chat(key, {}, "priceless")).status).toBe(400);
    } finally {
      await absurd.close();
    }
  });
});

describe("the gateway budget given a period later", () => {
  const priced = MOCK_CONFIG.replace(/input_cost_per_token: 0.000001/g, "input_cost_per_token: 0.05").replace(/output_cost_per_token: 0.000002/g, "output_cost_per_token: 0.05");
  const spent = `${priced}litellm_settings:\n  max_budget: 1\n`;
  const periodic = `${spent}  budget_duration: 30d\n`;
  const spendPast = async (g: Harness) => {
    const statuses: number[] = [];
    while (statuses.length < 10 && statuses.at(-1) !== 400) statuses.push((await g.chat(MASTER)).status);
    expect(statuses.join()).toMatch(/^(200,)+400$/);
  };
  const refused = async (g: Harness) => {
    const answer = await g.chat(MASTER);
    expect(answer.status).toBe(400);
    expect(((await answer.json()) as any).error.message).toContain("Proxy over budget");
  };

  test("budget_duration added by a reload keeps what was spent in the new period", async () => {
    let source = spent;
    const g = await inProcessGateway(spent, { configSource: () => parseConfig(source, {}) });
    try {
      await spendPast(g);
      source = periodic;
      await g.gateway.reloadFromSource();
      await refused(g);
      await g.flush();
      const [row] = await g.db.query("select spend, budget_reset_at from gateway_spend where id = 1");
      expect(row!.spend).toBeGreaterThanOrEqual(1);
      // The period starts at the reload: a gateway refused for good still reaches its end.
      expect(row!.budget_reset_at.getTime()).toBe(g.clock.now() + 30 * 86_400_000);
      g.clock.advance(30 * 86_400_000 + 1);
      expect((await g.chat(MASTER)).status).toBe(200);
    } finally {
      await g.close();
    }
  });

  test("another budget_duration starts a period now (not when the old one ends); one taken away stops the resets", async () => {
    let source = periodic;
    const g = await inProcessGateway(periodic, { configSource: () => parseConfig(source, {}) });
    try {
      await spendPast(g);
      g.clock.advance(60_000);
      source = `${spent}  budget_duration: 1h\n`;
      await g.gateway.reloadFromSource();
      await refused(g);
      await g.flush();
      const [row] = await g.db.query("select spend, budget_reset_at, budget_duration from gateway_spend where id = 1");
      expect(row!.spend).toBeGreaterThanOrEqual(1);
      expect(row!.budget_duration).toBe("1h");
      const periodEnd = g.clock.now() + 3_600_000;
      expect(row!.budget_reset_at.getTime()).toBe(periodEnd);
      // The same duration written another way is the same period.
      g.clock.advance(1000);
      source = `${spent}  budget_duration: 60 minutes\n`;
      await g.gateway.reloadFromSource();
      source = `${spent}  budget_duration: 1h\n`;
      await g.gateway.reloadFromSource();
      const [same] = await g.db.query("select budget_reset_at from gateway_spend where id = 1");
      expect(same!.budget_reset_at.getTime()).toBe(periodEnd);
      const global = async () => (await (await g.call("/global/spend")).json()) as any;
      expect(await global()).toMatchObject({ max_budget: 1, budget_reset_at: new Date(periodEnd).toISOString() });
      expect((await global()).spend).toBeGreaterThanOrEqual(1);
      // Its period over, before any scheduler writes the reset: nothing spent in the period now, and the next end.
      g.clock.set(periodEnd + 1);
      expect(await global()).toMatchObject({ spend: 0, budget_reset_at: new Date(periodEnd + 3_600_000).toISOString() });
      expect((await g.chat(MASTER)).status).toBe(200);
      // No duration: what is spent from now on is never forgiven.
      await spendPast(g);
      source = spent;
      await g.gateway.reloadFromSource();
      const [none] = await g.db.query("select budget_duration from gateway_spend where id = 1");
      expect(none!.budget_duration).toBe("");
      expect(await (await g.call("/global/spend")).json()).toMatchObject({ max_budget: 1, budget_reset_at: null });
      g.clock.advance(3 * 3_600_000);
      await refused(g);
      // Given again, a period starts then.
      source = `${spent}  budget_duration: 1h\n`;
      await g.gateway.reloadFromSource();
      const [again] = await g.db.query("select budget_reset_at, budget_duration from gateway_spend where id = 1");
      expect(again).toMatchObject({ budget_duration: "1h", budget_reset_at: new Date(g.clock.now() + 3_600_000) });
    } finally {
      await g.close();
    }
  });

  test("a budget_duration taken away while a request is in flight: that request's spend adds to the total, it does not replace it", async () => {
    const slow = "  - model_name: slower\n    litellm_params: {model: mock/slower, mock_response: hi, mock_delay_ms: 400, input_cost_per_token: 0.05, output_cost_per_token: 0.05}\n";
    const withSlow = priced.replace("general_settings:", `${slow}general_settings:`);
    const roomy = `${withSlow}litellm_settings:\n  max_budget: 1000\n`;
    let source = `${roomy}  budget_duration: 1h\n`;
    const g = await inProcessGateway(source, { configSource: () => parseConfig(source, {}) });
    try {
      for (let i = 0; i < 3; i++) expect((await g.chat(MASTER)).status).toBe(200);
      await g.flush();
      const [before] = await g.db.query("select spend, budget_reset_at from gateway_spend where id = 1");
      const inFlight = g.chat(MASTER, {}, "slower");
      await Bun.sleep(50);
      source = roomy;
      await g.gateway.reloadFromSource();
      expect((await inFlight).status).toBe(200);
      expect((await g.chat(MASTER)).status).toBe(200);
      await g.flush();
      const [logs] = await g.db.query("select sum(spend)::float8 as total from spend_logs");
      const [after] = await g.db.query("select spend, budget_reset_at, budget_duration from gateway_spend where id = 1");
      expect(after!.spend).toBeCloseTo(logs!.total, 9);
      expect(after!.spend).toBeGreaterThan(before!.spend);
      expect(after).toMatchObject({ budget_duration: "", budget_reset_at: before!.budget_reset_at });
    } finally {
      await g.close();
    }
  });

  test("another budget_duration at a restart starts a period then", async () => {
    const before = await inProcessGateway(periodic);
    await spendPast(before);
    await before.gateway.close();
    const after = await inProcessGateway(`${spent}  budget_duration: 2h\n`, { db: before.db, start: before.clock.now() });
    try {
      await refused(after);
      const [row] = await after.db.query("select budget_reset_at from gateway_spend where id = 1");
      expect(row!.budget_reset_at.getTime()).toBe(after.clock.now() + 2 * 3_600_000);
      after.clock.advance(2 * 3_600_000 + 1);
      expect((await after.chat(MASTER)).status).toBe(200);
    } finally {
      await after.close();
      await before.db.close();
    }
  });

  test("budget_duration added before a restart keeps what was spent in the new period", async () => {
    const before = await inProcessGateway(spent);
    await spendPast(before);
    await before.gateway.close(); // its spend written, the database left open
    const after = await inProcessGateway(periodic, { db: before.db });
    try {
      await refused(after);
    } finally {
      await after.close();
      await before.db.close();
    }
  });
});

/** A chat request to `g` as the master key, with these headers and body fields added. */
const chatWith = (g: Awaited<ReturnType<typeof inProcessGateway>>) => (headers: Record<string, string>, extra: Record<string, unknown> = {}) =>
  g.gateway.app.handle(new Request("http://litegate.test/v1/chat/completions", {
    method: "POST",
    headers: { authorization: `Bearer ${MASTER}`, "content-type": "application/json", ...headers },
    body: JSON.stringify({ model: "mock", messages: [{ role: "user", content: "Hello there" }], ...extra }),
  }));

describe("the customer named by a header, and required", () => {
  test("user_header_name names the customer (before the user field); enforce_user_param refuses a request naming none", async () => {
    const g = await inProcessGateway(MOCK_CONFIG.replace("general_settings:\n", "general_settings:\n  enforce_user_param: true\n  user_header_name: x-openwebui-user-id\n"));
    try {
      const send = chatWith(g);
      const none = await send({});
      expect(none.status).toBe(400);
      expect(((await none.json()) as any).error).toMatchObject({ param: "user", message: expect.stringContaining("enforce_user_param") });
      expect((await g.call("/customer/new", { user_id: "webui-7", max_budget: 0.0000001 })).status).toBe(200);
      // The header wins over the body's user: the budget of webui-7 applies.
      expect((await send({ "x-openwebui-user-id": "webui-7" }, { user: "someone-else" })).status).toBe(200);
      const refused = await send({ "x-openwebui-user-id": "webui-7" }, { user: "someone-else" });
      expect(refused.status).toBe(400);
      expect(((await refused.json()) as any).error.message).toContain("End User=webui-7 over budget");
      // The body's user alone still names the customer.
      expect((await send({}, { user: "someone-else" })).status).toBe(200);
      const long = await send({ "x-openwebui-user-id": "x".repeat(300) });
      expect(long.status).toBe(400);
      expect(((await long.json()) as any).error.message).toContain("header x-openwebui-user-id: at most 256 characters");
    } finally {
      await g.close();
    }
  });

  test("the customer is read where LiteLLM reads it: x-litellm-customer-id, x-litellm-end-user-id, user_header_mappings, user, litellm_metadata.user, metadata.user_id", async () => {
    const config = MOCK_CONFIG.replace("general_settings:\n", `general_settings:
  user_header_name: x-ignored-when-mapped
  user_header_mappings:
    - {header_name: x-app-user, litellm_user_role: internal_user}
    - {header_name: X-Tenant-Customer, litellm_user_role: customer}
`);
    const g = await inProcessGateway(config);
    try {
      const send = chatWith(g);
      // Each place in turn names a customer whose budget one request uses up; what comes before it wins over what comes after.
      const places: [string, Record<string, string>, Record<string, unknown>][] = [
        ["c-std", { "x-litellm-customer-id": "c-std", "x-litellm-end-user-id": "other", "x-tenant-customer": "other" }, { user: "other" }],
        ["c-end", { "x-litellm-end-user-id": "c-end", "x-tenant-customer": "other" }, { user: "other" }],
        ["c-mapped", { "x-tenant-customer": "c-mapped", "x-ignored-when-mapped": "other", "x-app-user": "other" }, { user: "other" }],
        ["c-user", {}, { user: "c-user", litellm_metadata: { user: "other" } }],
        ["c-lm", {}, { litellm_metadata: { user: "c-lm" }, metadata: { user_id: "other" } }],
        ["c-meta", {}, { metadata: { user_id: "c-meta" } }],
        ["c-text", {}, { metadata: JSON.stringify({ user_id: "c-text" }) }],
      ];
      for (const [id, headers, extra] of places) {
        expect((await g.call("/customer/new", { user_id: id, max_budget: 0.0000001 })).status).toBe(200);
        expect((await send(headers, extra)).status).toBe(200);
        const refused = await send(headers, extra);
        expect(refused.status).toBe(400);
        expect(((await refused.json()) as any).error.message).toContain(`End User=${id} over budget`);
      }
      // Checked as the user field is: a bad id is a 400 naming where it came from, not a way around a budget.
      const bad: [Record<string, string>, Record<string, unknown>, string][] = [
        [{ "x-litellm-customer-id": "x".repeat(300) }, {}, "header x-litellm-customer-id: at most 256 characters"],
        [{ "x-tenant-customer": "a\tb" }, {}, "header x-tenant-customer: must not hold a control character"],
        [{}, { litellm_metadata: { user: "a\u0000b" } }, "litellm_metadata.user:"],
        [{}, { metadata: { user_id: 42 } }, "metadata.user_id: must be a string"],
      ];
      for (const [headers, extra, message] of bad) {
        const response = await send(headers, extra);
        expect(response.status).toBe(400);
        expect(((await response.json()) as any).error).toMatchObject({ param: "user", message: expect.stringContaining(message) });
      }
    } finally {
      await g.close();
    }
  });
});
