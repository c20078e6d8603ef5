import type { Held } from "../auth";
import type { CustomerRecord, Principal } from "../auth/principal";
import type { Counters } from "./counters";
import { limitOf } from "./per-model";
import { type BudgetDefaults, type PlannedCheck, type ScopeName, planChecks } from "./policy";

/**
 * Where budgets and limits stand, read when /metrics is scraped from what the gateway holds anyway:
 * the cached keys (with their users and teams) and customers, and the counters enforcement decides
 * on (with Redis, the shared values this instance last synced). Nothing is read from the database or
 * Redis, and no counter is made.
 */

/** A budget's standing: null `max` for none (its remaining then reads +Inf, as LiteLLM's does). */
export interface BudgetStanding {
  max: number | null;
  /**
   * The max less the spend (settled; what requests in flight hold is not spent yet, as LiteLLM counts);
   * null when not known without reading (see `standing`).
   */
  remaining: number | null;
  /** When its period ends (ms), or null for a budget that never resets. */
  resetsAt: number | null;
}

/** A rate limit's room in the running minute, as the `x-litellm-key-remaining-*` headers give it (requests in flight hold theirs). */
export interface LimitRoom {
  model: string | null;
  kind: "rpm" | "tpm";
  remaining: number;
  limit: number;
}

export interface KeyStanding {
  token: string;
  alias: string | null;
  budget: BudgetStanding;
  /** The key's own rpm/tpm limits (model null) and its limits per model. */
  limits: LimitRoom[];
}

export interface Standings {
  /** When they were read (ms). */
  at: number;
  keys: KeyStanding[];
  teams: Map<string, { alias: string | null; budget: BudgetStanding }>;
  /** Users whose own budget applies: those of personal (non-team) keys held. */
  users: Map<string, BudgetStanding>;
  customers: Map<string, BudgetStanding>;
  /** The gateway's `litellm_settings.max_budget`; null when unset. */
  gateway: BudgetStanding | null;
}

const UNLIMITED: BudgetStanding = { max: null, remaining: Infinity, resetsAt: null };

/**
 * A counter held here gives its value (shared: as last synced). One not held starts from the stored
 * spend of the record it is planned from: on a single instance that is its spend while a request would
 * use the record as it is (`current`; an older one may miss spend since its counter was dropped idle);
 * shared, the value is in Redis. Not known, the remaining is left out rather than shown wrong.
 */
function standing(check: PlannedCheck | undefined, counters: Counters, current: boolean): BudgetStanding {
  if (!check) return UNLIMITED;
  const max = check.budget ?? check.limit;
  const known = counters.holds(check) || (current && !counters.shared);
  return { max, remaining: known ? max - counters.spent(check) : null, resetsAt: Number.isFinite(check.expiresAt) ? check.expiresAt : null };
}

const budgetOf = (checks: readonly PlannedCheck[], scope: ScopeName) => checks.find((c) => c.kind === "budget" && c.scope === scope);

/** The model names a key sets limits per model under, wherever LiteLLM reads them (see `planModelLimits`). */
function limitedModels({ key, keyBudget }: Principal): Set<string> {
  const names = new Set<string>();
  /** `inBudgets`: a model_max_budget, whose entries may hold a budget alone. */
  const add = (holder: unknown, inBudgets = false) => {
    if (typeof holder !== "object" || holder === null) return;
    for (const [name, entry] of Object.entries(holder)) {
      if (!inBudgets || limitOf(entry, "rpm_limit") !== null || limitOf(entry, "tpm_limit") !== null) names.add(name);
    }
  };
  add(key.metadata?.model_rpm_limit);
  add(key.metadata?.model_tpm_limit);
  add(key.model_rpm_limit);
  add(key.model_tpm_limit);
  add(key.model_max_budget, true);
  add(keyBudget?.model_max_budget, true);
  return names;
}

function roomOf(checks: readonly PlannedCheck[], scope: ScopeName, counters: Counters, into: LimitRoom[], seen?: Set<string>): void {
  for (const check of checks) {
    if (check.scope !== scope || (check.kind !== "rpm" && check.kind !== "tpm")) continue;
    const model = check.model ?? null;
    // A window not held here has counted nothing on a single instance; shared, its count is in Redis.
    if (counters.shared && !counters.holds(check)) continue;
    if (seen) {
      if (seen.has(`${check.kind}\n${model}`)) continue;
      seen.add(`${check.kind}\n${model}`);
    }
    into.push({ model, kind: check.kind, remaining: Math.max(0, check.limit - counters.used(check)), limit: check.limit });
  }
}

/** What share of a budget is left (0 spent out, Infinity for none; not known: after every known one). */
function left(budget: BudgetStanding): number {
  if (budget.max === null) return Infinity;
  if (budget.remaining === null) return Number.MAX_VALUE;
  return budget.max > 0 ? budget.remaining / budget.max : budget.remaining > 0 ? 1 : 0;
}

/** A key's nearest edge: the least share left of its budget and of its rate limits. */
const keyLeft = (key: KeyStanding) => key.limits.reduce((least, room) => Math.min(least, room.limit > 0 ? room.remaining / room.limit : 0), left(key.budget));

/** The `limit` entries nearest their edge, when there are more: those an alert is about. */
function nearest<T>(entries: T[], share: (entry: T) => number, limit: number): T[] {
  if (entries.length <= limit) return entries;
  return entries.map((entry) => ({ entry, share: share(entry) })).sort((a, b) => a.share - b.share).slice(0, limit).map((e) => e.entry);
}

const nearestOf = <K, V>(map: Map<K, V>, share: (value: V) => number, limit: number) =>
  map.size <= limit ? map : new Map(nearest([...map], ([, value]) => share(value), limit));

/** Keys planned between two turns of the event loop: a scrape over a large key cache does not hold requests up for long. */
const SLICE = 256;
const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * Plans as a request would (with no model access or admin exemption), so each figure is the counter
 * enforcement uses. At most `limit` keys are given, and as many teams, users and customers: those with
 * the least left of a budget or limit (a gauge's text for 10,000 keys is about 10 MB).
 */
export async function readStandings(
  principals: Iterable<Held<Principal>>, customers: Iterable<Held<CustomerRecord>>, counters: Counters, defaults: BudgetDefaults, now: number, limit: number,
): Promise<Standings> {
  const out: Standings = { at: now, keys: [], teams: new Map(), users: new Map(), customers: new Map(), gateway: null };
  const plan = (principal: Principal | null, customer: CustomerRecord | null, model: string) => planChecks({
    caller: principal ? { kind: "key", principal, admin: false } : { kind: "master" }, customer, model, estimatedCost: 0, estimatedTokens: 0, now, defaults,
  }).checks;

  // The gateway's counter is never dropped while its period runs (see `LocalCounters.sweep`).
  const gateway = budgetOf(plan(null, null, ""), "proxy");
  if (gateway) out.gateway = standing(gateway, counters, true);
  if (limit === 0) return out;
  let planned = 0;
  for (const { value: principal, current } of principals) {
    if (++planned % SLICE === 0) await nextTurn();
    const checks = plan(principal, null, "");
    const { key, team, user } = principal;
    const limits: LimitRoom[] = [];
    roomOf(checks, "key", counters, limits);
    const seen = new Set<string>();
    for (const model of limitedModels(principal)) roomOf(plan(principal, null, model), "key+model", counters, limits, seen);
    out.keys.push({ token: key.token, alias: key.key_alias, budget: standing(budgetOf(checks, "key"), counters, current), limits });
    // Seen through several keys: the figure of one whose record a request would use as it is, if any.
    const teamHad = team && out.teams.get(team.team_id);
    if (key.team_id && team && (!teamHad || teamHad.budget.remaining === null)) {
      out.teams.set(team.team_id, { alias: team.team_alias, budget: standing(budgetOf(checks, "team"), counters, current) });
    }
    const userHad = user && out.users.get(user.user_id);
    if (!key.team_id && user && (!userHad || userHad.remaining === null)) out.users.set(user.user_id, standing(budgetOf(checks, "user"), counters, current));
  }
  for (const { value: customer, current } of customers) {
    if (++planned % SLICE === 0) await nextTurn();
    out.customers.set(customer.user_id, standing(budgetOf(plan(null, customer, ""), "end user"), counters, current));
  }
  out.keys = nearest(out.keys, keyLeft, limit);
  out.teams = nearestOf(out.teams, (team) => left(team.budget), limit);
  out.users = nearestOf(out.users, left, limit);
  out.customers = nearestOf(out.customers, left, limit);
  return out;
}
