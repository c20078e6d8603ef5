import { Elysia, t } from "elysia";
import type { Caller } from "../auth";
import { isProxyAdminViewer } from "../auth/principal";
import { authError } from "../http/errors";
import { tokenOf } from "./common";
import type { AdminDeps } from "./deps";
import { Page, numeric } from "./fields";
import { onlyParams } from "./guard";
import { DAY, dayRange, filters } from "./reports";

const ACTIVITY_PARAMS = ["start_date", "end_date", "model", "api_key", "user_id", "page", "page_size"];
const PageSize = numeric({ minimum: 1, maximum: 1000, integer: true, field: "page_size" });

/** LiteLLM's metrics of a day or a breakdown entry; litegate's logs keep no cache token counts (always 0). */
const emptyMetrics = () => ({
  spend: 0, prompt_tokens: 0, completion_tokens: 0, cache_read_input_tokens: 0, cache_creation_input_tokens: 0,
  total_tokens: 0, successful_requests: 0, failed_requests: 0, api_requests: 0,
});
type Metrics = ReturnType<typeof emptyMetrics>;

function addTo(m: Metrics, r: Record<string, any>): void {
  m.spend += r.spend;
  m.prompt_tokens += r.prompt_tokens;
  m.completion_tokens += r.completion_tokens;
  m.total_tokens += r.total_tokens;
  m.api_requests += r.api_requests;
  m.successful_requests += r.successful_requests;
  m.failed_requests += r.api_requests - r.successful_requests;
}

/** The entry `name` of a breakdown, made on first use with its metrics empty. */
function entry(within: Record<string, any>, name: string, metadata: () => object) {
  return within[name] ??= { metrics: emptyMetrics(), metadata: metadata() };
}

/**
 * The rows a user may see: an admin or a proxy_admin_viewer every user's (null), any other key its
 * own user's only, as LiteLLM scopes a non-admin; a key of no user has no rows of its own to read.
 */
function ownUser(caller: Caller): string | null {
  if (caller.kind === "master" || caller.admin || isProxyAdminViewer(caller)) return null;
  const user = caller.principal.key.user_id;
  if (user === null || user === undefined) throw authError("Authentication Error, /user/daily/activity is for admins and for the keys of a user (this key has none)");
  return user;
}

/**
 * LiteLLM's `/user/daily/activity`: spend_logs summed per UTC day, user, key, model and deployment
 * (LiteLLM's daily rows), newest day first; `page_size` of those rows per page, and each page's rows
 * merged per day into `metrics` and a `breakdown` by model, provider, key and user, as LiteLLM answers
 * from its daily table (its totals in `metadata` are the page's).
 */
export function activityRoutes(deps: AdminDeps) {
  const { db } = deps;
  // The caller is checked before its query, so one without the right gets 401 whatever it sent.
  const scopes = new WeakMap<Request, string | null>();
  return new Elysia({ name: "admin-activity" }).get("/user/daily/activity", async ({ query, request }) => {
    const user = scopes.has(request) ? scopes.get(request) as string | null : ownUser(await deps.auth.authenticate(request.headers));
    onlyParams(request, ACTIVITY_PARAMS);
    const { from, to } = dayRange(query);
    const f = filters([["l.start_time >= ?", from], ["l.start_time <= ?", to]]);
    if (user !== null) f.add("l.user_id = ?", user);
    // A user's key asking for another user finds nothing, as one asking for another user's key does.
    if (query.user_id !== undefined) f.add("l.user_id = ?", query.user_id);
    if (query.model !== undefined) f.add("l.model = ?", query.model);
    if (query.api_key !== undefined) f.add("l.api_key = ?", tokenOf(query.api_key));
    const page = query.page ?? 1;
    const pageSize = query.page_size ?? 50;
    const grouped = `select ${DAY} as day, l.user_id, l.api_key, l.model, l.deployment,
        sum(l.spend)::float8 as spend, sum(l.prompt_tokens)::float8 as prompt_tokens, sum(l.completion_tokens)::float8 as completion_tokens,
        sum(l.total_tokens)::float8 as total_tokens, count(*)::float8 as api_requests, count(*) filter (where l.status = 'success')::float8 as successful_requests
      from spend_logs l ${f.where()} group by 1, 2, 3, 4, 5`;
    const [{ total }] = await db.query(`select count(*)::int as total from (${grouped}) g`, f.params) as Array<{ total: number }>;
    // Ties broken by every grouped column, so pages neither repeat nor skip a row.
    const rows = await db.query(
      `select g.*, k.key_alias, k.team_id as key_team_id from (${grouped}) g left join keys k on k.token = g.api_key
       order by g.day desc, g.user_id, g.api_key, g.model, g.deployment limit ${pageSize} offset ${(page - 1) * pageSize}`, f.params);
    const providers = new Map<string, string>();
    const providerOf = (model: string, deployment: string | null) => {
      const name = `${model}\u0000${deployment}`;
      let provider = providers.get(name);
      if (provider === undefined) {
        // A deployment taken out of config.yaml since has no provider any more, as LiteLLM's router then knows none.
        provider = deps.runtime().router.deploymentsOf(model).find((d) => d.id === deployment)?.provider ?? "unknown";
        providers.set(name, provider);
      }
      return provider;
    };
    const totals = emptyMetrics();
    const days = new Map<string, { date: string; metrics: Metrics; breakdown: Record<string, Record<string, any>> }>();
    for (const r of rows) {
      let day = days.get(r.day);
      if (!day) days.set(r.day, day = { date: r.day, metrics: emptyMetrics(), breakdown: { models: {}, providers: {}, api_keys: {}, mcp_servers: {}, entities: {} } });
      const keyMetadata = () => ({ key_alias: r.key_alias ?? null, team_id: r.key_team_id ?? null });
      const model = entry(day.breakdown.models, r.model, () => ({}));
      model.api_key_breakdown ??= {};
      for (const m of [
        totals, day.metrics, model.metrics, entry(model.api_key_breakdown, r.api_key, keyMetadata).metrics,
        entry(day.breakdown.providers, providerOf(r.model, r.deployment), () => ({})).metrics,
        entry(day.breakdown.api_keys, r.api_key, keyMetadata).metrics,
      ]) addTo(m, r);
      if (r.user_id !== null) addTo(entry(day.breakdown.entities, r.user_id, () => ({})).metrics, r);
    }
    return {
      results: [...days.values()],
      metadata: {
        total_spend: totals.spend, total_prompt_tokens: totals.prompt_tokens, total_completion_tokens: totals.completion_tokens,
        total_tokens: totals.total_tokens, total_api_requests: totals.api_requests, total_successful_requests: totals.successful_requests,
        total_failed_requests: totals.failed_requests, total_cache_read_input_tokens: 0, total_cache_creation_input_tokens: 0,
        page, total_pages: Math.ceil(total / pageSize), has_more: page * pageSize < total,
      },
    };
  }, {
    transform: async ({ request }) => {
      scopes.set(request, ownUser(await deps.auth.authenticate(request.headers)));
    },
    query: t.Object({
      start_date: t.Optional(t.String()), end_date: t.Optional(t.String()), model: t.Optional(t.String()), api_key: t.Optional(t.String()),
      user_id: t.Optional(t.String()), page: t.Optional(Page), page_size: t.Optional(PageSize),
    }),
    detail: { tags: ["spend"], summary: "Spend, tokens and requests per UTC day, by model, provider, key and user (a user's key: its user's own)" },
  });
}
