import type { Sql } from "../db";
import { currentPeriodEnd, parseDuration } from "../governance/duration";

/** A stored budget whose period is over: where it is, which duration it runs on, and when it ended. */
interface DueRow {
  id: string;
  duration: string | null;
  reset_at: Date;
  /** Where its calendar months count from (see currentPeriodEnd): when its periods began, else when it was made. */
  origin: Date | null;
}

interface Table {
  name: string;
  /** Rows whose budget_reset_at has passed, with the duration they reset on. */
  due: string;
  /** Compare-and-set: only the instance that still sees the old reset time resets the row. */
  reset: string;
  /** Parameters of `due` after `$1` (now). */
  extra?: (defaults: ResetDefaults) => unknown[];
}

const TABLES: Table[] = [
  {
    name: "keys",
    due: `select token as id, coalesce(k.budget_duration, b.budget_duration) as duration, k.budget_reset_at as reset_at,
          coalesce(k.budget_anchor_at, k.created_at) as origin
          from keys k left join budgets b on b.budget_id = k.budget_id where k.budget_reset_at <= $1 limit 1000`,
    reset: "update keys set spend = 0, budget_reset_at = $3 where token = $1 and budget_reset_at = $2",
  },
  {
    // An internal user without a duration of its own resets on the default (see userBudgetDuration).
    name: "users",
    due: `select user_id as id, coalesce(budget_duration, case when user_role = 'internal_user' then $2::text end) as duration,
          budget_reset_at as reset_at, coalesce(budget_anchor_at, created_at) as origin from users where budget_reset_at <= $1 limit 1000`,
    reset: "update users set spend = 0, budget_reset_at = $3 where user_id = $1 and budget_reset_at = $2",
    extra: (d) => [d.internalUserBudgetDuration ?? null],
  },
  {
    name: "teams",
    due: "select team_id as id, budget_duration as duration, budget_reset_at as reset_at, coalesce(budget_anchor_at, created_at) as origin from teams where budget_reset_at <= $1 limit 1000",
    reset: "update teams set spend = 0, budget_reset_at = $3 where team_id = $1 and budget_reset_at = $2",
  },
  {
    name: "team_memberships",
    due: `select m.team_id || chr(31) || m.user_id as id, b.budget_duration as duration, m.budget_reset_at as reset_at,
          coalesce(m.budget_anchor_at, m.created_at) as origin
          from team_memberships m left join budgets b on b.budget_id = m.budget_id where m.budget_reset_at <= $1 limit 1000`,
    reset: `update team_memberships set spend = 0, budget_reset_at = $3
            where team_id || chr(31) || user_id = $1 and budget_reset_at = $2`,
  },
  {
    // A customer without a budget of its own resets on max_end_user_budget_id's.
    name: "end_users",
    due: `select e.user_id as id, b.budget_duration as duration, e.budget_reset_at as reset_at,
          coalesce(e.budget_anchor_at, e.created_at) as origin
          from end_users e left join budgets b on b.budget_id = coalesce(e.budget_id, $2) where e.budget_reset_at <= $1 limit 1000`,
    reset: "update end_users set spend = 0, budget_reset_at = $3 where user_id = $1 and budget_reset_at = $2",
    extra: (d) => [d.endUserBudgetId ?? null],
  },
  {
    // A key's own entry for the model, else its budget_id's (as enforcement reads them).
    name: "key_model_spend",
    due: `select s.token || chr(31) || s.model as id, coalesce(k.model_max_budget -> s.model, b.model_max_budget -> s.model) ->> 'time_period' as duration,
          s.budget_reset_at as reset_at, coalesce(s.budget_anchor_at, k.created_at) as origin from key_model_spend s join keys k on k.token = s.token left join budgets b on b.budget_id = k.budget_id
          where s.budget_reset_at <= $1 limit 1000`,
    reset: `update key_model_spend set spend = 0, budget_reset_at = $3
            where token || chr(31) || model = $1 and budget_reset_at = $2`,
  },
  {
    name: "customer_model_spend",
    due: `select s.user_id || chr(31) || s.model as id, b.model_max_budget -> s.model ->> 'time_period' as duration, s.budget_reset_at as reset_at,
          coalesce(s.budget_anchor_at, e.created_at) as origin from customer_model_spend s join end_users e on e.user_id = s.user_id left join budgets b on b.budget_id = coalesce(e.budget_id, $2)
          where s.budget_reset_at <= $1 limit 1000`,
    reset: `update customer_model_spend set spend = 0, budget_reset_at = $3
            where user_id || chr(31) || model = $1 and budget_reset_at = $2`,
    extra: (d) => [d.endUserBudgetId ?? null],
  },
  {
    name: "user_model_spend",
    due: `select s.user_id || chr(31) || s.model as id, u.model_max_budget -> s.model ->> 'time_period' as duration, s.budget_reset_at as reset_at,
          coalesce(s.budget_anchor_at, u.created_at) as origin from user_model_spend s join users u on u.user_id = s.user_id where s.budget_reset_at <= $1 limit 1000`,
    reset: `update user_model_spend set spend = 0, budget_reset_at = $3
            where user_id || chr(31) || model = $1 and budget_reset_at = $2`,
  },
  {
    name: "team_model_spend",
    due: `select s.team_id || chr(31) || s.model as id, t.model_max_budget -> s.model ->> 'time_period' as duration, s.budget_reset_at as reset_at,
          coalesce(s.budget_anchor_at, t.created_at) as origin from team_model_spend s join teams t on t.team_id = s.team_id where s.budget_reset_at <= $1 limit 1000`,
    reset: `update team_model_spend set spend = 0, budget_reset_at = $3
            where team_id || chr(31) || model = $1 and budget_reset_at = $2`,
  },
  {
    // A budget row holds no spend (its holders do), but shows when its period turns: kept current.
    name: "budgets",
    due: "select budget_id as id, budget_duration as duration, budget_reset_at as reset_at, coalesce(budget_anchor_at, created_at) as origin from budgets where budget_reset_at <= $1 limit 1000",
    reset: "update budgets set budget_reset_at = $3 where budget_id = $1 and budget_reset_at = $2",
  },
  {
    name: "gateway_spend",
    due: "select '1' as id, $2::text as duration, budget_reset_at as reset_at, budget_anchor_at as origin from gateway_spend where budget_reset_at <= $1",
    reset: "update gateway_spend set spend = 0, budget_reset_at = $3 where $1 = '1' and id = 1 and budget_reset_at = $2",
    extra: (d) => [d.gatewayBudgetDuration ?? null],
  },
];

export interface ResetDefaults {
  internalUserBudgetDuration?: string;
  /** litellm_settings.max_end_user_budget_id: the budget of customers without one of their own. */
  endUserBudgetId?: string;
  gatewayBudgetDuration?: string;
}

/**
 * Persists every reset that is due: spend to 0 and `budget_reset_at` to the next boundary after now
 * (missed periods collapse into one). Safe with several instances: each row is reset by exactly one.
 * Enforcement does not wait for this: a passed `budget_reset_at` already counts as reset.
 */
export async function resetDueBudgets(db: Sql, now: Date, defaults: ResetDefaults): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for (const table of TABLES) {
    const rows = await db.query<DueRow>(table.due, [now.toISOString(), ...(table.extra?.(defaults) ?? [])]);
    let reset = 0;
    for (const row of rows) {
      const duration = parseDuration(row.duration);
      const resetAt = new Date(row.reset_at);
      // No duration any more: the budget no longer resets; leave its spend alone.
      if (!duration) continue;
      const next = currentPeriodEnd(resetAt, duration, now, row.origin ? new Date(row.origin) : null);
      const updated = await db.query(`${table.reset} returning 1`, [row.id, resetAt.toISOString(), next.toISOString()]);
      reset += updated.length;
    }
    if (reset > 0) counts[table.name] = reset;
  }
  return counts;
}
