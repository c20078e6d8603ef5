import type { Sql } from "../db";
import { parseDuration, sameDuration } from "../governance/duration";
import { counterKeys, scopes } from "../governance/keys";
import { newPeriodAt, newPeriodSet, periodView } from "./common";

/** Where a user's or a team's spend per model is kept (for the models its model_max_budget holds). */
export interface ModelSpendTable {
  table: "user_model_spend" | "team_model_spend";
  column: "user_id" | "team_id";
  scope: (id: string, model: string) => string;
}

export const USER_MODEL_SPEND: ModelSpendTable = { table: "user_model_spend", column: "user_id", scope: scopes.userModel };
export const TEAM_MODEL_SPEND: ModelSpendTable = { table: "team_model_spend", column: "team_id", scope: scopes.teamModel };

const periodOf = (entry: Record<string, any> | null | undefined) => entry?.time_period ?? entry?.budget_duration ?? null;

/** A holder's spend per model in the periods running now, as /key/info's model_spend shows a key's. */
export async function modelSpendOf(db: Sql, where: ModelSpendTable, id: string, budgets: Record<string, any> | null | undefined, now: number) {
  const rows = await db.query(`select model, spend, budget_reset_at from ${where.table} where ${where.column} = $1 order by model`, [id]);
  return Object.fromEntries(rows.map((s) => [s.model, periodView(s.spend, s.budget_reset_at, periodOf(budgets?.[s.model]), now).spend]));
}

/**
 * What a new model_max_budget does to a holder's spend per model, as a key's: an entry whose period
 * changed starts a new one now; one newly set starts from what is stored. The spend of a model it no
 * longer budgets is no longer kept: a budget set for it again starts from nothing. The counter prefixes
 * to start again.
 */
export async function restartModelPeriods(tx: Sql, where: ModelSpendTable, id: string, before: Record<string, any>, after: Record<string, any>, now: number) {
  const prefixes: string[] = [];
  const gone = Object.keys(before).filter((model) => !(model in after));
  if (gone.length > 0) await tx.query(`delete from ${where.table} where ${where.column} = $1 and model = any($2::text[])`, [id, gone]);
  for (const [model, entry] of Object.entries(after)) {
    const was = before[model];
    if (was && sameDuration(parseDuration(periodOf(was)), parseDuration(periodOf(entry)))) continue;
    if (was) {
      await tx.query(`update ${where.table} set ${newPeriodSet("$3", "$4")} where ${where.column} = $1 and model = $2`, [id, model, ...newPeriodAt(periodOf(entry), now)]);
    }
    prefixes.push(counterKeys.budgetPrefix(where.scope(id, model)));
  }
  return prefixes;
}
