import { t } from "elysia";
import { periodOf } from "../governance/periods";
import { badRequest } from "../http/errors";
import { iso, tokenOf } from "./common";
import type { AdminDeps } from "./deps";
import { Page, numeric, timestampOf } from "./fields";
import { adminOnlyRoutes, onlyParams } from "./guard";

function dateOf(text: string | undefined, field: string, endOfDay: boolean): Date | null {
  if (text === undefined) return null;
  const date = timestampOf(text, endOfDay);
  if (!date) throw badRequest(`${field}: not a date (use YYYY-MM-DD or an ISO timestamp)`, field);
  return date;
}

/** Days a daily summary may span (each day is one entry, spent or not). */
const SUMMARY_DAYS = 3660;
const DAY_MS = 86_400_000;

/**
 * Spend per UTC day, as LiteLLM answers /spend/logs given both dates: each day from the first to the
 * last with its total, its spend per key hash (as members named by the hash), per user and per model;
 * days without spend are there with 0.
 */
async function dailySummary(db: AdminDeps["db"], where: string, params: unknown[], start: Date, end: Date) {
  const days = Math.floor(end.getTime() / DAY_MS) - Math.floor(start.getTime() / DAY_MS) + 1;
  if (days > SUMMARY_DAYS) throw badRequest(`end_date: a daily summary spans at most ${SUMMARY_DAYS} days; narrow the dates or send summarize=false`, "end_date");
  const rows = await db.query(
    `select to_char(start_time at time zone 'UTC', 'YYYY-MM-DD') as day, api_key, coalesce(user_id, '') as user_id, model, sum(spend)::float8 as spend
     from spend_logs ${where} group by 1, 2, 3, 4 order by 1`, params);
  const byDay = new Map<string, Record<string, any>>();
  for (let i = 0; i < days; i++) {
    const day = new Date(Math.floor(start.getTime() / DAY_MS) * DAY_MS + i * DAY_MS).toISOString().slice(0, 10);
    byDay.set(day, { startTime: day, spend: 0, users: {}, models: {} });
  }
  for (const row of rows) {
    const entry = byDay.get(row.day);
    if (!entry) continue;
    entry.spend += row.spend;
    entry[row.api_key] = (entry[row.api_key] ?? 0) + row.spend;
    entry.users[row.user_id] = (entry.users[row.user_id] ?? 0) + row.spend;
    entry.models[row.model] = (entry.models[row.model] ?? 0) + row.spend;
  }
  return [...byDay.values()];
}

/** LiteLLM's `call_type` for each route (it calls its async functions; litegate never caches an answer). */
const CALL_TYPES: Record<string, string> = { chat: "acompletion", completions: "atext_completion", embeddings: "aembedding", messages: "anthropic_messages" };

const SPEND_LOG_PARAMS = ["request_id", "api_key", "user_id", "team_id", "end_user", "start_date", "end_date", "summarize", "page", "limit"];

export function spendRoutes(deps: AdminDeps) {
  const { db } = deps;
  return adminOnlyRoutes("admin-spend", deps)
    .get("/spend/logs", async ({ query, request }) => {
      onlyParams(request, SPEND_LOG_PARAMS);
      const where: string[] = [];
      const params: unknown[] = [];
      const add = (sql: string, value: unknown) => {
        params.push(value);
        where.push(sql.replace("?", `$${params.length}`));
      };
      // A filter sent empty filters by "" (LiteLLM's docs make the user ""), rather than being dropped and listing every row.
      if (query.request_id !== undefined) add("request_id = ?", query.request_id);
      if (query.api_key !== undefined) add("api_key = ?", tokenOf(query.api_key));
      if (query.user_id !== undefined) add("user_id = ?", query.user_id);
      if (query.team_id !== undefined) add("team_id = ?", query.team_id);
      if (query.end_user !== undefined) add("end_user = ?", query.end_user);
      const start = dateOf(query.start_date, "start_date", false);
      const end = dateOf(query.end_date, "end_date", true);
      if (start) add("start_time >= ?", start);
      if (end) add("start_time <= ?", end);
      const summarize = query.summarize?.toLowerCase();
      if (summarize !== undefined && summarize !== "true" && summarize !== "false") throw badRequest(`summarize: must be true or false (got ${JSON.stringify(query.summarize).slice(0, 100)})`, "summarize");
      if (start && end && summarize !== "false") return dailySummary(db, `where ${where.join(" and ")}`, params, start, end);
      // Pages of `limit` rows, newest first (request_id breaks ties, so pages neither repeat nor skip a row).
      const limit = Math.min(Number(query.limit ?? 1000), 10_000);
      const offset = (Number(query.page ?? 1) - 1) * limit;
      const rows = await db.query(
        `select * from spend_logs ${where.length ? `where ${where.join(" and ")}` : ""} order by start_time desc, request_id limit ${limit} offset ${offset}`, params);
      // LiteLLM's names for the same columns ride along, for scripts written against it.
      return rows.map((r) => {
        const start_time = iso(r.start_time);
        const end_time = iso(r.end_time);
        return {
          ...r, start_time, end_time, startTime: start_time, endTime: end_time, user: r.user_id,
          call_type: CALL_TYPES[r.route] ?? r.route, model_group: r.model, model_id: r.deployment, cache_hit: "False",
        };
      });
    }, {
      query: t.Object({
        request_id: t.Optional(t.String()), api_key: t.Optional(t.String()), user_id: t.Optional(t.String()), team_id: t.Optional(t.String()), end_user: t.Optional(t.String()),
        start_date: t.Optional(t.String()), end_date: t.Optional(t.String()), summarize: t.Optional(t.String()), page: t.Optional(Page), limit: t.Optional(numeric({ minimum: 1, maximum: 10_000, integer: true, field: "limit" })),
      }),
      detail: { tags: ["spend"], summary: "Spend logs, newest first, filtered by request, key, user, team, customer and dates; with both dates, spend per day unless summarize=false" },
    })
    .get("/global/spend", async ({ request }) => {
      onlyParams(request, []);
      const [row] = await db.query("select spend, budget_reset_at, updated_at, budget_anchor_at from gateway_spend where id = 1");
      const settings = deps.runtime().config.litellm_settings;
      // As enforcement sees it: a period that has ended counts as reset, and a budget with no period has no reset time.
      const duration = settings.max_budget === undefined ? null : settings.budget_duration;
      const period = periodOf(row?.spend ?? 0, duration, row?.budget_reset_at ?? null, row?.updated_at ?? null, deps.clock.now(), row?.budget_anchor_at ?? null);
      return { spend: period.spend, max_budget: settings.max_budget ?? null, budget_reset_at: period.end === null ? null : iso(new Date(period.end)) };
    }, { detail: { tags: ["spend"], summary: "The whole gateway's spend" } });
}
