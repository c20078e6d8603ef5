import type { Counters } from "../governance/counters";
import { counterKeys, scopes } from "../governance/keys";
import { SEP, type SpendRow } from "./batch";

/** The key prefix of a reset row's budget counters. */
export function budgetPrefixOf(row: SpendRow): string {
  switch (row.table) {
    case "keys":
      return counterKeys.budgetPrefix(scopes.key(row.id));
    case "users":
      return counterKeys.budgetPrefix(scopes.user(row.id));
    case "teams":
      return counterKeys.budgetPrefix(scopes.team(row.id));
    case "customers":
      return counterKeys.budgetPrefix(scopes.customer(row.id));
    case "members": {
      const [team, user] = row.id.split(SEP);
      return counterKeys.budgetPrefix(scopes.member(team!, user!));
    }
    case "keyModels":
      return counterKeys.budgetPrefix(`km:${row.id}`);
  }
}

/**
 * Drops what an instance holds of the spend of rows an admin reset: their budget counters (`shared`:
 * in Redis too, which the instance that made the change does) and the spend it has not written yet,
 * which was spent before the reset. The next request makes the counters again from the stored spend.
 */
export function dropSpend(rows: readonly SpendRow[] | undefined, counters: Counters, spend: { discard(row: SpendRow): void }, shared: boolean): void {
  for (const row of rows ?? []) {
    if (shared) counters.forget(budgetPrefixOf(row));
    else counters.drop(budgetPrefixOf(row));
    spend.discard(row);
  }
}
