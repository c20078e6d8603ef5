import { t } from "elysia";
import { badRequest } from "../http/errors";
import { tokenOf } from "./common";
import type { AdminDeps } from "./deps";
import { timestampOf } from "./fields";
import { adminOnlyRoutes, onlyParams } from "./guard";

/** A day as LiteLLM's reports take it: YYYY-MM-DD and nothing else (their dates are days, not instants). */
function dayOf(text: string | undefined, field: string, endOfDay: boolean): Date {
  if (text === undefined) throw badRequest(`${field}: required (YYYY-MM-DD); please provide start_date and end_date`, field);
  const date = /^\d{4}-\d{2}-\d{2}$/.test(text) ? timestampOf(text, endOfDay) : null;
  if (!date) throw badRequest(`${field}: not a date (use YYYY-MM-DD, got ${JSON.stringify(text).slice(0, 100)})`, field);
  return date;
}

/**
 * The UTC days from `start_date` to `end_date`, both whole (the end day's spend is in), as the
 * bounds of a `start_time >= $from and start_time <= $to` filter.
 */
export function dayRange(query: { start_date?: string; end_date?: string }): { from: Date; to: Date } {
  const from = dayOf(query.start_date, "start_date", false);
  const to = dayOf(query.end_date, "end_date", true);
  if (to < from) throw badRequest(`end_date: ${query.end_date} is before start_date ${query.start_date}`, "end_date");
  return { from, to };
}

/** A UTC day's column, the same text on PGlite and Postgres. */
export const DAY = "to_char(start_time at time zone 'UTC', 'YYYY-MM-DD')";

/** Filters joined with `and`, each value a numbered parameter. */
export function filters(initial: Array<[sql: string, value: unknown]>) {
  const where: string[] = [];
  const params: unknown[] = [];
  const add = (sql: string, value: unknown) => {
    params.push(value);
    where.push(sql.replace("?", `$${params.length}`));
  };
  for (const [sql, value] of initial) add(sql, value);
  return { add, where: () => `where ${where.join(" and ")}`, params };
}

const REPORT_PARAMS = ["start_date", "end_date", "group_by", "api_key", "internal_user_id", "team_id", "customer_id"];
const GROUPS = ["team", "customer", "api_key"];

/** Spend per key (then per model within it), highest first: LiteLLM's answer for one key, one user or group_by=api_key. */
async function perKey(db: AdminDeps["db"], where: string, params: unknown[]) {
  const rows = await db.query(
    `select api_key, model, sum(spend)::float8 as cost, sum(prompt_tokens)::float8 as input, sum(completion_tokens)::float8 as output
     from spend_logs l ${where} group by 1, 2 order by 1, 2`, params);
  const keys = new Map<string, { api_key: string; total_cost: number; total_input_tokens: number; total_output_tokens: number; model_details: object[] }>();
  for (const r of rows) {
    let key = keys.get(r.api_key);
    if (!key) keys.set(r.api_key, key = { api_key: r.api_key, total_cost: 0, total_input_tokens: 0, total_output_tokens: 0, model_details: [] });
    key.total_cost += r.cost;
    key.total_input_tokens += r.input;
    key.total_output_tokens += r.output;
    key.model_details.push({ model: r.model, total_cost: r.cost, total_input_tokens: r.input, total_output_tokens: r.output });
  }
  return [...keys.values()].sort((a, b) => b.total_cost - a.total_cost);
}

/**
 * Spend per UTC day that has any, per team and/or customer, each with its spend per model and key
 * (`metadata`), as LiteLLM's `group_by_day` list. A team is named by its alias, else its id; spend
 * of no team is LiteLLM's "Unassigned Team".
 */
async function perDay(db: AdminDeps["db"], where: string, params: unknown[], by: { team: boolean; customer: boolean }) {
  const groupColumns = [...(by.team ? ["l.team_id", "t.team_alias"] : []), ...(by.customer ? ["l.end_user"] : [])];
  const columns = [`${DAY} as day`, ...groupColumns, "l.model", "l.api_key"];
  const positions = columns.map((_, i) => i + 1).join(", ");
  const rows = await db.query(
    `select ${columns.join(", ")}, sum(l.spend)::float8 as spend, sum(l.total_tokens)::float8 as total_tokens
     from spend_logs l ${by.team ? "left join teams t on t.team_id = l.team_id" : ""} ${where}
     group by ${positions} order by ${positions}`, params);
  const listName = by.team && by.customer ? "teams_customers" : by.team ? "teams" : "customers";
  const days = new Map<string, Map<string, Record<string, any>>>();
  for (const r of rows) {
    let groups = days.get(r.day);
    if (!groups) days.set(r.day, groups = new Map());
    const name = JSON.stringify([r.team_id, r.end_user]);
    let group = groups.get(name);
    if (!group) {
      group = {
        ...(by.team ? { team_name: r.team_alias ?? r.team_id ?? "Unassigned Team", team_id: r.team_id } : {}),
        ...(by.customer ? { customer: r.end_user } : {}),
        total_spend: 0, metadata: [],
      };
      groups.set(name, group);
    }
    group.total_spend += r.spend;
    group.metadata.push({ model: r.model, api_key: r.api_key, spend: r.spend, total_tokens: r.total_tokens });
  }
  return [...days].map(([day, groups]) => ({ group_by_day: `${day}T00:00:00+00:00`, [listName]: [...groups.values()] }));
}

export function reportRoutes(deps: AdminDeps) {
  const { db } = deps;
  return adminOnlyRoutes("admin-reports", deps)
    .get("/global/spend/report", async ({ query, request }) => {
      onlyParams(request, REPORT_PARAMS);
      const { from, to } = dayRange(query);
      const groupBy = query.group_by ?? "team";
      if (!GROUPS.includes(groupBy)) throw badRequest(`group_by: must be team, customer or api_key (got ${JSON.stringify(groupBy).slice(0, 100)})`, "group_by");
      const f = filters([["l.start_time >= ?", from], ["l.start_time <= ?", to]]);
      // Every filter sent applies (LiteLLM answers all teams for a team_id without a customer_id).
      if (query.api_key !== undefined) f.add("l.api_key = ?", tokenOf(query.api_key));
      if (query.internal_user_id !== undefined) f.add("l.user_id = ?", query.internal_user_id);
      if (query.team_id !== undefined) f.add("l.team_id = ?", query.team_id);
      if (query.customer_id !== undefined) f.add("l.end_user = ?", query.customer_id);
      if (query.api_key !== undefined || query.internal_user_id !== undefined || groupBy === "api_key") {
        return perKey(db, f.where(), f.params);
      }
      const both = query.team_id !== undefined && query.customer_id !== undefined;
      return perDay(db, f.where(), f.params, { team: both || groupBy === "team", customer: both || groupBy === "customer" });
    }, {
      query: t.Object({
        start_date: t.Optional(t.String()), end_date: t.Optional(t.String()), group_by: t.Optional(t.String()), api_key: t.Optional(t.String()),
        internal_user_id: t.Optional(t.String()), team_id: t.Optional(t.String()), customer_id: t.Optional(t.String()),
      }),
      detail: { tags: ["spend"], summary: "Spend per UTC day per team or customer (each with its spend per model and key), or per key and model" },
    });
}
