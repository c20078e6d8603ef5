import type { Counters } from "../governance/counters";
import { counterKeys, scopes } from "../governance/keys";
import { PER_MODEL, SEP, type SpendRow } from "./batch";

/** A row's counter scope (a key's, customer's, user's or team's per-model rows: the start of every one of its models' scopes). */
function scopeOf(row: SpendRow): string {
  switch (row.table) {
    case "keys":
      return scopes.key(row.id);
    case "users":
      return scopes.user(row.id);
    case "teams":
      return scopes.team(row.id);
    case "customers":
      return scopes.customer(row.id);
    case "members": {
      const [team, user] = row.id.split(SEP);
      return scopes.member(team!, user!);
    }
    case "keyModels":
      return scopes.keyModels(row.id);
    case "customerModels":
      return scopes.customerModels(row.id);
    case "userModels":
      return scopes.userModels(row.id);
    case "teamModels":
      return scopes.teamModels(row.id);
  }
}

/** The key prefix of a reset row's budget counters. */
export const budgetPrefixOf = (row: SpendRow): string => counterKeys.budgetPrefix(scopeOf(row));

/** Rows an admin deleted, as their reset says it (see `SpendRow.deleted`). */
export const deletedRows = (rows: readonly SpendRow[]): SpendRow[] => rows.map((row) => ({ ...row, deleted: true }));

/** The spend an instance has not written yet, as a reset changes it. */
interface SpendHolder {
  discard(row: SpendRow): void;
  moveKey(from: string, to: string): void;
}

/**
 * Drops what an instance holds of the spend of rows an admin reset: their budget counters (`shared`:
 * in Redis too, which the instance that made the change does) and the spend it has not written yet,
 * which was spent before the reset. The next request makes the counters again from the stored spend.
 */
export function dropSpend(rows: readonly SpendRow[] | undefined, counters: Counters, spend: SpendHolder, shared: boolean): void {
  for (const row of rows ?? []) {
    // A deleted row's parallel slots go too: one made again under its id has them all.
    const perModel = PER_MODEL.includes(row.table);
    const prefixes = row.deleted && !perModel ? [budgetPrefixOf(row), counterKeys.parallel(scopeOf(row))] : [budgetPrefixOf(row)];
    for (const prefix of prefixes) {
      if (shared) counters.forget(prefix, undefined, row.deleted);
      else counters.drop(prefix, undefined, row.deleted);
    }
    spend.discard(row);
  }
}

/**
 * Starts budget counters again after an admin change (a new period, a budget set again), from the
 * stored spend, on every instance (`shared`: in Redis too, which the instance that made the change
 * does). Requests in flight on them settle on the counters made next (see `Successions`).
 */
export function restartBudgets(prefixes: readonly string[] | undefined, counters: Counters, shared: boolean): void {
  for (const prefix of prefixes ?? []) {
    if (shared) counters.forget(prefix);
    else counters.drop(prefix);
  }
}

/** A key given a new secret: its token before and after. */
export interface Regenerated {
  from: string;
  to: string;
}

/**
 * A regenerated key's budget counters, parallel slots and running rate windows (its models' too) go
 * over to its new token, with the requests still in flight under the old secret holding their
 * reservations there (see `Successions`): its budgets count them, it has no more slots than its limit,
 * and what it made in the running minute still counts against its rpm and tpm limits.
 */
export function carryOver(regenerated: Regenerated | undefined, counters: Counters, shared: boolean): void {
  if (!regenerated) return;
  const { from, to } = regenerated;
  const windows = (scope: (token: string) => string) => counterKeys.windowPrefixes(scope(from)).map((prefix, i) => [prefix, counterKeys.windowPrefixes(scope(to))[i]!] as const);
  const prefixes = [
    [counterKeys.budgetPrefix(scopes.key(from)), counterKeys.budgetPrefix(scopes.key(to))],
    [counterKeys.budgetPrefix(scopes.keyModels(from)), counterKeys.budgetPrefix(scopes.keyModels(to))],
    [counterKeys.parallel(scopes.key(from)), counterKeys.parallel(scopes.key(to))],
    ...windows(scopes.key),
    ...windows(scopes.keyModels),
  ] as const;
  for (const [prefix, renamedTo] of prefixes) {
    if (shared) counters.forget(prefix, renamedTo);
    else counters.drop(prefix, renamedTo);
  }
}

/** The start of every counter key of a scope: each kind's key for it (budget, rate windows, in flight), cut after the scope. */
const scopePrefixes = (scope: string) =>
  [counterKeys.budget(scope, null), counterKeys.requests(scope, 0), counterKeys.tokens(scope, 0), counterKeys.parallel(scope)]
    .map((key) => key.slice(0, key.indexOf(scope) + scope.length));

/**
 * The rate windows (rpm, tpm) of deleted rows' scopes, to forget with them: an entity made again under
 * the same id starts with empty windows, as it starts with no spend (a key's per-model windows too).
 */
export function windowsOf(rows: readonly SpendRow[]): string[] {
  const windows = counterKeys.windowPrefixes;
  return rows.flatMap((row) => {
    switch (row.table) {
      case "keys":
        return [...windows(scopes.key(row.id)), ...windows(scopes.keyModels(row.id))];
      case "users":
        return windows(scopes.user(row.id));
      case "teams":
        return [...windows(scopes.team(row.id)), ...windows(scopes.teamModels(row.id))];
      case "customers":
        return windows(scopes.customer(row.id));
      case "members": {
        const [team, user] = row.id.split(SEP);
        return windows(scopes.member(team!, user!));
      }
      case "keyModels":
      case "customerModels":
      case "userModels":
      case "teamModels":
        return [];
    }
  });
}

/** The old secret of a regenerated key (`heldBy`, its token now), taken by a new key given that raw value. */
export interface ReusedToken {
  token: string;
  heldBy: string;
}

/**
 * What an instance holds under a token a new key took: the counters the regenerated key left (budget,
 * rate windows, in flight; its models' too) are forgotten, so the new key starts from nothing
 * (`shared`: in Redis too), and the spend not yet written under it goes to the regenerated key, where
 * it belongs (spend settled later still lands on the new key: a token names one key at a time).
 */
export function handOver(reused: ReusedToken | undefined, counters: Counters, spend: SpendHolder, shared: boolean): void {
  if (!reused) return;
  for (const prefix of [...scopePrefixes(scopes.key(reused.token)), ...scopePrefixes(scopes.keyModel(reused.token, ""))]) {
    if (shared) counters.forget(prefix);
    else counters.drop(prefix);
  }
  spend.moveKey(reused.token, reused.heldBy);
}
