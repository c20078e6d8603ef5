import { t } from "elysia";
import type { Sql } from "../db";
import { parseDuration, sameDuration } from "../governance/duration";
import { counterKeys, scopes } from "../governance/keys";
import { SEP } from "../spend/batch";
import { deletedRows, windowsOf } from "../spend/reset";
import { badRequest, notFound } from "../http/errors";
import { dropOwnBudgets, internalUserPeriod, lockMemberships, MEMBERSHIP_ORIGIN, membershipView, newPeriodAt, newPeriodSet } from "./common";
import type { AdminDeps } from "./deps";
import { DurationText, Id, Limit, Money, UserId, opt, open } from "./fields";
import { adminOnlyRoutes, checkedAsSent } from "./guard";
import { userView } from "./users";
import { MAX_MEMBERS_PER_CALL, Member, TeamRole, addMembers, giveMemberDefaults, giveOwnBudget, membershipBudget, refuseRepeatedMembers, teamView } from "./teams";

/**
 * Every change to a team's members locks the team's row first: they all touch the team, its members
 * and the users, and taken in one order those locks cannot deadlock. False when there is no such team.
 */
async function lockTeam(sql: Sql, teamId: string): Promise<boolean> {
  await lockMemberships(sql);
  return (await sql.query("select 1 from teams where team_id = $1 for update", [teamId])).length > 0;
}

/** As LiteLLM answers: adding someone already in the team is a 400 (/team/member_update changes a member). */
async function refuseExistingMembers(sql: Sql, teamId: string, members: Array<{ user_id?: string | null; user_email?: string | null }>): Promise<void> {
  const [hit] = await sql.query(
    `select m.user_id from team_memberships m join users u using (user_id)
     where m.team_id = $1 and (m.user_id = any($2::text[]) or lower(u.user_email) = any($3::text[])) limit 1`,
    [teamId, members.map((m) => m.user_id).filter((id) => id != null), members.map((m) => m.user_email?.toLowerCase()).filter((e) => e != null)]);
  if (hit) throw badRequest(`User=${hit.user_id} already in team=${teamId}; use /team/member_update to change a member`, "member");
}

/**
 * The member a /team/member_update or /team/member_delete names, by user_id or user_email, with the
 * team's row locked; 400s as LiteLLM answers them when the team or the membership does not exist.
 */
async function memberOf(sql: Sql, body: { team_id: string; user_id?: string | null; user_email?: string | null }): Promise<string> {
  if (!(await lockTeam(sql, body.team_id))) throw badRequest(`Team id=${body.team_id} does not exist in db`, "team_id");
  const [row] = body.user_id != null
    ? await sql.query("select user_id from team_memberships where team_id = $1 and user_id = $2", [body.team_id, body.user_id])
    : body.user_email != null
      ? await sql.query("select m.user_id from team_memberships m join users u using (user_id) where m.team_id = $1 and lower(u.user_email) = lower($2) limit 1", [body.team_id, body.user_email])
      : [];
  if (body.user_id == null && body.user_email == null) throw badRequest("user_id or user_email: required, naming a member of the team", "user_id");
  if (!row) throw badRequest(`User ${body.user_id ?? body.user_email} not found in team ${body.team_id}`, body.user_id != null ? "user_id" : "user_email");
  return row.user_id as string;
}

const who = { user_id: opt(UserId), user_email: opt(t.String({ maxLength: 512 })) };

const limits = { max_budget_in_team: opt(Money), budget_duration: opt(DurationText), tpm_limit: opt(Limit), rpm_limit: opt(Limit), max_parallel_requests: opt(Limit) };

const memberAddBody = t.Object({ team_id: Id, member: t.Union([Member, t.Array(Member, { minItems: 1, maxItems: MAX_MEMBERS_PER_CALL })]), ...limits }, open);

export function memberRoutes(deps: AdminDeps) {
  const { db } = deps;
  return adminOnlyRoutes("admin-members", deps)
    .post("/team/member_add", async ({ body }) => {
      const members = Array.isArray(body.member) ? body.member : [body.member];
      refuseRepeatedMembers(members, "member");
      const { row, added } = await db.transaction(async (tx) => {
        if (!(await lockTeam(tx, body.team_id))) throw notFound(`Team not found for team_id=${body.team_id}`);
        await refuseExistingMembers(tx, body.team_id, members);
        const added = await addMembers(tx, body.team_id, members, null, internalUserPeriod(deps));
        // Every member added gets the budget and limits sent, the others the team's member budget's: a
        // former membership's are not kept. Members sent without any take the team's member budget, when it has one.
        if ([body.max_budget_in_team, body.budget_duration, body.tpm_limit, body.rpm_limit, body.max_parallel_requests].some((v) => v != null)) {
          for (const userId of added) await giveOwnBudget(tx, body.team_id, userId, body, deps.clock.now());
        } else {
          await giveMemberDefaults(tx, body.team_id, added, deps.clock.now());
        }
        return { row: (await tx.query("select * from teams where team_id = $1", [body.team_id]))[0]!, added };
      });
      deps.invalidate({ kind: "all" });
      // The members this call added or changed, as LiteLLM answers: their users and their memberships.
      const users = await db.query("select * from users where user_id = any($1::text[])", [added]);
      const memberships = await db.query(
        `select m.user_id, m.team_id, m.role, m.spend, m.budget_id, m.budget_reset_at, ${MEMBERSHIP_ORIGIN}, row_to_json(b) as litellm_budget_table
         from team_memberships m left join budgets b on b.budget_id = m.budget_id where m.team_id = $1 and m.user_id = any($2::text[])`,
        [body.team_id, added]);
      const now = deps.clock.now();
      return { ...teamView(row), updated_users: users.map((user) => userView(user, now, deps.runtime().config.litellm_settings.internal_user_budget_duration)),
        updated_team_memberships: memberships.map((m) => membershipView(m, now)) };
    }, {
      body: memberAddBody,
      // A list is checked item by item as sent (`member[0].role`), not as one member holding it.
      transform: checkedAsSent(memberAddBody),
      detail: { tags: ["team management"], summary: "Add members; max_budget_in_team budgets each member within the team" },
    })
    .post("/team/member_update", async ({ body }) => {
      // Spend still in memory is written first: it belongs to the period it was spent in.
      await deps.spend.flush();
      let userId = "";
      await db.transaction(async (tx) => {
        userId = await memberOf(tx, body);
        const [before] = await tx.query("select budget_id from team_memberships where team_id = $1 and user_id = $2", [body.team_id, userId]);
        const durationOf = async (id: string | null | undefined): Promise<string | null> =>
          id ? ((await tx.query("select budget_duration from budgets where budget_id = $1", [id]))[0]?.budget_duration ?? null) : null;
        const was = await durationOf(before?.budget_id);
        const budgetId = await membershipBudget(tx, body.team_id, userId, body, false);
        await tx.query("update team_memberships set budget_id = $3, role = coalesce($4, role) where team_id = $1 and user_id = $2",
          [body.team_id, userId, budgetId, body.role ?? null]);
        // A budget of the membership's own under an older form of its id is not left behind.
        if (before?.budget_id !== budgetId) await dropOwnBudgets(tx, [before?.budget_id]);
        // Another duration starts a new period for the member; the same one sent again (or a null, which
        // keeps the budget's) leaves the period running, and what was spent in it counting.
        const duration = await durationOf(budgetId);
        if (!sameDuration(parseDuration(was ?? undefined), parseDuration(duration ?? undefined))) {
          const now = deps.clock.now();
          await tx.query(`update team_memberships set ${newPeriodSet("$3", "$4")} where team_id = $1 and user_id = $2`, [body.team_id, userId, ...newPeriodAt(duration, now)]);
        }
        if (body.role) await addMembers(tx, body.team_id, [{ user_id: userId, role: body.role }], budgetId);
      });
      deps.invalidate({ kind: "all", restart: [counterKeys.budgetPrefix(scopes.member(body.team_id, userId))] });
      const [row] = await db.query(
        `select m.user_id, m.team_id, m.role, m.spend, m.budget_id, m.budget_reset_at, ${MEMBERSHIP_ORIGIN}, row_to_json(b) as litellm_budget_table from team_memberships m left join budgets b on b.budget_id = m.budget_id where m.team_id = $1 and m.user_id = $2`,
        [body.team_id, userId]);
      return { team_id: body.team_id, user_id: userId, ...(row ? membershipView(row, deps.clock.now()) : {}), max_budget_in_team: row?.litellm_budget_table?.max_budget ?? null };
    }, {
      body: t.Object({ team_id: Id, ...who, role: opt(TeamRole), ...limits }, open),
      detail: { tags: ["team management"], summary: "Change a member's role or budget within the team" },
    })
    .post("/team/member_delete", async ({ body }) => {
      const { team, userId, blocked } = await db.transaction(async (tx) => {
        const userId = await memberOf(tx, body);
        const [gone] = await tx.query("delete from team_memberships where team_id = $1 and user_id = $2 returning budget_id", [body.team_id, userId]);
        // The member's keys in the team are blocked: they would otherwise go on spending the team's
        // budget with the member's own cap in the team gone. /key/unblock gives one back.
        const blocked = await tx.query(
          "update keys set blocked = true, updated_at = now() where team_id = $1 and user_id = $2 and not blocked returning token", [body.team_id, userId]);
        await dropOwnBudgets(tx, [gone?.budget_id ?? null]);
        await tx.query("update users set teams = array_remove(teams, $1) where user_id = $2", [body.team_id, userId]);
        await tx.query(
          `update teams set members_with_roles = (select coalesce(jsonb_agg(m), '[]'::jsonb) from jsonb_array_elements(members_with_roles) m where m->>'user_id' <> $2),
             updated_at = now() where team_id = $1`, [body.team_id, userId]);
        return { team: (await tx.query("select * from teams where team_id = $1", [body.team_id]))[0]!, userId, blocked };
      });
      // A member added again starts from nothing in the team.
      const gone = deletedRows([{ table: "members", id: body.team_id + SEP + userId }]);
      deps.invalidate({ kind: "all", reset: gone, restart: windowsOf(gone) });
      return { ...teamView(team), blocked_keys: blocked.map((k) => k.token as string) };
    }, {
      body: t.Object({ team_id: Id, ...who }, open),
      detail: { tags: ["team management"], summary: "Remove a member from a team" },
    });
}
