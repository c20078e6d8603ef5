import { describe, expect, test } from "bun:test";
import OpenAI from "openai";
import { hashKey } from "../../src/auth/keys";
import { adminCall, binaryOnUpstream } from "../helpers/binary";
import { until, windowLeft } from "../helpers/until";
import { PRICED_COST } from "../helpers/upstream";

/** One priced model the keys may use, and one they may not. */
const models = (url: string) => `
model_list:
  - model_name: m
    litellm_params: {model: openai/m, api_base: "${url}", input_cost_per_token: 0.000001, output_cost_per_token: 0.000002}
  - model_name: other
    litellm_params: {model: openai/other, api_base: "${url}", input_cost_per_token: 0.000001, output_cost_per_token: 0.000002}`;

const ADMIN = { authorization: "Bearer sk-1234", "content-type": "application/json" };
const today = () => new Date().toISOString().slice(0, 10);

for (const kind of ["embedded", "postgres"] as const) {
  describe(`a request refused before a provider gets a spend_logs row of status failure (binary on ${kind})`, () => {
    const on = binaryOnUpstream(kind, models);

    const admin = (path: string, body?: object) => adminCall(on.gateway.url, path, body);
    const clientOf = (key: string) => new OpenAI({ apiKey: key, baseURL: `${on.gateway.url}/v1`, maxRetries: 0 });
    const ask = (key: string, model = "m") => clientOf(key).chat.completions.create({ model, messages: [{ role: "user", content: "hi" }], user: "refused-customer" });
    /** The error the openai client throws for a refused request. */
    const refusal = async (key: string, model = "m") => {
      const error = await ask(key, model).then(() => null, (e: unknown) => e as InstanceType<typeof OpenAI.APIError>);
      expect(error).toBeInstanceOf(OpenAI.APIError);
      return error!;
    };
    const logsOf = (token: string): Promise<any[]> => admin(`/spend/logs?api_key=${token}&limit=10000`);
    const rowsOf = async (token: string, count: number) => {
      await until(`${count} spend_logs rows`, async () => (await logsOf(token)).length >= count, 10_000, 100);
      const rows = await logsOf(token);
      expect(rows.length).toBe(count);
      return rows;
    };
    const failed = (rows: any[]) => rows.filter((r) => r.status === "failure");
    const expectRefusedRow = (row: any, status: number, type: string, message: RegExp) => {
      expect(row.spend).toBe(0);
      expect([row.prompt_tokens, row.completion_tokens, row.total_tokens]).toEqual([0, 0, 0]);
      expect(row.deployment).toBeNull();
      expect(row.route).toBe("chat");
      expect(Date.parse(row.end_time)).toBeGreaterThanOrEqual(Date.parse(row.start_time));
      const info = row.metadata.error_information;
      expect([info.error_code, info.error_class]).toEqual([String(status), type]);
      expect(info.error_message).toMatch(message);
    };

    test("a budget refusal, a 429, a model refused to the key, a blocked key and a bad body each leave one row; nothing is charged", async () => {
      // rpm_limit 1 refuses the next request only within the minute of the first.
      await windowLeft(20_000);
      const budget = await admin("/key/generate", { max_budget: 1e-12, user_id: `budget-user-${kind}` });
      await ask(budget.key);
      const overBudget = await refusal(budget.key);
      expect(overBudget.status).toBe(400);

      const limited = await admin("/key/generate", { rpm_limit: 1 });
      await ask(limited.key);
      expect((await refusal(limited.key)).status).toBe(429);

      const narrow = await admin("/key/generate", { models: ["m"] });
      expect((await refusal(narrow.key, "other")).status).toBe(401);

      const blocked = await admin("/key/generate", {});
      await admin("/key/block", { key: blocked.key });
      expect((await refusal(blocked.key)).status).toBe(403);

      const bad = await fetch(`${on.gateway.url}/v1/chat/completions`, { method: "POST", headers: { authorization: `Bearer ${narrow.key}` }, body: "{not json" });
      expect(bad.status).toBe(400);

      const budgetRows = await rowsOf(budget.token, 2);
      expect(budgetRows.map((r) => r.status).sort()).toEqual(["failure", "success"]);
      const [overBudgetRow] = failed(budgetRows);
      expectRefusedRow(overBudgetRow, 400, "budget_exceeded", /ExceededBudget/);
      expect([overBudgetRow.model, overBudgetRow.user_id, overBudgetRow.end_user]).toEqual(["m", `budget-user-${kind}`, "refused-customer"]);
      expect(overBudgetRow.request_id).toBe((overBudget.headers as Headers).get("x-litellm-call-id"));

      const [limitedRow] = failed(await rowsOf(limited.token, 2));
      expectRefusedRow(limitedRow, 429, "rate_limit_error", /Rate limit exceeded/);

      const narrowRows = await rowsOf(narrow.token, 2);
      expectRefusedRow(narrowRows.find((r) => r.model === "other"), 401, "key_model_access_denied", /other/);
      // A body that is not JSON names no model.
      expectRefusedRow(narrowRows.find((r) => r.model === ""), 400, "bad_request_error", /JSON/i);

      const [blockedRow] = await rowsOf(blocked.token, 1);
      expectRefusedRow(blockedRow, 403, "permission_denied", /blocked/);

      // Only the answered requests are charged: the key's, its user's, the customer's and the gateway's spend.
      expect((await admin(`/key/info?key=${budget.key}`)).info.spend).toBeCloseTo(PRICED_COST, 15);
      expect((await admin(`/key/info?key=${limited.key}`)).info.spend).toBeCloseTo(PRICED_COST, 15);
      expect((await admin(`/key/info?key=${narrow.key}`)).info.spend).toBe(0);
      expect((await admin(`/user/info?user_id=budget-user-${kind}`)).user_info.spend).toBeCloseTo(PRICED_COST, 15);
      expect((await admin("/customer/info?end_user_id=refused-customer")).spend).toBeCloseTo(2 * PRICED_COST, 15);
      expect((await admin("/global/spend")).spend).toBeCloseTo(2 * PRICED_COST, 15);

      // The daily activity counts them as failed requests, not successful ones.
      const activity = await admin(`/user/daily/activity?start_date=${today()}&end_date=${today()}&api_key=${limited.token}`);
      expect([activity.metadata.total_api_requests, activity.metadata.total_successful_requests, activity.metadata.total_failed_requests]).toEqual([2, 1, 1]);
      expect(activity.metadata.total_spend).toBeCloseTo(PRICED_COST, 15);
      // Sent to no deployment, it has no provider.
      const providers = activity.results[0].breakdown.providers;
      expect([providers.openai.metrics.successful_requests, providers.unknown.metrics.failed_requests]).toEqual([1, 1]);
    });

    test("a missing or unknown key leaves no row (it is only counted in litegate_rejections_total)", async () => {
      // rpm_limit 1 refuses the next request only within the minute of the first.
      await windowLeft(20_000);
      const all = async () => ((await admin("/spend/logs?limit=10000")) as any[]).length;
      const authRefusals = async () => {
        const text = await (await fetch(`${on.gateway.url}/metrics`, { headers: ADMIN })).text();
        return Number(/^litegate_rejections_total\{reason="auth_error"\} (\S+)$/m.exec(text)?.[1] ?? 0);
      };
      const before = await all();
      const refusedBefore = await authRefusals();
      const unknown = `sk-unknown-${crypto.randomUUID()}`;
      expect((await refusal(unknown)).status).toBe(401);
      const anonymous = await fetch(`${on.gateway.url}/v1/chat/completions`, { method: "POST", body: JSON.stringify({ model: "m", messages: [] }) });
      expect(anonymous.status).toBe(401);
      // A known key's refusal after them: once its row is written, theirs would be too.
      const limited = await admin("/key/generate", { rpm_limit: 1 });
      await ask(limited.key);
      await refusal(limited.key);
      await rowsOf(limited.token, 2);
      expect(await all()).toBe(before + 2);
      expect(await logsOf(hashKey(unknown))).toEqual([]);
      expect((await authRefusals()) - refusedBefore).toBe(2);
    });

    test("a request the provider failed has its row of status failure with the error answered in error_information", async () => {
      const made = await admin("/key/generate", {});
      on.upstream.set({ status: 503, errorMessage: "provider overloaded" });
      try {
        expect((await refusal(made.key)).status).toBe(503);
      } finally {
        on.upstream.reset();
      }
      const [row] = await rowsOf(made.token, 1);
      expect(row.status).toBe("failure");
      expect(row.spend).toBe(0);
      expect(row.deployment).not.toBeNull();
      const info = row.metadata.error_information;
      expect(info.error_code).toBe("503");
      expect(info.error_message).toMatch(/provider overloaded/);
    });

    test("a flood of 429s is written a batch at a time, not a statement per request, and charges nothing", async () => {
      // rpm_limit 1 refuses the next request only within the minute of the first.
      await windowLeft(20_000);
      const statements = async () => {
        const text = await (await fetch(`${on.gateway.url}/metrics`, { headers: ADMIN })).text();
        return Number(/^litegate_db_statements (\S+)$/m.exec(text)![1]);
      };
      const limited = await admin("/key/generate", { rpm_limit: 1 });
      await ask(limited.key);
      await rowsOf(limited.token, 1);
      const before = await statements();
      const FLOOD = 2000;
      const body = JSON.stringify({ model: "m", messages: [{ role: "user", content: "hi" }] });
      const headers = { authorization: `Bearer ${limited.key}`, "content-type": "application/json" };
      let sent = 0;
      await Promise.all(Array.from({ length: 20 }, async () => {
        while (sent < FLOOD) {
          sent++;
          expect((await fetch(`${on.gateway.url}/v1/chat/completions`, { method: "POST", headers, body })).status).toBe(429);
        }
      }));
      await until("every refused row written", async () => (await logsOf(limited.token)).length === FLOOD + 1, 20_000, 250);
      const used = (await statements()) - before;
      // A flush is a few statements whatever it carries (the /spend/logs reads above count too): a statement per request would be 2,000.
      expect(used).toBeLessThan(50);
      expect(failed(await logsOf(limited.token)).length).toBe(FLOOD);
      expect((await admin(`/key/info?key=${limited.key}`)).info.spend).toBeCloseTo(PRICED_COST, 15);
    }, 120_000);
  });
}
