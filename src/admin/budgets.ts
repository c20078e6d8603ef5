import { t } from "elysia";
import type { Sql } from "../db";
import { badRequest } from "../http/errors";
import { firstPeriod, found, isForeignKeyViolation, iso, newPeriodAt, newPeriodSet, periodView, RESERVED_BUDGET_PREFIXES, updateBudgetHolder, write } from "./common";
import { anchorOf } from "../governance/periods";
import type { AdminDeps } from "./deps";
import { Id, ModelBudgets, budgetFields, nextReset, opt, open } from "./fields";
import { adminOnlyRoutes, onlyParams } from "./guard";
import { counterKeys, scopes } from "../governance/keys";
import { parseDuration, sameDuration } from "../governance/duration";
import { startDefaultPeriods } from "../periods";

export const BUDGET_COLUMNS = ["max_budget", "soft_budget", "budget_duration", "budget_reset_at", "tpm_limit", "rpm_limit", "max_parallel_requests", "model_max_budget"];

/** A budget row as the API shows it: the end of the period running now, before the scheduler writes it too. */
export function budgetView(row: Record<string, any>, now?: number) {
  return {
    budget_id: row.budget_id, max_budget: row.max_budget, soft_budget: row.soft_budget, budget_duration: row.budget_duration,
    budget_reset_at: periodView(0, row.budget_reset_at, row.budget_duration, now, anchorOf(row)).budget_reset_at, tpm_limit: row.tpm_limit, rpm_limit: row.rpm_limit,
    max_parallel_requests: row.max_parallel_requests, model_max_budget: row.model_max_budget, created_at: iso(row.created_at),
  };
}

export const budgetBody = { ...budgetFields, model_max_budget: opt(ModelBudgets) };

/** Inserts a budget row (also used for a customer's inline budget). */
export async function insertBudget(sql: Sql, budgetId: string, body: Record<string, any>, now: number) {
  // A reset time sent with the budget is kept (as LiteLLM does), and its periods count from it; else the duration sets the first one.
  const first = body.budget_reset_at ? { resetAt: body.budget_reset_at, anchorAt: body.budget_reset_at } : firstPeriod(body.budget_duration, now);
  const [row] = await write(`budget_id "${budgetId}"`, () => sql.query(
    `insert into budgets (budget_id, max_budget, soft_budget, budget_duration, budget_reset_at, tpm_limit, rpm_limit, max_parallel_requests, model_max_budget,
       budget_anchor_at)
     values ($1, $2, $3, $4, $5, $6, $7, $8, $9::text::jsonb, $10) returning *`,
    [budgetId, body.max_budget ?? null, body.soft_budget ?? null, body.budget_duration ?? null, first.resetAt,
      body.tpm_limit ?? null, body.rpm_limit ?? null, body.max_parallel_requests ?? null, JSON.stringify(body.model_max_budget ?? {}), first.anchorAt]));
  return row!;
}

/**
 * The fields /budget/settings lists, as LiteLLM names, types and describes them (its BudgetNewRequest),
 * in its order.
 */
const SETTINGS: Array<[field: string, type: string, description: string]> = [
  ["max_budget", "Float", "Requests will fail if this budget (in USD) is exceeded."],
  ["soft_budget", "Float", "Requests will NOT fail if this is exceeded. Will fire alerting though."],
  ["max_parallel_requests", "Integer", "Max concurrent requests allowed for this budget id."],
  ["tpm_limit", "Integer", "Max tokens per minute, allowed for this budget id."],
  ["rpm_limit", "Integer", "Max requests per minute, allowed for this budget id."],
  ["budget_duration", "String", "Max duration budget should be set for (e.g. '1hr', '1d', '28d')"],
  ["model_max_budget", "Object", "Max budget for each model (e.g. {'gpt-4o': {'max_budget': '0.0000001', 'budget_duration': '1d', 'tpm_limit': 1000, 'rpm_limit': 1000}})"],
];

export function budgetRoutes(deps: AdminDeps) {
  const { db, clock } = deps;
  /**
   * The budget max_end_user_budget_id names made or deleted: customers without a budget of their own
   * are held to it, or no longer, from their next request (records read again after this instance's
   * spend), on a period of its duration from now when that is another length (see startDefaultPeriods).
   */
  const forgetEndUserDefault = async (id: string) => {
    const config = deps.runtime().config;
    if (id !== config.litellm_settings.max_end_user_budget_id) return;
    await deps.spend.flush();
    await startDefaultPeriods(db, config, clock.now(), deps.spend.flush, ["customers"]);
    deps.invalidate({ kind: "all", restart: [counterKeys.budgetPrefix(scopes.customers())] });
  };
  /**
   * A per-model budget whose period the update changed starts a new one now for the customers and keys
   * on the budget (customers without one of their own too, for max_end_user_budget_id's; keys without
   * an entry of their own for the model), as their own does: what they spent counts in it. Their
   * per-model counters start again from the stored spend.
   */
  const restartModelPeriods = async (id: string, before: Record<string, any>, after: Record<string, any>) => {
    const endUserDefault = id === deps.runtime().config.litellm_settings.max_end_user_budget_id;
    const restart = new Set<string>();
    for (const [model, entry] of Object.entries(after)) {
      const was = before[model];
      // A budget set again where the entry held none: its keys' counters, not kept meanwhile, start from
      // their stored per-model spend (a customer's is kept only while budgeted, see the spend writer).
      // Its customers' are started too, none there yet: their requests in flight hold on them (see holdInFlight).
      if (typeof entry?.budget_limit === "number" && typeof was?.budget_limit !== "number") {
        const keys = await db.query("select token from keys where budget_id = $1 and model_max_budget -> $2 is null", [id, model]);
        for (const row of keys) restart.add(counterKeys.budgetPrefix(scopes.keyModels(row.token)));
        if (endUserDefault) restart.add(counterKeys.budgetPrefix(scopes.everyCustomerModels()));
        else for (const row of await db.query("select user_id from end_users where budget_id = $1", [id])) restart.add(counterKeys.budgetPrefix(scopes.customerModel(row.user_id, model)));
      }
      if (!was || sameDuration(parseDuration(was.time_period ?? undefined), parseDuration(entry?.time_period ?? undefined))) continue;
      const now = clock.now();
      const params = [id, model, ...newPeriodAt(entry?.time_period, now)];
      const start = newPeriodSet("$3", "$4", "s.");
      const customers = await db.query(
        `update customer_model_spend s set ${start} from end_users e
         where e.user_id = s.user_id and s.model = $2 and (e.budget_id = $1 or ($5 and e.budget_id is null)) returning s.user_id`, [...params, endUserDefault]);
      const keys = await db.query(
        `update key_model_spend s set ${start} from keys k
         where k.token = s.token and s.model = $2 and k.budget_id = $1 and k.model_max_budget -> $2 is null returning s.token`, params);
      for (const row of customers) restart.add(counterKeys.budgetPrefix(scopes.customerModels(row.user_id)));
      for (const row of keys) restart.add(counterKeys.budgetPrefix(scopes.keyModels(row.token)));
    }
    if (restart.size > 0) deps.invalidate({ kind: "all", restart: [...restart] });
  };
  return adminOnlyRoutes("admin-budgets", deps)
    .post("/budget/new", async ({ body }) => {
      const own = RESERVED_BUDGET_PREFIXES.find((prefix) => body.budget_id?.startsWith(prefix));
      if (own) throw badRequest(`budget_id: ids starting with "${own}" are those litegate gives a membership's, a team's members' or a customer's own budget`, "budget_id");
      const row = await insertBudget(db, body.budget_id ?? crypto.randomUUID(), body, clock.now());
      await forgetEndUserDefault(row.budget_id);
      return budgetView(row, clock.now());
    }, { body: t.Object({ ...budgetBody, budget_id: opt(Id), ...nextReset }, open), detail: { tags: ["budget management"], summary: "Create a budget (limits shared by customers or members)" } })
    .post("/budget/update", async ({ body }) => {
      const [before] = body.model_max_budget ? await db.query("select model_max_budget from budgets where budget_id = $1", [body.budget_id]) : [];
      const row = await updateBudgetHolder(deps, {
        table: "budgets", idColumn: "budget_id", what: "Budget", columns: BUDGET_COLUMNS, json: ["model_max_budget"],
      }, body.budget_id, body);
      if (body.model_max_budget) await restartModelPeriods(body.budget_id, before?.model_max_budget ?? {}, body.model_max_budget);
      return budgetView(row, clock.now());
    }, { body: t.Object({ ...budgetBody, budget_id: Id, ...nextReset }, open), detail: { tags: ["budget management"], summary: "Change a budget" } })
    .post("/budget/info", async ({ body }) => {
      const rows = await db.query("select * from budgets where budget_id = any($1::text[]) order by budget_id", [body.budgets]);
      const now = clock.now();
      return rows.map((row) => budgetView(row, now));
    }, { body: t.Object({ budgets: t.Array(Id, { minItems: 1 }) }, open), detail: { tags: ["budget management"], summary: "Budgets by id" } })
    .get("/budget/list", async ({ request }) => {
      onlyParams(request, []);
      const now = clock.now();
      return (await db.query("select * from budgets order by created_at, budget_id")).map((row) => budgetView(row, now));
    },
      { detail: { tags: ["budget management"], summary: "List budgets" } })
    .get("/budget/settings", async ({ query, request }) => {
      onlyParams(request, ["budget_id"]);
      const [row] = await db.query("select * from budgets where budget_id = $1", [query.budget_id]);
      const budget = found(row, "Budget");
      return SETTINGS.map(([field_name, field_type, field_description]) => ({
        field_name, field_type, field_description, field_value: budget[field_name] ?? null, stored_in_db: true, field_default_value: null,
      }));
    }, { query: t.Object({ budget_id: Id }), detail: { tags: ["budget management"], summary: "A budget's settings, each with its type and description" } })
    .post("/budget/delete", async ({ body }) => {
      const id = body.id ?? body.budget_id;
      if (!id) throw badRequest("id: required, the budget to delete", "id");
      const inUse = async () => {
        const [use] = await db.query(
          `select (select count(*) from end_users where budget_id = $1)::int as customers, (select count(*) from keys where budget_id = $1)::int as keys,
                  (select count(*) from team_memberships where budget_id = $1)::int as members`, [id]);
        if (use!.customers + use!.keys + use!.members === 0) return null;
        return badRequest(`budget "${id}" is still used by ${use!.customers} customer(s), ${use!.keys} key(s) and ${use!.members} team membership(s); move them to another budget first`, "id");
      };
      // Someone may take the budget into use, or leave it, between the check and the delete: the check is
      // made again, and the delete tried again, until one of them is the answer.
      for (let attempt = 1; ; attempt++) {
        const used = await inUse();
        if (used) throw used;
        try {
          const [row] = await db.query("delete from budgets where budget_id = $1 returning *", [id]);
          await forgetEndUserDefault(id);
          return budgetView(found(row, "Budget"), clock.now());
        } catch (error) {
          if (!isForeignKeyViolation(error)) throw error;
          if (attempt === 5) throw badRequest(`budget "${id}" is being taken into use and left as it is deleted; try again`, "id");
        }
      }
    }, { body: t.Object({ id: t.Optional(Id), budget_id: t.Optional(Id) }, open), detail: { tags: ["budget management"], summary: "Delete an unused budget" } });
}
