import { RATE_WINDOW_MS } from "./periods";
import type { SpendTargets } from "./policy";

/**
 * Every counter key, in one place. Keys carry the period they count for, so a reset or a changed
 * duration starts a fresh counter instead of leaving a stale one behind.
 */
const period = (end: number | null) => (end === null ? "all" : String(end));

export const counterKeys = {
  budget: (scope: string, end: number | null) => `b:${scope}:${period(end)}`,
  requests: (scope: string, windowStart: number) => `r:${scope}:${windowStart}`,
  tokens: (scope: string, windowStart: number) => `t:${scope}:${windowStart}`,
  /** Ends with ':' like the others, so that a scope's key is a prefix of no other scope's. */
  parallel: (scope: string) => `p:${scope}:`,
  isBudget: (key: string) => key.startsWith("b:"),
  isParallel: (key: string) => key.startsWith("p:"),
  isWindow: (key: string) => key.startsWith("r:") || key.startsWith("t:"),
  /** When a rate window (rpm, tpm) starts, read from its key; null for other counters. */
  windowStart(key: string): number | null {
    if (!counterKeys.isWindow(key)) return null;
    const start = Number(key.slice(key.lastIndexOf(":") + 1));
    return Number.isSafeInteger(start) && start % RATE_WINDOW_MS === 0 ? start : null;
  },
  /**
   * Prefix of every budget counter of a scope, to forget them when an admin sets its spend. Scopes
   * escape ':' in their ids, so it takes in no other scope's counters (`keyModels` means to take in
   * every model of a key).
   */
  budgetPrefix: (scope: string) => `b:${scope}:`,
  /** The same rate counter (rpm, tpm) in the window starting at `windowStart`. */
  inWindow: (key: string, windowStart: number) => `${key.slice(0, key.lastIndexOf(":") + 1)}${windowStart}`,
  /** Prefixes of every rate window (rpm, tpm) of a scope, as `budgetPrefix`. */
  windowPrefixes: (scope: string) => [`r:${scope}:`, `t:${scope}:`],
};

/**
 * The same rate counter in the next 60 s window, so an instance can take its lease there before the
 * window turns (no Redis round trip for the first request of a window). Null for other counters.
 */
export function nextWindowCheck<T extends { key: string; expiresAt: number }>(check: T): T | null {
  if (!check.key.startsWith("r:") && !check.key.startsWith("t:")) return null;
  const cut = check.key.lastIndexOf(":");
  const start = Number(check.key.slice(cut + 1));
  if (!Number.isFinite(start) || !Number.isFinite(check.expiresAt)) return null;
  return { ...check, key: `${check.key.slice(0, cut)}:${start + 60_000}`, expiresAt: check.expiresAt + 60_000 };
}

/**
 * One id inside a scope: its ':' and '%' escaped, so that a scope never continues past its own ids.
 * Customer "acme" and customer "acme:1" stay two scopes whose counters no prefix of the first takes
 * in (forgetting "acme"'s budget leaves "acme:1"'s), and team "a:b" with user "c" and team "a" with
 * user "b:c" stay two memberships. Ids without either, nearly all of them, read as they are.
 */
export const idPart = (id: string) => (/[%:]/.test(id) ? id.replaceAll("%", "%25").replaceAll(":", "%3A") : id);

/** Scope ids: the entity a counter belongs to. */
export const scopes = {
  key: (token: string) => `k:${idPart(token)}`,
  user: (userId: string) => `u:${idPart(userId)}`,
  /** Every user's scope (its budget prefix takes in each `user` scope's), as `customers`. */
  users: () => "u",
  team: (teamId: string) => `t:${idPart(teamId)}`,
  member: (teamId: string, userId: string) => `m:${idPart(teamId)}:${idPart(userId)}`,
  customer: (id: string) => `c:${idPart(id)}`,
  /** Every customer's scope (its budget prefix takes in each `customer` scope's, and no per-model one). */
  customers: () => "c",
  keyModel: (token: string, model: string) => `km:${idPart(token)}:${idPart(model)}`,
  /** Every per-model scope of a key: the start of each `keyModel` scope of the token. */
  keyModels: (token: string) => `km:${idPart(token)}`,
  /** A user's per-model budget, held across all its keys. */
  userModel: (userId: string, model: string) => `um:${idPart(userId)}:${idPart(model)}`,
  /** Every per-model scope of a user, as `keyModels`. */
  userModels: (userId: string) => `um:${idPart(userId)}`,
  /** A team's per-model limits and budget, held across all its keys. */
  teamModel: (teamId: string, model: string) => `tm:${idPart(teamId)}:${idPart(model)}`,
  /** Every per-model scope of a team, as `keyModels`. */
  teamModels: (teamId: string) => `tm:${idPart(teamId)}`,
  customerModel: (id: string, model: string) => `cm:${idPart(id)}:${idPart(model)}`,
  /** Every per-model scope of a customer, as `keyModels`. */
  customerModels: (id: string) => `cm:${idPart(id)}`,
  /** Every customer's per-model scopes (the customers' default budget given one), as `customers`. */
  everyCustomerModels: () => "cm",
  gateway: () => "g",
  /** A deployment (`model_list` entry) by its id: its `max_parallel_requests` slots, shared by the instances on one Redis. */
  deployment: (id: string) => `d:${idPart(id)}`,
};

/**
 * The budget counter prefixes of the scopes a request spends on: its key, the key's spend on its model
 * (where a per-model budget set later counts), user, team, membership and customer.
 */
export function budgetPrefixesOf(targets: SpendTargets): string[] {
  const own: string[] = [];
  if (targets.token) own.push(counterKeys.budgetPrefix(scopes.key(targets.token)));
  if (targets.token && targets.keyModel) own.push(counterKeys.budgetPrefix(scopes.keyModel(targets.token, targets.keyModel.model)));
  if (targets.user) own.push(counterKeys.budgetPrefix(scopes.user(targets.user.id)));
  if (targets.team) own.push(counterKeys.budgetPrefix(scopes.team(targets.team.id)));
  if (targets.member) own.push(counterKeys.budgetPrefix(scopes.member(targets.member.teamId, targets.member.userId)));
  if (targets.customer) own.push(counterKeys.budgetPrefix(scopes.customer(targets.customer.id)));
  return own;
}
