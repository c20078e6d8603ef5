import { t } from "elysia";
import type { Sql } from "../db";
import { scopes } from "../governance/keys";
import { userBudgetDuration } from "../governance/policy";
import { GatewayError, badRequest } from "../http/errors";
import type { Caller } from "../auth";
import type { SpendRow } from "../spend/batch";
import { deletedRows, windowsOf } from "../spend/reset";
import { deleteEvery, found, lockMemberships, spendRowsOwnedBy, iso, periodView, firstPeriod, updateBudgetHolder, write } from "./common";
import { anchorOf } from "../governance/periods";
import type { AdminDeps } from "./deps";
import { USER_MODEL_SPEND, modelSpendOf } from "./model-budgets";
import { Id, UserId, ModelBudgets, Models, Money, budgetFields, keyFields, nextReset, numeric, opt, open, Page, userRefusedFields } from "./fields";
import { adminOnlyRoutes, admittedCaller, checkedAsSent, onlyParams } from "./guard";
import { KEY_BUDGET, boundedKey, generatedKeyAnswer, insertKey, keyView, refuseMasterKey } from "./keys";
import { MAX_MEMBERS_PER_CALL, TeamRole, addMembers, giveMemberDefaults, giveOwnBudget, teamView } from "./teams";

const ROLES = ["proxy_admin", "proxy_admin_viewer", "internal_user", "internal_user_viewer", "team", "customer"] as const;
const Role = t.Union(ROLES.map((role) => t.Literal(role)), { error: `must be one of ${ROLES.join(", ")}` });
const USER_COLUMNS = ["user_email", "user_alias", "user_role", "max_budget", "soft_budget", "budget_duration", "budget_reset_at", "models",
  "tpm_limit", "rpm_limit", "max_parallel_requests", "metadata", "spend", "model_max_budget"];

/**
 * A user row as the API shows it, with the period enforcement counts: on the user's own duration,
 * else, for an internal user, on `internal_user_budget_duration` (`internalDuration`).
 */
export function userView(row: Record<string, any>, now?: number, internalDuration?: string | null) {
  return {
    user_id: row.user_id, user_email: row.user_email, user_alias: row.user_alias, user_role: row.user_role,
    max_budget: row.max_budget, soft_budget: row.soft_budget, budget_duration: row.budget_duration,
    ...periodView(row.spend, row.budget_reset_at, userBudgetDuration(row as { budget_duration: string | null; user_role: string | null }, internalDuration), now, anchorOf(row)),
    models: row.models, tpm_limit: row.tpm_limit, rpm_limit: row.rpm_limit, max_parallel_requests: row.max_parallel_requests,
    model_max_budget: row.model_max_budget ?? {}, teams: row.teams, metadata: row.metadata, created_at: iso(row.created_at), updated_at: iso(row.updated_at),
  };
}

const userFields = {
  ...keyFields,
  user_id: opt(UserId),
  user_email: opt(t.String({ maxLength: 512 })),
  user_alias: opt(t.String({ maxLength: 512 })),
  user_role: opt(Role),
  /** Teams to join: ids, or LiteLLM's objects with the member's role and budget in the team. */
  teams: opt(t.Array(t.Union([Id, t.Object({ team_id: Id, max_budget_in_team: opt(Money), user_role: opt(TeamRole) }, open)]), { maxItems: MAX_MEMBERS_PER_CALL })),
  auto_create_key: t.Optional(t.Boolean()),
};

/**
 * Fields /user/new gives to the key it makes, as LiteLLM does, and not to the user: with
 * `auto_create_key: false` there is no key to hold them, and litegate does not implement them on users.
 * (model_max_budget is the user's, held across all its keys, as its max_budget is.)
 */
const KEY_ONLY_LIMITS = ["model_rpm_limit", "model_tpm_limit", "budget_id"] as const;

function refuseKeyOnlyLimits(body: Record<string, unknown>): void {
  for (const field of KEY_ONLY_LIMITS) {
    const value = body[field];
    if (value == null || (typeof value === "object" && Object.keys(value).length === 0)) continue;
    throw badRequest(`${field}: /user/new gives it to the key it makes, and auto_create_key is false; litegate does not implement ${field} on users (set it on the user's keys)`, field);
  }
}

/** The user fields `unset` takes away: LiteLLM's /user/update has no way to, but max_budget's null. */
const UNSETTABLE = ["user_email", "user_alias", "max_budget", "soft_budget", "budget_duration", "models", "tpm_limit", "rpm_limit",
  "max_parallel_requests", "metadata", "model_max_budget"] as const;
const Unset = t.Array(t.Union(UNSETTABLE.map((field) => t.Literal(field))), { error: `must be a list of fields among ${UNSETTABLE.join(", ")}` });

/**
 * A /user/update body as LiteLLM reads it: a field sent null, `[]` or `{}` is left as it is (an admin
 * screen sends every field, its blank ones so), but for max_budget, which null takes away. The fields
 * named in `unset` are taken away (litegate's own: LiteLLM lifts no user limit once set).
 */
function userChanges(body: Record<string, unknown>): Record<string, unknown> {
  const changes: Record<string, unknown> = {};
  for (const [field, value] of Object.entries(body)) {
    const blank = value === null || (typeof value === "object" && Object.keys(value).length === 0);
    if (field === "unset" || (blank && field !== "max_budget")) continue;
    changes[field] = value;
  }
  for (const field of (body.unset ?? []) as string[]) {
    if (changes[field] != null) throw badRequest(`unset: ${field} is sent with a value too; send it or unset it`, "unset");
    changes[field] = null;
  }
  return changes;
}

/**
 * A team named twice by one /user/new (in `teams`, or there and in `team_id`) is a 400 naming the second,
 * as one member twice in /team/member_add is: the later join would quietly replace the earlier's role and budget.
 */
function refuseRepeatedTeams(teams: Array<string | { team_id: string }>, teamId: string | null | undefined): void {
  const named = [...teams.map((team, i): [string, string] => [typeof team === "string" ? team : team.team_id, `teams[${i}]`]),
    ...(teamId ? [[teamId, "team_id"] as [string, string]] : [])];
  const seen = new Map<string, string>();
  for (const [id, param] of named) {
    const first = seen.get(id);
    if (first !== undefined) throw badRequest(`${param}: team "${id}" is already ${first} of this call; name each team once`, param);
    seen.set(id, param);
  }
}

const idTaken = (userId: string) => new GatewayError(409, "conflict_error", `User with id ${userId} already exists`, "user_id");
const emailTaken = (email: string) => new GatewayError(409, "conflict_error", `User with email ${email} already exists`, "user_email");

/**
 * Holds every other transaction giving a user this e-mail (in any case) until this one ends, so that
 * the check that no other user has it sees theirs. A lock, not a unique index: users stored before
 * may share an e-mail, and a migration failing on them would keep the gateway from starting.
 */
const lockEmail = (sql: Sql, email: string) => sql.query("select pg_advisory_xact_lock(hashtext('user_email:' || lower($1)))", [email]);

/** As LiteLLM answers: a user id, or an e-mail in any case, that another user has already is a 409. */
async function refuseTakenUser(sql: Sql, userId: string, email: string | null): Promise<void> {
  if (email !== null) await lockEmail(sql, email);
  const [taken] = await sql.query(
    "select user_id, user_email from users where user_id = $1 or ($2::text is not null and lower(user_email) = lower($2)) limit 1", [userId, email]);
  if (!taken) return;
  throw taken.user_id === userId ? idTaken(userId) : emailTaken(taken.user_email);
}

/**
 * A user's new e-mail, refused when another user has it (in any case), and stored under the lock
 * /user/new takes too: two users given one e-mail at once, one of them is refused.
 */
async function claimEmail(db: Sql, userId: string, email: string): Promise<void> {
  await db.transaction(async (tx) => {
    await lockEmail(tx, email);
    const [taken] = await tx.query("select user_email from users where lower(user_email) = lower($1) and user_id <> $2 limit 1", [email, userId]);
    if (taken) throw emailTaken(taken.user_email);
    await tx.query("update users set user_email = $2, updated_at = now() where user_id = $1", [userId, email]);
  });
}

/** Columns /user/list sorts by, as LiteLLM's sort_by names them. */
const USER_SORTS = ["user_id", "user_email", "user_alias", "user_role", "created_at", "spend"];
const USER_LIST_PARAMS = ["role", "user_ids", "sso_user_ids", "user_email", "team", "page", "page_size", "sort_by", "sort_order"];

/**
 * The user_id of /user/info as sent: a `+` in it stays a `+` (an e-mail such as a+b@x.com written
 * unescaped), as LiteLLM reads it again from the raw query when the decoded one holds a space.
 */
function rawUserId(request: Request, decoded: string): string {
  if (!decoded.includes(" ")) return decoded;
  const query = new URL(request.url).search.slice(1);
  const raw = query.split("&").find((part) => part.startsWith("user_id="))!.slice("user_id=".length);
  try {
    return decodeURIComponent(raw);
  } catch {
    throw badRequest("user_id: not valid percent-encoding", "user_id");
  }
}

export function userRoutes(deps: AdminDeps) {
  const { db, clock } = deps;
  const internalDuration = () => deps.runtime().config.litellm_settings.internal_user_budget_duration;
  /** As LiteLLM allows, a user may be named by its e-mail (compared without case) when no user_id is sent. */
  const userIdByEmail = async (email: string | null | undefined): Promise<string> => {
    if (!email) throw badRequest("user_id: required (or user_email, to find the user by it)", "user_id");
    const rows = await db.query("select user_id from users where lower(user_email) = lower($1) limit 2", [email]);
    if (rows.length > 1) throw badRequest(`user_email: more than one user has "${email}"; send user_id`, "user_email");
    return found(rows[0], "User").user_id as string;
  };
  /**
   * /user/info without user_id, as LiteLLM answers an admin: every key (with its team's alias) and every
   * team, and the calling admin's own user (none for the master key).
   */
  const adminView = async (caller: Caller | undefined, now: number) => {
    const adminId = caller?.kind === "key" ? caller.principal.key.user_id : null;
    const [own] = adminId === null ? [] : await db.query("select * from users where user_id = $1", [adminId]);
    const keys = await db.query(`select k.*, t.team_alias, ${KEY_BUDGET} from keys k left join teams t using (team_id) order by k.created_at, k.token`);
    const teams = await db.query("select * from teams order by coalesce(team_alias, ''), created_at, team_id");
    return {
      user_id: adminId, user_info: own ? userView(own, now, internalDuration()) : null,
      keys: keys.map((key) => ({ ...keyView(key, now), team_alias: key.team_alias })),
      teams: teams.map((team) => teamView(team, now)),
    };
  };
  return adminOnlyRoutes("admin-users", deps)
    .post("/user/new", async ({ body }) => {
      refuseMasterKey(deps, body.key, "key");
      refuseRepeatedTeams(body.teams ?? [], body.team_id);
      if (body.auto_create_key === false) refuseKeyOnlyLimits(body);
      const userId = body.user_id ?? crypto.randomUUID();
      // The key carries the user's models; budgets and limits stay on the user, shared by all its keys,
      // and the key's own (none sent here) are the operator's defaults, within its caps, as /key/generate's.
      const keyBody = body.auto_create_key === false ? null : boundedKey(deps, {
        key: body.key, key_alias: body.key_alias, duration: body.duration, models: body.models, user_id: userId, team_id: body.team_id,
        budget_id: body.budget_id, blocked: body.blocked, metadata: body.metadata,
        model_rpm_limit: body.model_rpm_limit, model_tpm_limit: body.model_tpm_limit, spend: body.spend,
      }, true);
      // An internal user without a duration of its own starts the default one's period now.
      const duration = userBudgetDuration({ budget_duration: body.budget_duration ?? null, user_role: body.user_role ?? "internal_user" }, internalDuration());
      const first = firstPeriod(duration, clock.now());
      const result = await db.transaction(async (tx) => {
        await refuseTakenUser(tx, userId, body.user_email ?? null);
        // A user made meanwhile under the same id (by /key/generate too) is refused as one found above is.
        const [user] = await write(`user_id "${userId}"`, () => tx.query(
          `insert into users (user_id, user_email, user_alias, user_role, max_budget, soft_budget, budget_duration, budget_reset_at, models,
             tpm_limit, rpm_limit, max_parallel_requests, teams, metadata, spend, model_max_budget, budget_anchor_at)
           values ($1, $2, $3, $4, $5, $6, $7, $8, $9::text[], $10, $11, $12, $13::text[], $14::text::jsonb, $15, $16::text::jsonb, $17) returning *`,
          [userId, body.user_email ?? null, body.user_alias ?? null, body.user_role ?? "internal_user", body.max_budget ?? null,
            body.soft_budget ?? null, body.budget_duration ?? null, first.resetAt, body.models ?? [],
            body.tpm_limit ?? null, body.rpm_limit ?? null, body.max_parallel_requests ?? null, [], JSON.stringify(body.metadata ?? {}), body.spend ?? 0,
            JSON.stringify(body.model_max_budget ?? {}), first.anchorAt],
        ).catch((error) => {
          throw (error as { code?: string })?.code === "23505" ? idTaken(userId) : error;
        }));
        // Each team joined as `/team/member_add` would: membership, the team's members_with_roles and users.teams.
        type Join = [string, { team_id: string; max_budget_in_team?: number | null; user_role?: "admin" | "user" | null }];
        const joins: Join[] = [
          ...(body.teams ?? []).map((team): Join => ["teams", typeof team === "string" ? { team_id: team } : team]),
          ...(body.team_id ? [["team_id", { team_id: body.team_id }] as Join] : []),
        ];
        if (joins.length > 0) await lockMemberships(tx);
        for (const [field, join] of joins) {
          const team = await tx.query("select 1 from teams where team_id = $1", [join.team_id]);
          if (team.length === 0) throw badRequest(`${field}: team "${join.team_id}" does not exist (create it with /team/new first)`, field);
          await addMembers(tx, join.team_id, [{ user_id: userId, role: join.user_role ?? undefined }], null);
          if (join.max_budget_in_team != null) {
            await giveOwnBudget(tx, join.team_id, userId, { max_budget_in_team: join.max_budget_in_team }, clock.now());
          } else {
            await giveMemberDefaults(tx, join.team_id, [userId], clock.now());
          }
        }
        const [joined] = joins.length > 0 ? await tx.query("select * from users where user_id = $1", [userId]) : [user];
        if (!keyBody) return { user: joined!, key: null };
        return { user: joined!, key: await insertKey(tx, keyBody, clock.now()) };
      });
      deps.invalidate({ kind: "all", reused: result.key?.reused });
      const view = userView(result.user, clock.now(), internalDuration());
      if (!result.key) return { ...view, key: null, expires: null };
      return { ...generatedKeyAnswer(result.key, keyBody!), ...view, key: result.key.raw, expires: iso(result.key.row.expires), max_budget: view.max_budget };
    }, { body: t.Object(userFields, open), detail: { tags: ["user management"], summary: "Create a user (and a key unless auto_create_key is false)" } })
    .post("/user/update", async ({ body }) => {
      const userId = body.user_id ?? (await userIdByEmail(body.user_email));
      // Checked before anything is written: a body refused for its unset list keeps the e-mail it had.
      const changes = userChanges(body);
      // The e-mail first, under its lock; the other fields (the e-mail again, unchanged) after it.
      if (body.user_email) await claimEmail(db, userId, body.user_email);
      // Nothing but blanks changes nothing, as in LiteLLM: the user as it is.
      const unchanged = !USER_COLUMNS.some((column) => column in changes);
      const row = unchanged ? found((await db.query("select * from users where user_id = $1", [userId]))[0], "User") : await updateBudgetHolder(deps, {
        table: "users", idColumn: "user_id", what: "User", columns: USER_COLUMNS, json: ["metadata", "model_max_budget"], arrays: ["models"], scope: scopes.user, spendRow: "users",
        modelSpend: USER_MODEL_SPEND,
        // An internal user without a duration of its own resets on the default.
        fallbackDuration: (row) => userBudgetDuration({ budget_duration: null, user_role: row.user_role ?? null }, internalDuration()),
        // max_internal_user_budget holds an internal user without a max_budget of its own, whatever it spent in another role.
        defaultBudgetBack: (was, now) => now.max_budget == null && now.user_role === "internal_user" && was.user_role !== "internal_user",
      }, userId, changes);
      // LiteLLM answers {user_id, data}; the fields are at the top level too.
      const view = userView(row, clock.now(), internalDuration());
      return { ...view, data: view };
    }, {
      body: t.Object({ ...budgetFields, user_id: opt(UserId), user_email: opt(t.String({ maxLength: 512 })), user_alias: opt(t.String({ maxLength: 512 })), user_role: opt(Role),
        models: opt(Models), metadata: opt(t.Record(t.String(), t.Unknown())), spend: opt(Money), model_max_budget: opt(ModelBudgets),
        unset: t.Optional(Unset), ...nextReset, ...userRefusedFields }, open),
      // `unset` checked as sent: the framework would read "models" as the list of its letters.
      transform: checkedAsSent(t.Object({ unset: t.Optional(Unset) }, open)),
      detail: { tags: ["user management"], summary: "Change a user's budget, limits, role or models" },
    })
    .post("/user/delete", async ({ body }) => {
      // A user's keys and team memberships go with it (on delete cascade).
      const owned = await spendRowsOwnedBy(db, "user_id", body.user_ids);
      const deleted = await deleteEvery(db, "users", "user_id", body.user_ids, "User");
      // A user made again under the same id starts from nothing.
      const gone = deletedRows([...deleted.map((id): SpendRow => ({ table: "users", id })), ...owned]);
      deps.invalidate({ kind: "all", reset: gone, restart: windowsOf(gone) });
      return { deleted_users: deleted };
    }, { body: t.Object({ user_ids: t.Array(UserId, { minItems: 1 }) }, open), detail: { tags: ["user management"], summary: "Delete users and their keys" } })
    .get("/user/info", async ({ query, request }) => {
      onlyParams(request, ["user_id"]);
      const userId = query.user_id === undefined ? undefined : rawUserId(request, query.user_id);
      const now = clock.now();
      if (userId === undefined) return adminView(admittedCaller(request), now);
      const [row] = await db.query("select * from users where user_id = $1", [userId]);
      found(row, "User");
      const keys = await db.query(
        `select k.*, t.team_alias, ${KEY_BUDGET} from keys k left join teams t using (team_id) where k.user_id = $1 order by k.created_at`, [userId]);
      // As LiteLLM answers: each key with its team's alias, each team whole; the user's membership is added as member_*.
      const teams = await db.query(
        `select t.*, m.role as member_role, m.spend as member_spend, m.budget_id as member_budget_id, m.budget_reset_at as member_reset_at,
           b.budget_duration as member_budget_duration
         from team_memberships m join teams t using (team_id) left join budgets b on b.budget_id = m.budget_id where m.user_id = $1 order by m.created_at`, [userId]);
      return {
        // Beside LiteLLM's fields, as /key/info shows a key's: what the user spent per model its model_max_budget holds it to.
        user_id: row!.user_id, user_info: { ...userView(row!, now, internalDuration()), model_spend: await modelSpendOf(db, USER_MODEL_SPEND, userId, row!.model_max_budget, now) },
        keys: keys.map((key) => ({ ...keyView(key, now), team_alias: key.team_alias })),
        teams: teams.map((team) => ({
          ...teamView(team, now), member_role: team.member_role,
          member_spend: periodView(team.member_spend, team.member_reset_at, team.member_budget_duration, now).spend, member_budget_id: team.member_budget_id,
        })),
      };
    }, {
      query: t.Object({ user_id: t.Optional(UserId) }),
      detail: { tags: ["user management"], summary: "A user, its keys, teams and spend (without user_id: every key and team)" },
    })
    .get("/user/list", async ({ query, request }) => {
      onlyParams(request, USER_LIST_PARAMS);
      const size = Math.min(Number(query.page_size ?? 100), 1000);
      const page = Math.max(1, Number(query.page ?? 1));
      // LiteLLM's filters: a role, ids (comma-separated), part of an e-mail (any case), a team.
      const where: string[] = [];
      const params: unknown[] = [];
      const add = (condition: string, value: unknown) => where.push(condition.replace("?", `$${params.push(value)}`));
      if (query.role) add("user_role = ?", query.role);
      if (query.user_ids) add("user_id = any(?::text[])", query.user_ids.split(",").map((id) => id.trim()));
      if (query.user_email) add("user_email ilike ?", `%${query.user_email.replace(/[\\%_]/g, "\\$&")}%`);
      if (query.team) add("? = any(teams)", query.team);
      // Users by SSO id are none: litegate has no single sign-on.
      if (query.sso_user_ids !== undefined) where.push("false");
      const filter = where.length > 0 ? `where ${where.join(" and ")}` : "";
      const order = `${query.sort_by ?? "created_at"} ${query.sort_order === "desc" ? "desc" : "asc"}`;
      const rows = await db.query(`select * from users ${filter} order by ${order}, user_id limit ${size} offset ${(page - 1) * size}`, params);
      const [{ n }] = (await db.query(`select count(*)::int as n from users ${filter}`, params)) as [{ n: number }];
      return { users: rows.map((row) => userView(row, clock.now(), internalDuration())), total: n, page, page_size: size, total_pages: Math.ceil(n / size) };
    }, {
      query: t.Object({ role: t.Optional(t.String()), user_ids: t.Optional(t.String()), user_email: t.Optional(t.String()), team: t.Optional(t.String()), sso_user_ids: t.Optional(t.String()),
        sort_by: t.Optional(t.Union(USER_SORTS.map((c) => t.Literal(c)), { title: "sort_by" })), sort_order: t.Optional(t.Union([t.Literal("asc"), t.Literal("desc")], { title: "sort_order" })), page: t.Optional(Page), page_size: t.Optional(numeric({ minimum: 1, maximum: 1000, integer: true, field: "page_size" })) }),
      detail: { tags: ["user management"], summary: "List users" },
    });
}
