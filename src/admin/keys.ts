import { Elysia, t } from "elysia";
import { generateKey, hashKey, keyName } from "../auth/keys";
import { isProxyAdminViewer } from "../auth/principal";
import type { Sql } from "../db";
import { counterKeys, scopes } from "../governance/keys";
import { type ReusedToken, deletedRows, windowsOf } from "../spend/reset";
import { addDuration, parseDuration, sameDuration } from "../governance/duration";
import { authError, badRequest, notFound, shownPath } from "../http/errors";
import { anchorSet, assignments, budgetChange, budgetTableView, type FirstPeriod, firstPeriod, found, internalUserPeriod, iso, mustBeSharedBudget, mustExist, newPeriodAt, newPeriodSet, periodView, resetAtFor, spendIntoPeriod, spendSetAt, tokenOf, write } from "./common";
import { anchorOf } from "../governance/periods";
import type { AdminDeps } from "./deps";
import { withKeyDefaults, withinUpperBounds } from "./key-params";
import { Money, Page, RawKey, keyFields, nextReset, numeric, open, opt, regenerateFields } from "./fields";
import { currentToken, graceUntil, refuseTaken, retire } from "./key-grace";
import { adminOnlyRoutes, onlyParams } from "./guard";

const KEY_COLUMNS = [
  "key_alias", "max_budget", "soft_budget", "budget_duration", "models", "tpm_limit", "rpm_limit", "max_parallel_requests",
  "model_max_budget", "model_rpm_limit", "model_tpm_limit", "user_id", "team_id", "budget_id", "metadata", "blocked", "spend",
] as const;
const JSON_COLUMNS = ["model_max_budget", "model_rpm_limit", "model_tpm_limit", "metadata"];
const ARRAY_COLUMNS = ["models"];

/**
 * The row of a key's budget_id, beside a key row of `keys k`, as LiteLLM embeds it: what the key is
 * held to on that budget. A key without a duration of its own resets on the budget's, and its view
 * shows that period (see keyView).
 */
export const KEY_BUDGET = "(select row_to_json(b) from budgets b where b.budget_id = k.budget_id) as litellm_budget_table";

/**
 * A key row as the API shows it: everything but anything usable as the key itself. The period shown
 * is the one enforcement counts: on the key's own duration, else its budget_id's (when the row was
 * read with KEY_BUDGET).
 */
export function keyView(row: Record<string, any>, now?: number) {
  return {
    token: row.token, token_id: row.token, key_name: row.key_name, key_alias: row.key_alias,
    max_budget: row.max_budget, soft_budget: row.soft_budget, budget_duration: row.budget_duration,
    ...periodView(row.spend, row.budget_reset_at, row.budget_duration ?? row.litellm_budget_table?.budget_duration, now, anchorOf(row)),
    models: row.models, tpm_limit: row.tpm_limit, rpm_limit: row.rpm_limit, max_parallel_requests: row.max_parallel_requests,
    model_max_budget: row.model_max_budget, model_rpm_limit: row.model_rpm_limit, model_tpm_limit: row.model_tpm_limit,
    user_id: row.user_id, team_id: row.team_id, budget_id: row.budget_id, expires: iso(row.expires), blocked: row.blocked,
    metadata: row.metadata, created_at: iso(row.created_at), updated_at: iso(row.updated_at),
    litellm_budget_table: budgetTableView(row.litellm_budget_table, now), allowed_cache_controls: [], aliases: {}, config: {}, permissions: {},
  };
}

export interface NewKey {
  raw: string;
  row: Record<string, any>;
  /** The old secret of a regenerated key, taken by this one. */
  reused?: ReusedToken;
}

/** A virtual key may not take the master key's value: it could never be used, and would be once the master key changed. */
export function refuseMasterKey(deps: Pick<AdminDeps, "auth">, raw: string | null | undefined, field: string): void {
  if (raw && deps.auth.isMasterKey(raw)) throw badRequest(`${field}: this value is the master key; choose another`, field);
}

/**
 * A raw key of the caller's choosing may be the old secret of a key regenerated since: the token is
 * the new key's from then on, which starts from nothing (see `handOver`).
 */
async function takeOver(sql: Sql, token: string): Promise<ReusedToken | undefined> {
  const [renamed] = await sql.query("delete from key_renames where old_token = $1 returning new_token", [token]);
  return renamed ? { token, heldBy: renamed.new_token } : undefined;
}

/**
 * Inserts a key (and its user when new: an internal user, whose first period is `userPeriod`). The
 * raw key is returned once; only its hash is stored.
 */
export async function insertKey(sql: Sql, body: Record<string, any>, now: number, userPeriod: FirstPeriod | null = null): Promise<NewKey> {
  const raw: string = body.key ?? generateKey();
  const token = hashKey(raw);
  if (body.key) await refuseTaken(sql, token, "key");
  const reused = body.key ? await takeOver(sql, token) : undefined;
  const userId: string = body.user_id ?? crypto.randomUUID();
  await sql.query("insert into users (user_id, user_role, budget_reset_at, budget_anchor_at) values ($1, 'internal_user', $2, $3) on conflict (user_id) do nothing",
    [userId, userPeriod?.resetAt ?? null, userPeriod?.anchorAt ?? null]);
  if (body.team_id) await mustExist(sql, "teams", "team_id", body.team_id, "team_id");
  if (body.budget_id) await mustBeSharedBudget(sql, body.budget_id, null);
  // A key without a duration of its own counts periods of its budget_id's, from now.
  const budgetDuration = body.budget_duration ?? (body.budget_id
    ? ((await sql.query("select budget_duration from budgets where budget_id = $1", [body.budget_id]))[0]?.budget_duration as string | null)
    : null);
  const duration = parseDuration(body.duration ?? undefined);
  const expires = duration ? addDuration(new Date(now), duration) : null;
  const first = firstPeriod(budgetDuration, now);
  const [row] = await write(`key_alias "${body.key_alias}"`, () => sql.query(
    `insert into keys as k (token, key_name, key_alias, max_budget, soft_budget, budget_duration, budget_reset_at, models, tpm_limit, rpm_limit,
       max_parallel_requests, model_max_budget, model_rpm_limit, model_tpm_limit, user_id, team_id, budget_id, expires, blocked, metadata, spend, budget_anchor_at)
     values ($1, $2, $3, $4, $5, $6, $7, $8::text[], $9, $10, $11, $12::text::jsonb, $13::text::jsonb, $14::text::jsonb, $15, $16, $17, $18, $19, $20::text::jsonb, $21, $22)
     returning k.*, ${KEY_BUDGET}`,
    [token, keyName(raw), body.key_alias ?? null, body.max_budget ?? null, body.soft_budget ?? null, body.budget_duration ?? null,
      first.resetAt, body.models ?? [], body.tpm_limit ?? null, body.rpm_limit ?? null, body.max_parallel_requests ?? null,
      JSON.stringify(body.model_max_budget ?? {}), JSON.stringify(body.model_rpm_limit ?? {}), JSON.stringify(body.model_tpm_limit ?? {}),
      userId, body.team_id ?? null, body.budget_id ?? null, expires, body.blocked ?? false, JSON.stringify(body.metadata ?? {}), body.spend ?? 0, first.anchorAt],
  ), "key_alias");
  return { raw, row: row!, reused };
}

/** A key's fields within the operator's caps; a new key's left-out fields take the operator's defaults first. */
export function boundedKey(deps: Pick<AdminDeps, "runtime" | "clock">, body: Record<string, any>, isNew: boolean): Record<string, any> {
  const settings = deps.runtime().config.litellm_settings;
  const filled = isNew ? withKeyDefaults(body, settings.default_key_generate_params) : body;
  return withinUpperBounds(filled, settings.upperbound_key_generate_params, deps.clock.now(), isNew);
}

export function generatedKeyAnswer({ raw, row }: NewKey, body: Record<string, any>) {
  return { key: raw, ...keyView(row), duration: body.duration ?? null };
}

async function keyRow(sql: Sql, key: string) {
  const [row] = await sql.query(`select k.*, ${KEY_BUDGET} from keys k where k.token = $1`, [tokenOf(key)]);
  return found(row, "Key");
}

/** What /key/update changes (and /key/regenerate, sent along with it). */
const keyUpdateFields = { ...keyFields, spend: t.Optional(Money), ...nextReset };

const KeyRef = t.Object({ key: t.String({ minLength: 1 }) }, open);

/** A key as given in a path: percent-decoded, a malformed escape being the caller's error. */
function decodedPath(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    throw badRequest("key: the path holds a malformed percent-escape", "key");
  }
}

const KEY_LIST_PARAMS = ["user_id", "team_id", "key_alias", "key_hash", "page", "size", "return_full_object", "sort_by", "sort_order",
  "include_team_keys", "include_created_by_keys", "expand", "status", "organization_id"];
const yes = (value: string | undefined) => ["true", "1"].includes(value?.toLowerCase() ?? "");

export function keyRoutes(deps: AdminDeps) {
  const { db, clock } = deps;
  const setBlocked = async (key: string, blocked: boolean) => {
    const [row] = await db.query(`update keys k set blocked = $2, updated_at = now() where token = $1 returning k.*, ${KEY_BUDGET}`, [tokenOf(key), blocked]);
    found(row, "Key");
    deps.invalidate({ kind: "key", token: row!.token });
    return { key, ...keyView(row!, clock.now()) };
  };

  const bounded = (body: Record<string, any>, isNew: boolean) => boundedKey(deps, body, isNew);

  // /key/info may be called by any valid key for itself.
  const info = new Elysia({ name: "admin-key-info" }).get("/key/info", async ({ query, request }) => {
    const caller = await deps.auth.authenticate(request.headers);
    onlyParams(request, ["key"]);
    const own = caller.kind === "key" ? caller.principal.key.token : null;
    if (query.key === "") throw badRequest("key: must not be empty (leave it out for the calling key)", "key");
    // An old secret within its grace is its key's (see /key/regenerate).
    const asked = query.key ? await currentToken(db, tokenOf(query.key), clock.now()) : own;
    if (!asked) throw badRequest("key: required (the key to describe)", "key");
    if (caller.kind === "key" && !caller.admin && !isProxyAdminViewer(caller) && asked !== own) {
      // A user's key reads the user's other keys too, as LiteLLM lets a user; any other key is a 401, whether it exists or not.
      const [mine] = await db.query("select 1 from keys where token = $1 and user_id = $2", [asked, caller.principal.key.user_id]);
      if (!mine) throw authError("Authentication Error, a key may only read its own /key/info and its user's other keys");
    }
    const row = await keyRow(db, asked);
    const spend = await db.query("select model, spend, budget_reset_at from key_model_spend where token = $1", [row.token]);
    const now = clock.now();
    const modelSpend = Object.fromEntries(spend.map((s) => {
      const budget = row.model_max_budget?.[s.model];
      return [s.model, periodView(s.spend, s.budget_reset_at, budget?.time_period ?? budget?.budget_duration, now).spend];
    }));
    return { key: query.key ?? row.key_name, info: { ...keyView(row, now), model_spend: modelSpend } };
  }, { query: t.Object({ key: t.Optional(t.String()) }), detail: { tags: ["key management"], summary: "A key's settings and spend" } })
    // Any valid key checks itself, as in LiteLLM. Its check is of the key's logging callbacks, which
    // litegate has none of: a key that authenticates is healthy.
    .post("/key/health", async ({ request }) => {
      await deps.auth.authenticate(request.headers);
      return { key: "healthy", logging_callbacks: null };
    }, { detail: { tags: ["key management"], summary: "The calling key's health (as LiteLLM answers for a key without logging callbacks)" } });

  /** The changes of a /key/update (a /key/regenerate may carry them too), within a transaction: the key's row after them. */
  async function updateKey(tx: Sql, token: string, body: Record<string, any>): Promise<{ row: Record<string, any>; restarted: string[] }> {
    const changes: Record<string, unknown> = { ...body };
    const before = found((await tx.query("select budget_duration, max_budget, model_max_budget, budget_id from keys where token = $1", [token]))[0], "Key");
    const { newPeriod, budgetBack } = budgetChange(before, body);
    const durationOf = async (id: string | null) =>
      id ? ((await tx.query("select budget_duration from budgets where budget_id = $1", [id]))[0]?.budget_duration ?? null) as string | null : null;
    // A key without a duration of its own runs on its budget's: one whose own is taken away starts a
    // period of its budget's now (what it spent counts in it), not none.
    const budgetAfter = "budget_id" in body ? body.budget_id ?? null : before.budget_id;
    const now = clock.now();
    if (newPeriod) changes.budget_reset_at = resetAtFor(body.budget_duration ?? await durationOf(budgetAfter), now);
    // A key moved onto another budget (or off one) may get a max_budget where it had none: its requests in flight count on it.
    const budgetMoved = "budget_id" in body && (body.budget_id ?? null) !== before.budget_id;
    // Another budget's duration starts its period now likewise (spend recorded for the period it had,
    // the requests in flight among it, then adds to the new one).
    const ownDuration = "budget_duration" in body ? body.budget_duration : before.budget_duration;
    if (budgetMoved && !newPeriod && ownDuration == null) {
      const [was, next] = [await durationOf(before.budget_id), await durationOf(budgetAfter)];
      if (!sameDuration(parseDuration(was ?? undefined), parseDuration(next ?? undefined))) changes.budget_reset_at = resetAtFor(next, now);
    }
    // Budget counters to start again from the stored spend (see budgetChange); per model likewise.
    const restarted = newPeriod || budgetBack || budgetMoved ? [counterKeys.budgetPrefix(scopes.key(token))] : [];
    if (body.model_max_budget) restarted.push(...await restartModelPeriods(tx, token, before.model_max_budget ?? {}, body.model_max_budget));
    if (body.team_id) await mustExist(tx, "teams", "team_id", body.team_id, "team_id");
    if (body.user_id != null) await mustExist(tx, "users", "user_id", body.user_id, "user_id");
    if (body.budget_id) await mustBeSharedBudget(tx, body.budget_id, before.budget_id);
    const { sets, values } = assignments(changes, [...KEY_COLUMNS, "budget_reset_at"], JSON_COLUMNS, ARRAY_COLUMNS);
    sets.push(...anchorSet(changes, body, values, now));
    if ("budget_reset_at" in changes && !("budget_reset_at" in body) && !("spend" in body)) {
      values.push(new Date(now));
      sets.push(`spend = ${spendIntoPeriod(`$${values.length}`)}`);
    }
    if ("spend" in body) sets.push(spendSetAt(values, now));
    // A duration sent as null changes nothing, as LiteLLM reads it (its UI sends blank fields so); "-1" never expires.
    if (body.duration != null) {
      const duration = parseDuration(body.duration);
      values.push(duration ? addDuration(new Date(clock.now()), duration) : null);
      sets.push(`expires = $${values.length}`);
    }
    values.push(token);
    const [updated] = await write(`key_alias "${body.key_alias}"`, () =>
      tx.query(`update keys k set ${[...sets, "updated_at = now()"].join(", ")} where token = $${values.length} returning k.*, ${KEY_BUDGET}`, values), "key_alias");
    // A key regenerated or deleted meanwhile is gone under this token.
    return { row: found(updated, "Key"), restarted };
  }

  /**
   * A per-model budget whose period changed starts a new one now (as a key's budget_duration does);
   * one newly set starts from the stored spend, also where its entry stayed without a budget (limits
   * alone): no counter kept what the model cost meanwhile. The counter prefixes to start again.
   */
  async function restartModelPeriods(tx: Sql, token: string, before: Record<string, any>, after: Record<string, any>): Promise<string[]> {
    const prefixes: string[] = [];
    for (const [model, entry] of Object.entries(after)) {
      const was = before[model];
      const period = entry?.time_period ?? entry?.budget_duration ?? null;
      const samePeriod = was && sameDuration(parseDuration(was.time_period ?? was.budget_duration), parseDuration(period));
      const budgetBack = typeof entry?.budget_limit === "number" && typeof was?.budget_limit !== "number";
      if (samePeriod && !budgetBack) continue;
      if (was && !samePeriod) {
        const now = clock.now();
        await tx.query(`update key_model_spend set ${newPeriodSet("$3", "$4")} where token = $1 and model = $2`, [token, model, ...newPeriodAt(period, now)]);
      }
      prefixes.push(counterKeys.budgetPrefix(scopes.keyModel(token, model)));
    }
    return prefixes;
  }

  /** After a key's update: its budget counters restart with a new spend or period, and every instance forgets the cached key. */
  function updated(token: string, body: Record<string, unknown>, restarted: string[]) {
    const restart = "spend" in body ? [counterKeys.budgetPrefix(scopes.key(token)), ...restarted] : restarted;
    deps.invalidate({ kind: "key", token, reset: "spend" in body ? [{ table: "keys", id: token }] : undefined, restart });
  }

  /** A new secret for a key, with any /key/update fields sent along applied to it, as LiteLLM does. */
  async function regenerate(key: string, body: Record<string, any>) {
      const old = tokenOf(key);
      // What is left is /key/update's (new_master_key is refused unless unset).
      const { key: _key, new_key: _newKey, grace_period: gracePeriod, new_master_key: _master, ...changes } = body;
      refuseMasterKey(deps, body.new_key, "new_key");
      bounded(changes, false);
      // Spend still in memory is written first: the new token's budget starts from all of it.
      await deps.spend.flush();
      const raw = body.new_key ?? generateKey();
      let reused: ReusedToken | undefined;
      const row = await db.transaction(async (tx) => {
        found((await tx.query("select 1 from keys where token = $1", [old]))[0], "Key");
        if (body.new_key) await refuseTaken(tx, hashKey(raw), "new_key");
        if (body.new_key) reused = await takeOver(tx, hashKey(raw));
        const [moved] = await write("key", () => tx.query(
          `update keys k set token = $2, key_name = $3, updated_at = now() where token = $1 returning k.*, ${KEY_BUDGET}`, [old, hashKey(raw), keyName(raw)]));
        const renamed = found(moved, "Key");
        await retire(tx, old, renamed.token, graceUntil(gracePeriod, deps.keyGracePeriod(), clock.now()));
        return Object.keys(changes).length > 0 ? updateKey(tx, renamed.token, changes) : { row: renamed, restarted: [] };
      });
      deps.invalidate({ kind: "key", token: old, reused, regenerated: { from: old, to: row.row.token } });
      updated(row.row.token, changes, row.restarted);
      return { key: raw, ...keyView(row.row) };
  }

  const admin = adminOnlyRoutes("admin-keys", deps)
    .post("/key/generate", async ({ body: sent }) => {
      refuseMasterKey(deps, sent.key, "key");
      const body = bounded(sent, true);
      const created = await db.transaction((tx) => insertKey(tx, body, clock.now(), internalUserPeriod(deps)));
      deps.invalidate({ kind: "key", token: created.row.token, reused: created.reused });
      return generatedKeyAnswer(created, body);
    }, { body: t.Object(keyFields, open), detail: { tags: ["key management"], summary: "Create a virtual key (the raw key is returned once)" } })
    .post("/key/update", async ({ body }) => {
      bounded(body, false);
      // Spend still in memory is written first: it belongs to the period it was spent in.
      await deps.spend.flush();
      const token = tokenOf(body.key);
      const { row, restarted } = await db.transaction((tx) => updateKey(tx, token, body));
      updated(token, body, restarted);
      return { key: body.key, ...keyView(row, clock.now()) };
    }, {
      body: t.Object({ ...keyUpdateFields, key: t.String({ minLength: 1 }) }, open),
      detail: { tags: ["key management"], summary: "Change a key's settings (spend too)" },
    })
    .post("/key/delete", async ({ body }) => {
      if (!body.keys?.length && !body.key_aliases?.length) throw badRequest("keys: send the keys to delete (or key_aliases)", "keys");
      const tokens = (body.keys ?? []).map(tokenOf);
      const rows = await db.transaction(async (tx) => {
        const byAlias = body.key_aliases?.length
          ? await tx.query("select token from keys where key_alias = any($1::text[])", [body.key_aliases]) : [];
        const all = [...tokens, ...byAlias.map((r) => r.token as string)];
        const deleted = await tx.query("delete from keys where token = any($1::text[]) returning token, key_alias", [all]);
        // Every key named must exist, or nothing is deleted (a 404, as LiteLLM answers).
        const gone = new Set(deleted.map((r) => r.token as string));
        const missing = (body.keys ?? []).filter((key) => !gone.has(tokenOf(key)));
        const aliases = new Set(deleted.map((r) => r.key_alias as string));
        missing.push(...(body.key_aliases ?? []).filter((alias) => !aliases.has(alias)));
        if (missing.length > 0 || deleted.length === 0) throw notFound(`No keys found for ${missing.length > 0 ? missing.map((k) => (k.startsWith("sk-") ? keyName(k) : k)).join(", ") : "the request"}; nothing was deleted`);
        return deleted;
      });
      // A key made again with the same raw value starts from nothing.
      for (const row of rows) {
        const gone = deletedRows([{ table: "keys", id: row.token }, { table: "keyModels", id: row.token }]);
        deps.invalidate({ kind: "key", token: row.token, reset: gone, restart: windowsOf(gone) });
      }
      return { deleted_keys: [...(body.keys ?? []), ...(body.key_aliases ?? [])] };
    }, {
      // As LiteLLM's KeyRequest: either list may be null, one of them holding what to delete.
      body: t.Object({ keys: opt(t.Array(t.String({ minLength: 1 }))), key_aliases: opt(t.Array(t.String())) }, open),
      detail: { tags: ["key management"], summary: "Delete keys" },
    })
    .get("/key/list", async ({ query, request }) => {
      onlyParams(request, KEY_LIST_PARAMS);
      const size = Math.min(Number(query.size ?? 100), 1000);
      const page = Math.max(1, Number(query.page ?? 1));
      const where: string[] = [];
      const params: unknown[] = [];
      // LiteLLM's filters litegate has nothing for: keys of an organization, or deleted keys (it keeps
      // none), are none. `expand` and `include_created_by_keys` add nothing litegate records.
      if (query.organization_id !== undefined || (query.status !== undefined && query.status !== "active")) where.push("false");
      for (const field of ["user_id", "team_id", "key_alias"] as const) {
        if (query[field] === undefined) continue;
        params.push(query[field]);
        // With include_team_keys, a user's keys and those of the teams it is a member of.
        where.push(field === "user_id" && yes(query.include_team_keys)
          ? `(user_id = $${params.length} or team_id in (select team_id from team_memberships where user_id = $${params.length}))`
          : `${field} = $${params.length}`);
      }
      if (query.key_hash) where.push(`token = $${params.push(tokenOf(query.key_hash))}`);
      const filter = where.length ? `where ${where.join(" and ")}` : "";
      const [{ n }] = (await db.query(`select count(*)::int as n from keys ${filter}`, params)) as [{ n: number }];
      const order = `${query.sort_by ?? "created_at"} ${query.sort_order === "desc" ? "desc" : "asc"}`;
      const rows = await db.query(`select k.*, ${KEY_BUDGET} from keys k ${filter} order by ${order}, token limit ${size} offset ${(page - 1) * size}`, params);
      const full = yes(query.return_full_object);
      const now = clock.now();
      return { keys: rows.map((r) => (full ? keyView(r, now) : r.token)), total_count: n, current_page: page, total_pages: Math.ceil(n / size) };
    }, {
      query: t.Object({ user_id: t.Optional(t.String()), team_id: t.Optional(t.String()), key_alias: t.Optional(t.String()), key_hash: t.Optional(t.String()),
        page: t.Optional(Page), size: t.Optional(numeric({ minimum: 1, maximum: 1000, integer: true, field: "size" })), return_full_object: t.Optional(t.String()),
        sort_by: t.Optional(t.Union(["created_at", "spend", "key_alias", "expires"].map((c) => t.Literal(c)), { title: "sort_by" })),
        sort_order: t.Optional(t.Union([t.Literal("asc"), t.Literal("desc")], { title: "sort_order" })),
        include_team_keys: t.Optional(t.String()), include_created_by_keys: t.Optional(t.String()), expand: t.Optional(t.Union([t.String(), t.Array(t.String())])),
        status: t.Optional(t.String()), organization_id: t.Optional(t.String()) }),
      detail: { tags: ["key management"], summary: "List keys (hashes), filtered and paged" },
    })
    .post("/key/regenerate", ({ body }) => regenerate(body.key, body), {
      body: t.Object({ ...keyUpdateFields, key: t.String({ minLength: 1 }), new_key: opt(RawKey), ...regenerateFields }, open),
      detail: { tags: ["key management"], summary: "Replace a key's secret; the old one stops working (after grace_period, if given)" },
    })
    // LiteLLM's path form: the key in the path (`POST /key/sk-…/regenerate`), new_key in the body.
    .post("/key/*", ({ params, body, request }) => {
      const path = params["*"] ?? "";
      if (!path.endsWith("/regenerate") || path === "/regenerate") throw notFound(`Route not found: POST ${shownPath(request.url)}`);
      return regenerate(decodedPath(path.slice(0, -"/regenerate".length)), body);
    }, {
      body: t.Object({ ...keyUpdateFields, new_key: opt(RawKey), ...regenerateFields }, open),
      detail: { tags: ["key management"], summary: "Replace a key's secret, the key given in the path", hide: true },
    })
    .post("/key/block", ({ body }) => setBlocked(body.key, true), { body: KeyRef, detail: { tags: ["key management"], summary: "Block a key" } })
    .post("/key/unblock", ({ body }) => setBlocked(body.key, false), { body: KeyRef, detail: { tags: ["key management"], summary: "Unblock a key" } });

  return info.use(admin);
}

