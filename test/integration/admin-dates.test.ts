import { describe, expect, test } from "bun:test";
import { gatewayFor } from "../helpers/gateway";

/** 23:59:59 on the last day of 9999, twelve hours west of UTC: the year 10000 in UTC. */
const PAST_9999 = "9999-12-31T23:59:59-12:00";

for (const kind of ["pglite", "postgres"] as const) {
  describe(`dates outside the years 1 to 9999 in UTC are refused with a 400 (${kind})`, () => {
    const g = gatewayFor(kind);

    test("budget_reset_at in /key/update, /user/update, /team/update, /budget/new, /budget/update and /customer/new", async () => {
      const key = await g.json("/key/generate", { max_budget: 5, budget_duration: "30d" });
      expect(key.status).toBe(200);
      await g.json("/user/new", { user_id: "date-user" });
      await g.json("/team/new", { team_id: "date-team" });
      await g.json("/budget/new", { budget_id: "date-budget", max_budget: 1 });
      for (const [path, body] of [
        ["/key/update", { key: key.body.key }], ["/user/update", { user_id: "date-user" }], ["/team/update", { team_id: "date-team" }],
        ["/budget/new", { budget_id: "date-budget-2", max_budget: 1 }], ["/budget/update", { budget_id: "date-budget" }],
        ["/customer/new", { user_id: "date-customer", max_budget: 1 }],
      ] as const) {
        const { status, body: answer } = await g.json(path, { ...body, budget_reset_at: PAST_9999 });
        expect(`${path} → ${status}`).toBe(`${path} → 400`);
        expect(answer.error).toMatchObject({ code: "400", param: "budget_reset_at" });
      }
      // Nothing was stored: the key's reset is still the one its duration set, a year 10000 nowhere.
      const info = await g.json(`/key/info?key=${key.body.key}`);
      expect(info.body.info.budget_reset_at).toStartWith(String(new Date().getUTCFullYear()).slice(0, 2));
      expect((await g.json("/customer/info?end_user_id=date-customer")).status).toBe(404);
      // The last second in range is taken.
      const last = await g.json("/key/update", { key: key.body.key, budget_reset_at: "9999-12-31T23:59:59+12:00" });
      expect(last.status).toBe(200);
      expect(last.body.budget_reset_at).toBe("9999-12-31T11:59:59.000Z");
    });

    test("start_date and end_date of /spend/logs", async () => {
      for (const param of ["start_date", "end_date"]) {
        const { status, body } = await g.json(`/spend/logs?${param}=${encodeURIComponent(PAST_9999)}`);
        expect(`${param} → ${status}`).toBe(`${param} → 400`);
        expect(body.error).toMatchObject({ code: "400", param });
      }
      expect((await g.json(`/spend/logs?start_date=2026-01-01&end_date=${encodeURIComponent("9999-12-31T23:59:59+12:00")}&summarize=false`)).status).toBe(200);
    });
  });
}
