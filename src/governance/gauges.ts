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

/** Who holds a budget per model (`model_max_budget`). */
export type BudgetHolderKind = "key" | "user" | "team" | "end user";

export interface ModelBudgetStanding {
  holder: BudgetHolderKind;
  /** The key's hashed token, the user's, team's or customer's id. */
  id: string;
  alias: string | null;
  model: string;
  budget: BudgetStanding;
}

/** The rpm/tpm room of a team (its own limits and its limits per model), a user or a customer. */
export interface HolderRoom {
  holder: "team" | "user" | "end user";
  id: string;
  alias: string | null;
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
  /** Budgets of team members in their team (`max_budget_in_team`), by team and user. */
  members: Map<string, { team: string; user: string; budget: BudgetStanding }>;
  modelBudgets: ModelBudgetStanding[];
  rooms: HolderRoom[];
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

/** Budgeted model names (entries with a budget_limit) of the key, its budget row, its user and team. */
function budgetedModels({ key, keyBudget, user, team }: Principal): Set<string> {
  const names = new Set<string>();
  for (const budgets of [key.model_max_budget, keyBudget?.model_max_budget, user?.model_max_budget, key.team_id ? team?.model_max_budget : null]) {
    for (const [name, entry] of Object.entries(budgets ?? {})) if (typeof entry?.budget_limit === "number") names.add(name);
  }
  return names;
}

/** The model names a team sets rpm/tpm limits under (its metadata, where LiteLLM keeps them). */
function teamLimitedModels({ key, team }: Principal): string[] {
  if (!key.team_id || !team) return [];
  const names = new Set<string>();
  for (const holder of [team.metadata?.model_rpm_limit, team.metadata?.model_tpm_limit]) {
    if (typeof holder === "object" && holder !== null) for (const name of Object.keys(holder)) names.add(name);
  }
  return [...names];
}

const MODEL_SCOPES: Partial<Record<ScopeName, BudgetHolderKind>> = { "key+model": "key", "user+model": "user", "team+model": "team", "end user+model": "end user" };

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

/** The least share left of a budget (if any) and of rate limits: how near the holder is its edge. */
const leastLeft = (limits: readonly LimitRoom[], budget?: BudgetStanding) =>
  limits.reduce((least, room) => Math.min(least, room.limit > 0 ? room.remaining / room.limit : 0), budget ? left(budget) : Infinity);

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
 * enforcement uses. At most `limit` keys are given, and as many teams, users, customers, team members,
 * budgets per model and holders' rate limits: those with the least left of a budget or limit (a gauge's
 * text for 10,000 keys is about 10 MB).
 */
export async function readStandings(
  principals: Iterable<Held<Principal>>, customers: Iterable<Held<CustomerRecord>>, counters: Counters, defaults: BudgetDefaults, now: number, limit: number,
): Promise<Standings> {
  const out: Standings = {
    at: now, keys: [], teams: new Map(), users: new Map(), customers: new Map(), members: new Map(), modelBudgets: [], rooms: [], gateway: null,
  };
  const plan = (principal: Principal | null, customer: CustomerRecord | null, model: string) => planChecks({
    caller: principal ? { kind: "key", principal, admin: false } : { kind: "master" }, customer, model, estimatedCost: 0, estimatedTokens: 0, now, defaults,
  }).checks;

  // The gateway's counter is never dropped while its period runs (see `LocalCounters.sweep`).
  const gateway = budgetOf(plan(null, null, ""), "proxy");
  if (gateway) out.gateway = standing(gateway, counters, true);
  if (limit === 0) return out;
  const modelBudgets = new Map<string, ModelBudgetStanding>();
  const rooms = new Map<string, HolderRoom & { seen: Set<string> }>();
  /** Each holder's budget per model, once (preferred as a team's is, below). */
  const modelBudgetsOf = (checks: readonly PlannedCheck[], current: boolean, who: (holder: BudgetHolderKind) => { id: string; alias: string | null }) => {
    for (const check of checks) {
      const holder = MODEL_SCOPES[check.scope];
      if (check.kind !== "budget" || !holder || check.model === undefined) continue;
      const { id, alias } = who(holder);
      const at = `${holder}\n${id}\n${check.model}`;
      if (modelBudgets.get(at)?.budget.remaining != null) continue;
      modelBudgets.set(at, { holder, id, alias, model: check.model, budget: standing(check, counters, current) });
    }
  };
  /** A team's, user's or customer's rate limits: the same counters through any of its keys, so the first gives them. */
  const roomsOf = (holder: HolderRoom["holder"], id: string, alias: string | null, checks: readonly PlannedCheck[], scopes: ScopeName[]) => {
    const room = rooms.get(`${holder}\n${id}`) ?? { holder, id, alias, limits: [], seen: new Set<string>() };
    for (const scope of scopes) roomOf(checks, scope, counters, room.limits, room.seen);
    if (room.limits.length) rooms.set(`${holder}\n${id}`, room);
  };
  let planned = 0;
  for (const { value: principal, current } of principals) {
    if (++planned % SLICE === 0) await nextTurn();
    const checks = plan(principal, null, "");
    const { key, team, user, membership } = principal;
    const limits: LimitRoom[] = [];
    roomOf(checks, "key", counters, limits);
    const seen = new Set<string>();
    const teamId = key.team_id && team ? team.team_id : null;
    const names = new Set([...limitedModels(principal), ...budgetedModels(principal), ...teamLimitedModels(principal)]);
    for (const model of names) {
      const byModel = plan(principal, null, model);
      roomOf(byModel, "key+model", counters, limits, seen);
      modelBudgetsOf(byModel, current, (holder) => (holder === "key" ? { id: key.token, alias: key.key_alias }
        : holder === "team" ? { id: team!.team_id, alias: team!.team_alias } : { id: user!.user_id, alias: null }));
      if (teamId) roomsOf("team", teamId, team!.team_alias, byModel, ["team+model"]);
    }
    out.keys.push({ token: key.token, alias: key.key_alias, budget: standing(budgetOf(checks, "key"), counters, current), limits });
    // Seen through several keys: the figure of one whose record a request would use as it is, if any.
    const teamHad = team && out.teams.get(team.team_id);
    if (teamId && (!teamHad || teamHad.budget.remaining === null)) {
      out.teams.set(teamId, { alias: team!.team_alias, budget: standing(budgetOf(checks, "team"), counters, current) });
    }
    if (teamId) roomsOf("team", teamId, team!.team_alias, checks, ["team"]);
    if (user) roomsOf("user", user.user_id, null, checks, ["user"]);
    const userHad = user && out.users.get(user.user_id);
    if (!key.team_id && user && (!userHad || userHad.remaining === null)) out.users.set(user.user_id, standing(budgetOf(checks, "user"), counters, current));
    const member = key.team_id && membership ? budgetOf(checks, "team member") : undefined;
    const memberId = membership && `${membership.team_id}\n${membership.user_id}`;
    if (member && memberId && out.members.get(memberId)?.budget.remaining == null) {
      out.members.set(memberId, { team: membership.team_id, user: membership.user_id, budget: standing(member, counters, current) });
    }
  }
  for (const { value: customer, current } of customers) {
    if (++planned % SLICE === 0) await nextTurn();
    const checks = plan(null, customer, "");
    out.customers.set(customer.user_id, standing(budgetOf(checks, "end user"), counters, current));
    roomsOf("end user", customer.user_id, null, checks, ["end user"]);
    for (const model of Object.keys(customer.budget?.model_max_budget ?? {})) {
      modelBudgetsOf(plan(null, customer, model), current, () => ({ id: customer.user_id, alias: null }));
    }
  }
  out.keys = nearest(out.keys, (key) => leastLeft(key.limits, key.budget), limit);
  out.teams = nearestOf(out.teams, (team) => left(team.budget), limit);
  out.users = nearestOf(out.users, left, limit);
  out.customers = nearestOf(out.customers, left, limit);
  out.members = nearestOf(out.members, (member) => left(member.budget), limit);
  out.modelBudgets = nearest([...modelBudgets.values()], (entry) => left(entry.budget), limit);
  out.rooms = nearest([...rooms.values()].map(({ holder, id, alias, limits }) => ({ holder, id, alias, limits })), (room) => leastLeft(room.limits), limit);
  return out;
}
