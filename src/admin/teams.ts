import { t } from "elysia";
import type { Sql } from "../db";
import { parseDuration, sameDuration } from "../governance/duration";
import { counterKeys, idPart, scopes } from "../governance/keys";
import { badRequest } from "../http/errors";
import type { SpendRow } from "../spend/batch";
import { deletedRows, windowsOf } from "../spend/reset";
import { deleteEvery, type FirstPeriod, firstPeriod, found, internalUserPeriod, iso, lockMemberships, MEMBERSHIP_ORIGIN, membershipView, newPeriodAt, newPeriodSet, periodView, resetAtFor, spendRowsOwnedBy, updateBudgetHolder, write } from "./common";
import { anchorOf } from "../governance/periods";
import type { AdminDeps } from "./deps";
import { TEAM_MODEL_SPEND, modelSpendOf } from "./model-budgets";
import { Id, Limit, LimitsMetadata, ModelBudgets, ModelLimits, Models, Money, budgetFields, nextReset, opt, open, teamRefusedFields } from "./fields";
import { adminOnlyRoutes, onlyParams } from "./guard";
import { KEY_BUDGET, keyView } from "./keys";
import { budgetView } from "./budgets";

/** A member's role in a team, as LiteLLM allows them. */
export const TeamRole = t.Union([t.Literal("admin"), t.Literal("user")], { error: "must be \"admin\" or \"user\"" });

/** LiteLLM's Member: user_id and user_email each optional, null as left out (one of them names the user). */
export const Member = t.Object({
  role: t.Optional(TeamRole),
  user_id: opt(Id),
  user_email: opt(t.String({ maxLength: 512 })),
}, open);
/** Members one call may add: each is a few statements in the call's transaction. */
export const MAX_MEMBERS_PER_CALL = 1000;

/** As many models as /team/new and /team/update take in one list. */
const MAX_TEAM_MODELS = 1000;

const TEAM_COLUMNS = ["team_alias", "max_budget", "budget_duration", "budget_reset_at", "models", "tpm_limit", "rpm_limit", "max_parallel_requests", "metadata", "blocked", "spend",
  "model_max_budget"];

export function teamView(row: Record<string, any>, now?: number) {
  return {
    team_alias: row.team_alias, team_id: row.team_id, admins: [], members: [], members_with_roles: row.members_with_roles,
    metadata: row.metadata, tpm_limit: row.tpm_limit, rpm_limit: row.rpm_limit, max_budget: row.max_budget, models: row.models,
    max_parallel_requests: row.max_parallel_requests, budget_duration: row.budget_duration, model_max_budget: row.model_max_budget ?? {},
    ...periodView(row.spend, row.budget_reset_at, row.budget_duration, now, anchorOf(row)), blocked: row.blocked, created_at: iso(row.created_at),
  };
}

/**
 * One user sent twice in one call is a 400 naming the second (`member[1].user_id`), before anything is
 * written: the later entry would otherwise quietly replace the earlier (its role kept, the other lost).
 * Users named by e-mail compare without case, as they are looked up.
 */
export function refuseRepeatedMembers(members: Array<{ user_id?: string | null; user_email?: string | null }>, field: string): void {
  const seen = new Map<string, number>();
  members.forEach((member, i) => {
    const by = member.user_id != null ? "user_id" : member.user_email != null ? "user_email" : null;
    if (!by) return;
    const id = by === "user_id" ? `id:${member.user_id}` : `email:${member.user_email!.toLowerCase()}`;
    const first = seen.get(id);
    if (first !== undefined) {
      const param = `${field}[${i}].${by}`;
      throw badRequest(`${param}: ${JSON.stringify(member[by])} is already ${field}[${first}] of this call; send each member once`, param);
    }
    seen.set(id, i);
  });
}

/**
 * Adds (or re-roles) members: missing users are created (a member given by e-mail is the user with that
 * e-mail, in any case), internal users whose first period is `newUser`; memberships,
 * members_with_roles and users.teams kept in step. Returns their ids. `field` names the list in errors.
 */
export async function addMembers(
  sql: Sql, teamId: string, members: Array<Record<string, any>>, budgetId: string | null, newUser: FirstPeriod | null = null, field = "member",
): Promise<string[]> {
  await lockMemberships(sql);
  const ids: string[] = [];
  for (const [i, member] of members.entries()) {
    let userId: string | undefined = member.user_id ?? undefined;
    if (!userId && member.user_email) {
      const [byEmail] = await sql.query("select user_id from users where lower(user_email) = lower($1) order by created_at limit 1", [member.user_email]);
      userId = byEmail?.user_id ?? crypto.randomUUID();
    }
    if (!userId) throw badRequest("member: user_id or user_email is required", "member");
    // One user named twice, by id and by e-mail (see refuseRepeatedMembers): the later would replace the earlier's role.
    if (ids.includes(userId)) {
      const param = `${field}[${i}].${member.user_id != null ? "user_id" : "user_email"}`;
      throw badRequest(`${param}: names the user "${userId}", whom this call names already; send each member once`, param);
    }
    await sql.query(
      `insert into users (user_id, user_email, teams, budget_reset_at, budget_anchor_at) values ($1, $2, array[$3]::text[], $4, $5)
       on conflict (user_id) do update set teams = case when $3 = any(users.teams) then users.teams else array_append(users.teams, $3) end`,
      [userId, member.user_email ?? null, teamId, newUser?.resetAt ?? null, newUser?.anchorAt ?? null]);
    const role = member.role ?? "user";
    await sql.query(
      `insert into team_memberships (team_id, user_id, role, budget_id) values ($1, $2, $3, $4)
       on conflict (team_id, user_id) do update set role = excluded.role, budget_id = coalesce(excluded.budget_id, team_memberships.budget_id)`,
      [teamId, userId, role, budgetId]);
    // A member re-roled without an e-mail keeps the one its entry has (/team/member_update sends none).
    await sql.query(
      `update teams set members_with_roles = (
         select coalesce(jsonb_agg(m), '[]'::jsonb) from jsonb_array_elements(members_with_roles) m where m->>'user_id' <> $2
       ) || jsonb_build_array(jsonb_strip_nulls(jsonb_build_object('role', $3::text, 'user_id', $2::text, 'user_email',
         coalesce($4::text, (select m->>'user_email' from jsonb_array_elements(members_with_roles) m where m->>'user_id' = $2 limit 1))))),
       updated_at = now() where team_id = $1`,
      [teamId, userId, role, member.user_email ?? null]);
    ids.push(userId);
  }
  return ids;
}

/** The id of the budget row behind a membership's `max_budget_in_team` and limits (one per membership). */
const membershipBudgetId = (teamId: string, userId: string) => `team-member:${idPart(teamId)}:${userId}`;

/**
 * Writes a membership's budget row: a new member's from what was sent (`fresh`: nothing a former
 * membership left is kept) and, for the fields not sent, the team's member budget (`team_member_budget`),
 * which holds the members without a budget of their own; a member's update over what it had (fields not
 * sent are kept: its own budget's, or the team's member budget it was on until now).
 */
export async function membershipBudget(sql: Sql, teamId: string, userId: string, fields: Record<string, unknown>, fresh: boolean): Promise<string> {
  const budgetId = membershipBudgetId(teamId, userId);
  const columns = ["max_budget", "tpm_limit", "rpm_limit", "max_parallel_requests", "budget_duration"];
  const sent = [fields.max_budget_in_team, fields.tpm_limit, fields.rpm_limit, fields.max_parallel_requests, fields.budget_duration];
  // Parameters: $1 the id, $2.. the values sent, then the team's member budget (fresh) or the membership whose current budget is the base.
  const base = columns.length + 2;
  const value = (column: string, i: number) => (fresh ? `coalesce($${i + 2}, (select b.${column} from budgets b where b.budget_id = $${base}))`
    : `coalesce($${i + 2}, (select b.${column} from team_memberships m join budgets b on b.budget_id = m.budget_id where m.team_id = $${base} and m.user_id = $${base + 1}))`);
  await sql.query(
    `insert into budgets (budget_id, ${columns.join(", ")}) values ($1, ${columns.map(value).join(", ")})
     on conflict (budget_id) do update set ${columns.map((c, i) => `${c} = ${fresh ? `excluded.${c}` : `coalesce($${i + 2}, budgets.${c})`}`).join(", ")}, updated_at = now()`,
    [budgetId, ...sent.map((v) => v ?? null), ...(fresh ? [teamMemberBudgetId(teamId)] : [teamId, userId])]);
  return budgetId;
}

/**
 * A member just added gets a budget of their own, from the fields sent (`max_budget_in_team`, limits,
 * `budget_duration`; the others the team's member budget's), its period starting now.
 */
export async function giveOwnBudget(sql: Sql, teamId: string, userId: string, fields: Record<string, unknown>, now: number): Promise<void> {
  const budgetId = await membershipBudget(sql, teamId, userId, fields, true);
  const [budget] = await sql.query("select budget_duration from budgets where budget_id = $1", [budgetId]);
  await sql.query("update team_memberships set budget_id = $3, budget_reset_at = $4, budget_anchor_at = $5 where team_id = $1 and user_id = $2",
    [teamId, userId, budgetId, resetAtFor(budget?.budget_duration as string | null | undefined, now), new Date(now)]);
}

/** Teams as LiteLLM lists them: each with its keys and its memberships (their spend and budget), in two queries. */
async function withKeysAndMemberships(db: Sql, rows: Array<Record<string, any>>, now: number) {
  const ids = rows.map((row) => row.team_id as string);
  const keys = await db.query(`select k.*, ${KEY_BUDGET} from keys k where k.team_id = any($1::text[]) order by k.created_at`, [ids]);
  const memberships = await db.query(
    `select m.user_id, m.team_id, m.role, m.spend, m.budget_id, m.budget_reset_at, ${MEMBERSHIP_ORIGIN}, row_to_json(b) as litellm_budget_table
     from team_memberships m left join budgets b on b.budget_id = m.budget_id where m.team_id = any($1::text[]) order by m.created_at`, [ids]);
  const keysOf = Map.groupBy(keys, (key) => key.team_id as string);
  const membershipsOf = Map.groupBy(memberships, (m) => m.team_id as string);
  return rows.map((row) => ({
    ...teamView(row, now),
    keys: (keysOf.get(row.team_id) ?? []).map((key) => keyView(key, now)),
    team_memberships: (membershipsOf.get(row.team_id) ?? []).map((m) => membershipView(m, now)),
  }));
}

/**
 * The budget and limits every member of a team gets unless given their own (LiteLLM's
 * `team_member_budget`): one budget row the members share, each member with their own spend.
 */
export const teamMemberBudgetId = (teamId: string) => `team-members:${teamId}`;

/** Written as a team's own budget fields are (LiteLLM's UI sends "" for none). */
const memberDefaults = {
  team_member_budget: budgetFields.max_budget, team_member_budget_duration: budgetFields.budget_duration, team_member_rpm_limit: opt(Limit), team_member_tpm_limit: opt(Limit),
};
const MEMBER_DEFAULT_COLUMNS = { team_member_budget: "max_budget", team_member_budget_duration: "budget_duration", team_member_rpm_limit: "rpm_limit", team_member_tpm_limit: "tpm_limit" } as const;

/**
 * Writes the team's member budget from the `team_member_*` fields sent (those not sent are kept) and
 * gives it to every member without a budget of their own. Nothing when none was sent.
 */
async function applyMemberDefaults(sql: Sql, teamId: string, body: Record<string, unknown>, now: number): Promise<void> {
  const sent = (Object.keys(MEMBER_DEFAULT_COLUMNS) as Array<keyof typeof MEMBER_DEFAULT_COLUMNS>).filter((field) => body[field] !== undefined);
  if (sent.length === 0) return;
  const budgetId = teamMemberBudgetId(teamId);
  // A new duration starts a new period for the budget and the members on it, as /budget/update does;
  // the same one sent again (an admin screen sends every field) leaves it running.
  const duration = body.team_member_budget_duration as string | null | undefined;
  const [before] = await sql.query("select budget_duration from budgets where budget_id = $1", [budgetId]);
  const newPeriod = duration !== undefined && !(before && sameDuration(parseDuration(before.budget_duration ?? undefined), parseDuration(duration ?? undefined)));
  const columns = [...sent.map((field) => MEMBER_DEFAULT_COLUMNS[field]), ...(newPeriod ? ["budget_reset_at", "budget_anchor_at"] : [])];
  await sql.query(
    `insert into budgets (budget_id, ${columns.join(", ")}) values ($1, ${columns.map((_, i) => `$${i + 2}`).join(", ")})
     on conflict (budget_id) do update set ${columns.map((c) => `${c} = excluded.${c}`).join(", ")}, updated_at = now()`,
    [budgetId, ...sent.map((field) => body[field] ?? null), ...(newPeriod ? [resetAtFor(duration, now), new Date(now)] : [])]);
  await sql.query("update teams set metadata = metadata || jsonb_build_object('team_member_budget_id', $2::text) where team_id = $1", [teamId, budgetId]);
  await sql.query("update team_memberships set budget_id = $2 where team_id = $1 and budget_id is null", [teamId, budgetId]);
  if (newPeriod) {
    await sql.query(`update team_memberships set ${newPeriodSet("$2", "$3")} where budget_id = $1`, [budgetId, ...newPeriodAt(duration, now)]);
  }
}

/**
 * Members just added take the team's member budget when they were given none of their own, and start
 * its period (`team_member_budget_duration`) now, as a member given a duration of their own does.
 */
export async function giveMemberDefaults(sql: Sql, teamId: string, userIds: string[], now: number): Promise<void> {
  const [budget] = await sql.query("select budget_duration from budgets where budget_id = $1", [teamMemberBudgetId(teamId)]);
  if (!budget) return;
  await sql.query(
    `update team_memberships set budget_id = $3, budget_reset_at = $4, budget_anchor_at = $5 where team_id = $1 and user_id = any($2::text[]) and budget_id is null
       and exists (select 1 from budgets where budget_id = $3)`, [teamId, userIds, teamMemberBudgetId(teamId), resetAtFor(budget.budget_duration, now), new Date(now)]);
}

const teamFields = {
  ...budgetFields, ...memberDefaults, ...teamRefusedFields, team_alias: opt(t.String({ maxLength: 512 })), models: t.Optional(Models),
  metadata: opt(LimitsMetadata), blocked: opt(t.Boolean()), model_rpm_limit: opt(ModelLimits), model_tpm_limit: opt(ModelLimits),
  model_max_budget: opt(ModelBudgets),
};

const MODEL_LIMITS = ["model_rpm_limit", "model_tpm_limit"] as const;

/**
 * A team's metadata with the per-model limits sent beside it folded in, where LiteLLM keeps them (null
 * takes one away): `metadata` is what the team will have otherwise, the body's or the stored one.
 */
function withModelLimits(metadata: Record<string, unknown> | null | undefined, body: Record<string, unknown>): Record<string, unknown> {
  const merged = { ...metadata };
  for (const name of MODEL_LIMITS) {
    if (body[name] === null) delete merged[name];
    else if (body[name] !== undefined) merged[name] = body[name];
  }
  return merged;
}

export function teamRoutes(deps: AdminDeps) {
  const { db, clock } = deps;
  const setBlocked = async (teamId: string, blocked: boolean) => {
    const [row] = await db.query("update teams set blocked = $2, updated_at = now() where team_id = $1 returning *", [teamId, blocked]);
    found(row, "Team");
    deps.invalidate({ kind: "all" });
    return teamView(row!);
  };
  /** Changes a team's models under its row lock (two calls at once each keep the other's change). */
  const changeModels = async (teamId: string, change: (models: string[]) => string[]) => {
    const row = await db.transaction(async (tx) => {
      const [team] = await tx.query("select models from teams where team_id = $1 for update", [teamId]);
      const models = change(found(team, "Team").models as string[]);
      return (await tx.query("update teams set models = $2::text[], updated_at = now() where team_id = $1 returning *", [teamId, models]))[0]!;
    });
    deps.invalidate({ kind: "all" });
    return teamView(row);
  };
  return adminOnlyRoutes("admin-teams", deps)
    .post("/team/new", async ({ body }) => {
      refuseRepeatedMembers(body.members_with_roles ?? [], "members_with_roles");
      const teamId = body.team_id ?? crypto.randomUUID();
      const first = firstPeriod(body.budget_duration, clock.now());
      const row = await db.transaction(async (tx) => {
        await write(`team_id "${teamId}"`, () => tx.query(
          `insert into teams (team_id, team_alias, max_budget, budget_duration, budget_reset_at, models, tpm_limit, rpm_limit,
             max_parallel_requests, metadata, blocked, model_max_budget, budget_anchor_at)
           values ($1, $2, $3, $4, $5, $6::text[], $7, $8, $9, $10::text::jsonb, $11, $12::text::jsonb, $13)`,
          [teamId, body.team_alias ?? null, body.max_budget ?? null, body.budget_duration ?? null, first.resetAt,
            body.models ?? [], body.tpm_limit ?? null, body.rpm_limit ?? null, body.max_parallel_requests ?? null,
            JSON.stringify(withModelLimits(body.metadata, body)), body.blocked ?? false, JSON.stringify(body.model_max_budget ?? {}), first.anchorAt]));
        await addMembers(tx, teamId, body.members_with_roles ?? [], null, internalUserPeriod(deps), "members_with_roles");
        await applyMemberDefaults(tx, teamId, body, clock.now());
        return (await tx.query("select * from teams where team_id = $1", [teamId]))[0]!;
      });
      deps.invalidate({ kind: "all" });
      return teamView(row);
    }, {
      body: t.Object({ ...teamFields, team_id: opt(Id), members_with_roles: t.Optional(t.Array(Member, { maxItems: MAX_MEMBERS_PER_CALL })) }, open),
      detail: { tags: ["team management"], summary: "Create a team with a shared budget and limits" },
    })
    .post("/team/update", async ({ body }) => {
      let row: Record<string, any> | undefined;
      if (MODEL_LIMITS.some((name) => body[name] !== undefined)) {
        const stored = "metadata" in body ? body.metadata : (await db.query("select metadata from teams where team_id = $1", [body.team_id]))[0]?.metadata;
        body.metadata = withModelLimits(stored, body);
      }
      if (Object.keys(MEMBER_DEFAULT_COLUMNS).some((field) => field in body)) {
        // Spend still in memory belongs to the period it was spent in.
        await deps.spend.flush();
        const { team, members } = await db.transaction(async (tx) => {
          const [exists] = await tx.query("select team_id from teams where team_id = $1 for update", [body.team_id]);
          found(exists, "Team");
          await applyMemberDefaults(tx, body.team_id, body, clock.now());
          const members = await tx.query("select user_id from team_memberships where budget_id = $1", [teamMemberBudgetId(body.team_id)]);
          return { team: (await tx.query("select * from teams where team_id = $1", [body.team_id]))[0], members };
        });
        row = team;
        // The members on the team's member budget start a new period, or count their requests in flight
        // on a member budget that may be new (set where there was none).
        const restart = body.team_member_budget_duration === undefined && body.team_member_budget === undefined ? []
          : members.map((m) => counterKeys.budgetPrefix(scopes.member(body.team_id, m.user_id)));
        deps.invalidate({ kind: "all", restart });
      }
      if (!row || TEAM_COLUMNS.some((column) => column in body)) {
        row = await updateBudgetHolder(deps, {
          table: "teams", idColumn: "team_id", what: "Team", columns: TEAM_COLUMNS, json: ["metadata", "model_max_budget"], arrays: ["models"], scope: scopes.team, spendRow: "teams",
          modelSpend: TEAM_MODEL_SPEND,
        }, body.team_id, body);
      }
      // The team as before, and under `data` as LiteLLM answers it.
      const view = teamView(row);
      return { ...view, data: view };
    }, { body: t.Object({ ...teamFields, team_id: Id, spend: t.Optional(Money), ...nextReset }, open), detail: { tags: ["team management"], summary: "Change a team" } })
    .post("/team/delete", async ({ body }) => {
      // A team's keys and memberships go with it (on delete cascade).
      const owned = await spendRowsOwnedBy(db, "team_id", body.team_ids);
      const deleted = await deleteEvery(db, "teams", "team_id", body.team_ids, "Team");
      // A team made again under the same id starts from nothing.
      const gone = deletedRows([...deleted.map((id): SpendRow => ({ table: "teams", id })), ...owned]);
      deps.invalidate({ kind: "all", reset: gone, restart: windowsOf(gone) });
      return { deleted_teams: deleted };
    }, { body: t.Object({ team_ids: t.Array(Id, { minItems: 1 }) }, open), detail: { tags: ["team management"], summary: "Delete teams and their keys" } })
    .get("/team/info", async ({ query, request }) => {
      onlyParams(request, ["team_id"]);
      const [row] = await db.query("select * from teams where team_id = $1", [query.team_id]);
      found(row, "Team");
      const now = clock.now();
      const [team] = await withKeysAndMemberships(db, [row!], now);
      const [memberBudget] = await db.query("select * from budgets where budget_id = $1", [teamMemberBudgetId(row!.team_id)]);
      return {
        // Beside LiteLLM's fields, as /key/info shows a key's: what the team spent per model its model_max_budget holds it to.
        team_id: row!.team_id, team_info: { ...teamView(row!, now), team_member_budget_table: memberBudget ? budgetView(memberBudget, now) : null,
          model_spend: await modelSpendOf(db, TEAM_MODEL_SPEND, row!.team_id, row!.model_max_budget, now) },
        keys: team!.keys, team_memberships: team!.team_memberships,
      };
    }, { query: t.Object({ team_id: Id }), detail: { tags: ["team management"], summary: "A team, its keys and memberships with their spend" } })
    .get("/team/list", async ({ query, request }) => {
      onlyParams(request, ["user_id", "organization_id"]);
      // Teams of an organization are none: litegate has no organizations.
      if (query.organization_id !== undefined) return [];
      return withKeysAndMemberships(db, query.user_id !== undefined
        ? await db.query("select t.* from teams t join team_memberships m using (team_id) where m.user_id = $1 order by t.created_at, t.team_id", [query.user_id])
        : await db.query("select * from teams order by created_at, team_id"), clock.now());
    }, {
      query: t.Object({ user_id: t.Optional(t.String()), organization_id: t.Optional(t.String()) }),
      detail: { tags: ["team management"], summary: "List teams (those a user is a member of, with user_id)" },
    })
    // LiteLLM's: a team with no models listed (every model) keeps every model as `all-proxy-models` beside those added.
    .post("/team/model/add", ({ body }) => changeModels(body.team_id, (models) => {
      const merged = [...new Set([...(models.length === 0 ? ["all-proxy-models"] : models), ...body.models])];
      if (merged.length > MAX_TEAM_MODELS) throw badRequest(`models: a team lists at most ${MAX_TEAM_MODELS} models (this would make ${merged.length})`, "models");
      return merged;
    }), { body: t.Object({ team_id: Id, models: Models }, open), detail: { tags: ["team management"], summary: "Add models to a team's models" } })
    .post("/team/model/delete", ({ body }) => changeModels(body.team_id, (models) => {
      const left = models.filter((model) => !body.models.includes(model));
      // An empty list allows every model: taking the last model away must not open the team to all of them.
      if (models.length > 0 && left.length === 0) {
        throw badRequest("models: removing every model the team lists would leave its list empty, which allows every model; use /team/update with models: [] to allow every model", "models");
      }
      return left;
    }), { body: t.Object({ team_id: Id, models: Models }, open), detail: { tags: ["team management"], summary: "Remove models from a team's models" } })
    .post("/team/block", ({ body }) => setBlocked(body.team_id, true), { body: t.Object({ team_id: Id }, open), detail: { tags: ["team management"], summary: "Block a team" } })
    .post("/team/unblock", ({ body }) => setBlocked(body.team_id, false), { body: t.Object({ team_id: Id }, open), detail: { tags: ["team management"], summary: "Unblock a team" } });
}
