import { t } from "elysia";
import { counterKeys, scopes } from "../governance/keys";
import { badRequest, notFound } from "../http/errors";
import type { Sql } from "../db";
import { deletedRows, windowsOf } from "../spend/reset";
import { assignments, budgetTableView, dropOwnBudgets, firstPeriod, found, mustBeSharedBudget, newPeriodAt, newPeriodSet, periodView, resetAtFor, spendIntoPeriod, write } from "./common";
import { anchorOf } from "../governance/periods";
import type { AdminDeps } from "./deps";
import { Id, Money, customerRefusedFields, nextReset, opt, open } from "./fields";
import { parseDuration, sameDuration } from "../governance/duration";
import { adminOnlyRoutes, onlyParams } from "./guard";
import { BUDGET_COLUMNS, budgetBody, insertBudget } from "./budgets";

const INLINE = Object.keys(budgetBody);

export function customerView(row: Record<string, any>, now?: number) {
  return {
    user_id: row.user_id, alias: row.alias, blocked: row.blocked, budget_id: row.budget_id,
    ...periodView(row.spend, row.budget_reset_at, row.litellm_budget_table?.budget_duration, now, anchorOf(row)),
    litellm_budget_table: budgetTableView(row.litellm_budget_table, now), metadata: row.metadata,
  };
}

const SELECT = "select e.*, row_to_json(b) as litellm_budget_table from end_users e left join budgets b on b.budget_id = e.budget_id";

/** A customer's spend per model (kept for the models its budget's model_max_budget holds), in its period running now. */
async function modelSpendOf(db: Sql, userId: string, budgets: Record<string, any> | undefined, now: number) {
  const rows = await db.query("select model, spend, budget_reset_at from customer_model_spend where user_id = $1", [userId]);
  return Object.fromEntries(rows.map((s) => [s.model, periodView(s.spend, s.budget_reset_at, budgets?.[s.model]?.time_period, now).spend]));
}

/**
 * A per-model budget whose period changed (the customer's budget, or its move to another one) starts a
 * new one now, as a key's does; the counters of every model of the customer start again from the stored
 * spend. The counter prefixes to start again.
 */
async function restartModelPeriods(tx: Sql, userId: string, before: Record<string, any>, after: Record<string, any>, now: number): Promise<string[]> {
  if (JSON.stringify(before) === JSON.stringify(after)) return [];
  for (const [model, entry] of Object.entries(after)) {
    const was = before[model];
    if (!was || sameDuration(parseDuration(was.time_period ?? undefined), parseDuration(entry?.time_period ?? undefined))) continue;
    await tx.query(`update customer_model_spend set ${newPeriodSet("$3", "$4")} where user_id = $1 and model = $2`, [userId, model, ...newPeriodAt(entry?.time_period, now)]);
  }
  return [counterKeys.budgetPrefix(scopes.customerModels(userId))];
}

/** Whether a budget field sent holds the value the budget already has (`had`; none: null, or {} for model_max_budget). */
function unchanged(field: string, had: unknown, sent: unknown): boolean {
  if (field === "budget_duration") return sameDuration(parseDuration(had), parseDuration(sent));
  if (field === "model_max_budget") return JSON.stringify(had ?? {}) === JSON.stringify(sent ?? {});
  return (had ?? null) === (sent ?? null);
}

/**
 * Drops from `changes` the fields that change nothing on the budget the customer is to be on (nulls for
 * one on none), as an admin screen sends every field: a customer on a shared budget stays on it, one
 * on none stays on max_end_user_budget (an empty budget of its own would cap nothing).
 */
async function dropUnchanged(tx: Sql, budgetId: string | null, changes: Record<string, unknown>): Promise<void> {
  const [budget] = budgetId ? await tx.query("select * from budgets where budget_id = $1", [budgetId]) : [];
  for (const field of Object.keys(changes)) if (unchanged(field, budget?.[field], changes[field])) delete changes[field];
}

const modelBudgetsOf = async (tx: Sql, budgetId: string | null): Promise<Record<string, any>> =>
  budgetId ? ((await tx.query("select model_max_budget from budgets where budget_id = $1", [budgetId]))[0]?.model_max_budget ?? {}) : {};

/**
 * Inline budget fields sent to /customer/update: the customer's own budget row changes in place; a
 * shared budget (or none) is copied into a new one of the customer's own, with the changes on top.
 */
async function changeOwnBudget(tx: Sql, userId: string, budgetId: string | null, changes: Record<string, unknown>, now: number): Promise<string> {
  // Its own: `customer:<its id>:<uuid>` (customer "a" is not the owner of customer "a:b"'s).
  const own = `customer:${userId}:`;
  if (budgetId?.startsWith(own) && !budgetId.slice(own.length).includes(":")) {
    const { sets, values } = assignments(changes, BUDGET_COLUMNS, ["model_max_budget"]);
    values.push(budgetId);
    await tx.query(`update budgets set ${[...sets, "updated_at = now()"].join(", ")} where budget_id = $${values.length}`, values);
    return budgetId;
  }
  const [base] = budgetId ? await tx.query("select * from budgets where budget_id = $1", [budgetId]) : [];
  return (await insertBudget(tx, `customer:${userId}:${crypto.randomUUID()}`, { ...base, ...changes }, now)).budget_id;
}

/** The customer routes under `/customer`, and again under LiteLLM's older `/end_user` prefix. */
export function customerRoutes(deps: AdminDeps, prefix: "/customer" | "/end_user" = "/customer") {
  const { db, clock } = deps;
  const one = async (id: string) => customerView(found((await db.query(`${SELECT} where e.user_id = $1`, [id]))[0], "Customer"), clock.now());
  // A customer not seen yet is created blocked, as LiteLLM does: its first request is then refused.
  const setBlocked = async (ids: string[], blocked: boolean) => {
    const rows = await db.query(
      blocked
        ? `insert into end_users (user_id, blocked) select distinct id, true from unnest($1::text[]) as id
           on conflict (user_id) do update set blocked = true, updated_at = now() returning user_id`
        : "update end_users set blocked = false, updated_at = now() where user_id = any($1::text[]) returning user_id",
      [ids]);
    for (const row of rows) deps.invalidate({ kind: "customer", id: row.user_id });
    return { [blocked ? "blocked_users" : "unblocked_users"]: rows.map((r) => r.user_id) };
  };
  /** The duration a customer on `budgetId` resets on: that budget's, or max_end_user_budget_id's for one on none. */
  const durationOn = async (tx: Sql, budgetId: string | null): Promise<string | null> => {
    const id = budgetId ?? deps.runtime().config.litellm_settings.max_end_user_budget_id ?? null;
    return id ? ((await tx.query("select budget_duration from budgets where budget_id = $1", [id]))[0]?.budget_duration ?? null) : null;
  };
  const inlineOf = (body: Record<string, unknown>) => INLINE.filter((field) => body[field] !== undefined && body[field] !== null);

  const routes = adminOnlyRoutes(`admin-customers${prefix}`, deps)
    .post(`${prefix}/new`, async ({ body }) => {
      const inline = inlineOf(body);
      if (body.budget_id && inline.length > 0) throw badRequest(`send either budget_id or inline budget fields (${inline.join(", ")}), not both`, "budget_id");
      await db.transaction(async (tx) => {
        let budgetId = body.budget_id ?? null;
        if (budgetId) await mustBeSharedBudget(tx, budgetId, null);
        else if (inline.length > 0) budgetId = (await insertBudget(tx, `customer:${body.user_id}:${crypto.randomUUID()}`, body, clock.now())).budget_id;
        const duration = await durationOn(tx, budgetId);
        // A first reset sent is the customer's (its budget's period is the customer's own); else the duration's from now.
        const first = duration && body.budget_reset_at ? { resetAt: body.budget_reset_at, anchorAt: body.budget_reset_at } : firstPeriod(duration, clock.now());
        await write(`customer "${body.user_id}"`, () => tx.query(
          `insert into end_users (user_id, alias, budget_id, blocked, metadata, budget_reset_at, spend, budget_anchor_at)
           values ($1, $2, $3, $4, $5::text::jsonb, $6, $7, $8)`,
          [body.user_id, body.alias ?? null, budgetId, body.blocked ?? false, JSON.stringify(body.metadata ?? {}), first.resetAt, body.spend ?? 0,
            first.anchorAt]));
      });
      deps.invalidate({ kind: "customer", id: body.user_id });
      return one(body.user_id);
    }, {
      body: t.Object({ ...budgetBody, ...customerRefusedFields, user_id: Id, alias: opt(t.String({ maxLength: 512 })), budget_id: opt(Id), blocked: opt(t.Boolean()), metadata: opt(t.Record(t.String(), t.Unknown())), spend: opt(Money),
        // The customer's first reset (and an inline budget's), as /budget/new takes it.
        ...nextReset }, open),
      detail: { tags: ["customer management"], summary: "Create a customer (the `user` of requests) with a budget_id or an inline budget" },
    })
    .post(`${prefix}/update`, async ({ body }) => {
      // Spend still in memory is written first: it belongs to the period it was spent in.
      await deps.spend.flush();
      const inline = inlineOf(body);
      if (body.budget_id && inline.length > 0) throw badRequest(`send either budget_id or inline budget fields (${inline.join(", ")}), not both`, "budget_id");
      const now = clock.now();
      // Only the fields sent change (null clears one); the others keep their values.
      const changes: Record<string, unknown> = Object.fromEntries(INLINE.filter((field) => field in body).map((field) => [field, (body as Record<string, unknown>)[field]]));
      const restart: string[] = [];
      await db.transaction(async (tx) => {
        // Locked: changes of one customer at once go one after the other, each reading what the one before left
        // (the own budget another change or a delete just dropped would otherwise be written back).
        const [current] = await tx.query("select * from end_users where user_id = $1 for update", [body.user_id]);
        found(current, "Customer");
        // A budget_id of null takes the customer off its budget (back to max_end_user_budget).
        let budgetId: string | null = "budget_id" in body ? body.budget_id ?? null : current!.budget_id;
        if (!body.budget_id) await dropUnchanged(tx, budgetId, changes);
        // Another duration starts a new period; the same one sent again (an admin screen sends every field) leaves it running.
        const was = await durationOn(tx, current!.budget_id);
        const newPeriod = "budget_duration" in changes && !sameDuration(parseDuration(was ?? undefined), parseDuration(changes.budget_duration ?? undefined));
        if (newPeriod) changes.budget_reset_at = resetAtFor(changes.budget_duration as string | null, now);
        if (body.budget_id) await mustBeSharedBudget(tx, body.budget_id, current!.budget_id);
        else if (Object.keys(changes).length > 0) budgetId = await changeOwnBudget(tx, body.user_id, budgetId, changes, now);
        const duration = await durationOn(tx, budgetId);
        // A shared budget deleted since it was checked: a 400 naming budget_id.
        await write(`customer "${body.user_id}"`, () => tx.query(
          `update end_users set alias = case when $9 then $2 else alias end, budget_id = $3, blocked = coalesce($4, blocked),
             spend = coalesce($5, case when $6 or ($8 and $3 is distinct from budget_id) then ${spendIntoPeriod("$10")} else spend end),
             budget_reset_at = case when $6 or ($8 and $3 is distinct from budget_id) then $7 else budget_reset_at end,
             budget_anchor_at = case when $6 or ($8 and $3 is distinct from budget_id) then $10 else budget_anchor_at end,
             spend_set_at = case when $5 is null then spend_set_at else $10 end, updated_at = now()
           where user_id = $1`,
          // The period restarts with a new duration or on a move to another budget (or off one), not with a copy of the same one.
          [body.user_id, body.alias ?? null, budgetId, body.blocked ?? null, body.spend ?? null, newPeriod,
            resetAtFor(duration, now), "budget_id" in body, "alias" in body, new Date(now)]), "budget_id");
        if ("model_max_budget" in changes || "budget_id" in body) {
          const [before, after] = [await modelBudgetsOf(tx, current!.budget_id), await modelBudgetsOf(tx, budgetId)];
          restart.push(...await restartModelPeriods(tx, body.user_id, before, after, now));
        }
        // A budget of the customer's own that it leaves goes, as it would with the customer.
        if (budgetId !== current!.budget_id) await dropOwnBudgets(tx, [current!.budget_id]);
      });
      // A budget changed or set again (none kept the counter up to date meanwhile) counts from the stored spend.
      // Its spend per model stays: `spend` sets what the customer spent in all, as a key's does.
      if (body.spend !== undefined || "budget_duration" in changes || "max_budget" in changes || "budget_id" in body) {
        restart.push(counterKeys.budgetPrefix(scopes.customer(body.user_id)));
      }
      deps.invalidate({ kind: "customer", id: body.user_id, reset: body.spend !== undefined ? [{ table: "customers", id: body.user_id }] : undefined, restart });
      return one(body.user_id);
    }, {
      body: t.Object({ ...budgetBody, ...customerRefusedFields, user_id: Id, alias: opt(t.String({ maxLength: 512 })), budget_id: opt(Id), blocked: opt(t.Boolean()), spend: t.Optional(Money) }, open),
      detail: { tags: ["customer management"], summary: "Change a customer" },
    })
    .post(`${prefix}/delete`, async ({ body }) => {
      const rows = await db.transaction(async (tx) => {
        const gone = await tx.query("delete from end_users where user_id = any($1::text[]) returning user_id, budget_id", [body.user_ids]);
        // All or nothing, as LiteLLM deletes them (and litegate deletes keys, users and teams).
        const missing = body.user_ids.filter((id) => !gone.some((row) => row.user_id === id));
        if (missing.length > 0) throw notFound(`End User Id(s)=${[...new Set(missing)].join(", ")} do not exist in db; nothing was deleted`);
        // A customer's own budget (an inline one, or a copy made for it) goes with it.
        await dropOwnBudgets(tx, gone.map((row) => row.budget_id));
        return gone;
      });
      // A customer made again under the same id starts from nothing (its spend per model went with its rows),
      // with all its parallel slots, even while requests of the deleted one are still in flight.
      for (const row of rows) {
        const reset = deletedRows([{ table: "customers", id: row.user_id }, { table: "customerModels", id: row.user_id }]);
        deps.invalidate({ kind: "customer", id: row.user_id, reset, restart: windowsOf(reset) });
      }
      return { deleted_customers: rows.map((r) => r.user_id) };
    }, { body: t.Object({ user_ids: t.Array(Id, { minItems: 1 }) }, open), detail: { tags: ["customer management"], summary: "Delete customers" } })
    .get(`${prefix}/info`, async ({ query, request }) => {
      onlyParams(request, ["end_user_id"]);
      const customer = await one(query.end_user_id);
      // Beside LiteLLM's fields, as /key/info shows a key's: what it spent per model its budget holds it to.
      return { ...customer, model_spend: await modelSpendOf(db, customer.user_id, customer.litellm_budget_table?.model_max_budget, clock.now()) };
    }, { query: t.Object({ end_user_id: Id }), detail: { tags: ["customer management"], summary: "A customer with its budget and spend" } })
    .get(`${prefix}/list`, async ({ request }) => {
      onlyParams(request, []);
      return (await db.query(`${SELECT} order by e.created_at, e.user_id`)).map((row) => customerView(row, clock.now()));
    }, { detail: { tags: ["customer management"], summary: "List customers" } })
    .post(`${prefix}/block`, ({ body }) => setBlocked(body.user_ids, true), { body: t.Object({ user_ids: t.Array(Id, { minItems: 1 }) }, open), detail: { tags: ["customer management"], summary: "Block customers" } })
    .post(`${prefix}/unblock`, ({ body }) => setBlocked(body.user_ids, false), { body: t.Object({ user_ids: t.Array(Id, { minItems: 1 }) }, open), detail: { tags: ["customer management"], summary: "Unblock customers" } });
  return routes;
}
