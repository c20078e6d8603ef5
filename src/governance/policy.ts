import type { Caller, CustomerRecord, ModelBudget, Principal, TeamRecord } from "../auth/principal";
import type { CounterCheck } from "./counters";
import { counterKeys, scopes } from "./keys";
import { type ModelBudgetHolder, headerToken, heldModelBudget, holdsAny, limitOf, modelNames } from "./per-model";
import { type Period, anchorOf, periodOf, rateWindow } from "./periods";

export { headerToken, modelNames } from "./per-model";

/** Gateway-wide budget settings (`litellm_settings`) and the stored gateway spend. */
export interface BudgetDefaults {
  maxBudget?: number;
  budgetDuration?: string;
  maxEndUserBudget?: number;
  maxInternalUserBudget?: number;
  internalUserBudgetDuration?: string;
  /** Requests in flight through the whole gateway (`general_settings.global_max_parallel_requests`). */
  globalMaxParallelRequests?: number;
  gatewaySpend: number;
  gatewayResetAt: Date | null;
  gatewayCreatedAt: Date | null;
  /** When the gateway budget's current chain of periods began, if stored: its calendar months count from it. */
  gatewayAnchorAt?: Date | null;
}

export type ScopeName = "key" | "user" | "team" | "team member" | "end user" | "key+model" | "user+model" | "team+model" | "end user+model" | "proxy";
export type CheckKind = "budget" | "rpm" | "tpm" | "parallel";

export interface PlannedCheck extends CounterCheck {
  kind: CheckKind;
  scope: ScopeName;
  /** How the scope is named in error messages: `Key=sk-...abcd`, `User=u1 in Team=t1`. */
  label: string;
  /** For per-model key limits: the model, for the `x-litellm-key-remaining-*-<model>` headers. */
  model?: string;
  /** The model as a header name may spell it (see `headerToken`). */
  modelHeader?: string;
  /** For budgets: the max_budget as set (the counter's limit sits a hair below it, see `edgeOf`). */
  budget?: number;
}

/**
 * The spend at which a budget counts as reached. Costs are binary fractions: thirty requests of
 * 1e-7 add up to 2.9999999999999997e-6, which `>=` would find below a budget of 3e-6 and admit a
 * thirty-first. A spend within a billionth of the budget (relative) has reached it.
 */
const edgeOf = (max: number) => max - max * 1e-9;

/**
 * Which stored spend rows a request's cost is added to, with the period each delta belongs to, the
 * `base`: the stored `budget_reset_at` the period was worked out from (ms, null for none), and the
 * period's fixed length (`step`, see Period). The write tells from them a period that turned (the row
 * holds the base, or a later end of its chain: another write turned it after the base was read) from
 * one an admin changed while the request was in flight (it holds something else): see spend/repo.ts.
 */
export interface SpendTargets {
  token: string | null;
  keyPeriod: number | null;
  keyBase?: number | null;
  keyStep?: number | null;
  user: ({ id: string } & Turn) | null;
  team: ({ id: string } & Turn) | null;
  member: ({ teamId: string; userId: string } & Turn) | null;
  customer: ({ id: string } & Turn) | null;
  keyModel: ({ model: string } & Turn) | null;
  /** A customer's spend on the model its budget's model_max_budget holds it to (none for a model it does not). */
  customerModel?: ({ model: string } & Turn) | null;
  /** The spend of the key's user and of its team on the model their model_max_budget holds them to, likewise. */
  userModel?: ({ id: string; model: string } & Turn) | null;
  teamModel?: ({ id: string; model: string } & Turn) | null;
  gatewayPeriod: number | null;
  gatewayBase?: number | null;
  gatewayStep?: number | null;
  /** The spend log row's user_id: the key's user, on a team key too (where that user's own spend is not charged). */
  keyUser?: string | null;
  /** When the key's row was made (ms): its spend (and its per-model spend) goes to that row, not to one made again under its token. */
  keyBorn?: number;
}

/** A delta's period, the stored reset it was worked out from, and the period's fixed length. */
export interface Turn {
  period: number | null;
  base?: number | null;
  step?: number | null;
  /** When the row was made (ms): a row deleted and made again under the same id meanwhile is another row. */
  born?: number;
}

const baseOf = (resetAt: Date | null | undefined) => (resetAt ? resetAt.getTime() : null);
/** The period, base and step of a delta for a row whose stored reset is `resetAt`. */
const turnOf = (period: Period, resetAt: Date | null | undefined, made?: Date): Turn =>
  ({ period: period.end, base: baseOf(resetAt), step: period.step, born: bornOf(made) });
/** A row's making time as deltas carry it; none for a record not read from the database. */
const bornOf = (made: Date | undefined) => {
  const at = made?.getTime();
  return at !== undefined && Number.isFinite(at) ? at : undefined;
};

export interface Plan {
  checks: PlannedCheck[];
  targets: SpendTargets;
}

export interface PlanInput {
  caller: Caller;
  customer: CustomerRecord | null;
  /** The model group that serves the request (an alias resolved). */
  model: string;
  /** The name the request asked for, when it differs from `model` (an alias): per-model key limits keyed by it apply. */
  requested?: string;
  estimatedCost: number;
  /** Tokens the request may use (prompt and completion), held on tpm limits while it is in flight. */
  estimatedTokens?: number;
  now: number;
  defaults: BudgetDefaults;
}

/**
 * The duration a user's budget resets on: its own, else, for an internal user, the default
 * (`internal_user_budget_duration`), whether its max_budget is its own or the default, as LiteLLM
 * gives an internal user without one the default duration. The reset scheduler reads it so too.
 */
export function userBudgetDuration(user: { budget_duration: string | null; user_role: string | null }, internalDefault: string | null | undefined): string | null {
  return user.budget_duration ?? (user.user_role === "internal_user" ? internalDefault ?? null : null);
}

const pick = <T>(own: T | null | undefined, fallback: T | null | undefined): T | null => own ?? fallback ?? null;

/** Every budget and limit that applies to one request, in the order the SPEC checks them. */
export function planChecks(input: PlanInput): Plan {
  const { caller, customer, model, estimatedCost, now, defaults } = input;
  const names = modelNames(input.requested ?? model, model);
  const checks: PlannedCheck[] = [];
  const limits: PlannedCheck[] = [];
  const window = rateWindow(now);
  const targets: SpendTargets = {
    token: null, keyPeriod: null, user: null, team: null, member: null, customer: null, keyModel: null, gatewayPeriod: null,
  };

  const budget = (scope: ScopeName, id: string, label: string, max: number | null, period: Period, modelName?: string) => {
    if (max === null || max === undefined) return;
    checks.push({
      kind: "budget", scope, label, model: modelName,
      key: counterKeys.budget(id, period.end), limit: edgeOf(max), budget: max, reserve: estimatedCost, initial: period.spend,
      expiresAt: period.end ?? Infinity, on: undefined,
    });
  };
  const rate = (
    scope: ScopeName, id: string, label: string,
    rpm: number | null, tpm: number | null, parallel: number | null, modelName?: string,
  ) => {
    // The key's own per-model limits have headers of their own (x-litellm-key-remaining-requests-<model>).
    const modelHeader = modelName === undefined || scope !== "key+model" ? undefined : headerToken(modelName);
    const common = { scope, label, model: modelName, modelHeader, initial: 0 };
    if (rpm !== null) limits.push({ ...common, kind: "rpm", key: counterKeys.requests(id, window.start), limit: rpm, reserve: 1, expiresAt: window.end, on: undefined });
    if (tpm !== null) limits.push({ ...common, kind: "tpm", key: counterKeys.tokens(id, window.start), limit: tpm, reserve: input.estimatedTokens ?? 0, expiresAt: window.end, on: undefined });
    if (parallel !== null) limits.push({ ...common, kind: "parallel", key: counterKeys.parallel(id), limit: parallel, reserve: 1, expiresAt: Infinity, on: undefined });
  };


  function planPrincipal(p: Principal) {
    const { key, keyBudget, user, team, membership } = p;
    const keyScope = scopes.key(key.token);
    const keyPeriod = periodOf(key.spend, pick(key.budget_duration, keyBudget?.budget_duration), key.budget_reset_at, key.created_at, now, anchorOf(key));
    targets.token = key.token;
    targets.keyPeriod = keyPeriod.end;
    targets.keyBase = baseOf(key.budget_reset_at);
    targets.keyStep = keyPeriod.step;
    targets.keyBorn = bornOf(key.created_at);
    budget("key", keyScope, `Key=${key.key_name}`, pick(key.max_budget, keyBudget?.max_budget), keyPeriod);

    if (key.team_id) {
      if (team) {
        const period = periodOf(team.spend, team.budget_duration, team.budget_reset_at, team.created_at, now, anchorOf(team));
        targets.team = { id: team.team_id, ...turnOf(period, team.budget_reset_at, team.created_at) };
        budget("team", scopes.team(team.team_id), `Team=${team.team_id}`, team.max_budget, period);
      }
      if (membership) {
        const b = membership.budget;
        const period = periodOf(membership.spend, b?.budget_duration, membership.budget_reset_at, membership.created_at, now, anchorOf(membership));
        targets.member = { teamId: membership.team_id, userId: membership.user_id, ...turnOf(period, membership.budget_reset_at, membership.created_at) };
        budget("team member", scopes.member(membership.team_id, membership.user_id),
          `User=${membership.user_id} in Team=${membership.team_id}`, b?.max_budget ?? null, period);
      }
    } else if (user) {
      const useDefault = user.max_budget === null && user.user_role === "internal_user" && defaults.maxInternalUserBudget !== undefined;
      const period = periodOf(user.spend, userBudgetDuration(user, defaults.internalUserBudgetDuration), user.budget_reset_at, user.created_at, now, anchorOf(user));
      targets.user = { id: user.user_id, ...turnOf(period, user.budget_reset_at, user.created_at) };
      budget("user", scopes.user(user.user_id), `User=${user.user_id}`, useDefault ? defaults.maxInternalUserBudget! : user.max_budget, period);
    }
  }

  /**
   * A holder's budget per model (a customer's budget's model_max_budget, a user's, a team's), planned
   * under its counter scope for the model; the turn of the spend it records, none when it budgets none.
   */
  function holderModelBudget(scope: ScopeName, holder: ModelBudgetHolder, id: (model: string) => string, label: string, made?: Date) {
    const held = heldModelBudget(holder, names, now);
    if (!held) return null;
    budget(scope, id(held.name), label, held.limit, held.period, held.name);
    return { model: held.name, ...turnOf(held.period, held.resetAt, made) };
  }

  /**
   * The budgets per model of the key's user and team, held across all their keys as LiteLLM holds
   * them: the user's on every key of the user (a team key too), the team's on every key of the team
   * but one whose own budget for the model takes its place (LiteLLM's key entry overriding the team's).
   */
  function planHolderModelBudgets(p: Principal, keyBudgeted: boolean) {
    const { user, team } = p;
    // Most hold none: nothing is made for them on the request path.
    if (user && holdsAny(user.model_max_budget)) {
      const turn = holderModelBudget("user+model", { budgets: user.model_max_budget, spend: user.modelSpend, createdAt: user.created_at },
        (name) => scopes.userModel(user.user_id, name), `User=${user.user_id}`, user.created_at);
      targets.userModel = turn && { id: user.user_id, ...turn };
    }
    if (team && !keyBudgeted && holdsAny(team.model_max_budget)) {
      const turn = holderModelBudget("team+model", { budgets: team.model_max_budget, spend: team.modelSpend, createdAt: team.created_at },
        (name) => scopes.teamModel(team.team_id, name), `Team=${team.team_id}`, team.created_at);
      targets.teamModel = turn && { id: team.team_id, ...turn };
    }
  }

  /** The model budget entry (of the key, else its budget) under the first of `names` holding one, and that name. */
  function modelBudgetOf(p: Principal): { name: string; entry: ModelBudget } | null {
    for (const name of names) {
      const entry = p.key.model_max_budget?.[name] ?? p.keyBudget?.model_max_budget?.[name];
      if (entry) return { name, entry };
    }
    return null;
  }

  /**
   * A model's limits where LiteLLM reads them, first found: the key's metadata, its own fields, its
   * model_max_budget; all under the first of `names` any of them is keyed by, so one request counts
   * against one entry's limits.
   */
  function planModelLimits(p: Principal) {
    const { key, keyBudget } = p;
    for (const name of names) {
      const inBudget = key.model_max_budget?.[name] ?? keyBudget?.model_max_budget?.[name];
      const modelRpm = limitOf(key.metadata?.model_rpm_limit, name) ?? limitOf(key.model_rpm_limit, name) ?? limitOf(inBudget, "rpm_limit");
      const modelTpm = limitOf(key.metadata?.model_tpm_limit, name) ?? limitOf(key.model_tpm_limit, name) ?? limitOf(inBudget, "tpm_limit");
      if (modelRpm !== null || modelTpm !== null) {
        rate("key+model", scopes.keyModel(key.token, name), `key ${key.key_name} for model=${name}`, modelRpm, modelTpm, null, name);
        return;
      }
    }
  }

  /**
   * A team's limits per model, where LiteLLM keeps them (its metadata's `model_rpm_limit` and
   * `model_tpm_limit`): shared by every key of the team, under the first of `names` either holds.
   */
  function planTeamModelLimits(team: TeamRecord) {
    const rpm = team.metadata?.model_rpm_limit;
    const tpm = team.metadata?.model_tpm_limit;
    if (!rpm && !tpm) return;
    for (const name of names) {
      const modelRpm = limitOf(rpm, name);
      const modelTpm = limitOf(tpm, name);
      if (modelRpm !== null || modelTpm !== null) {
        rate("team+model", scopes.teamModel(team.team_id, name), `team ${team.team_id} for model=${name}`, modelRpm, modelTpm, null, name);
        return;
      }
    }
  }

  /**
   * The spend is recorded under the name the budget is keyed by (what /key/info's model_spend shows),
   * else the group's. Whether the key has a budget for the model.
   */
  function planModelBudget(p: Principal): boolean {
    const { key } = p;
    const found = modelBudgetOf(p);
    targets.keyModel = { model, period: null, born: bornOf(key.created_at) };
    // An entry may hold limits alone (no budget_limit): nothing to budget then.
    if (found && typeof found.entry.budget_limit === "number") {
      const { name, entry } = found;
      const stored = p.modelSpend[name];
      const period = periodOf(stored?.spend ?? 0, entry.time_period, stored?.budget_reset_at ?? null, key.created_at, now, stored?.budget_anchor_at ?? key.created_at);
      targets.keyModel = { model: name, ...turnOf(period, stored?.budget_reset_at, key.created_at) };
      budget("key+model", scopes.keyModel(key.token, name), `Key=${key.key_name}`, entry.budget_limit, period, name);
      return true;
    }
    return false;
  }

  function planLimits(p: Principal) {
    const { key, keyBudget, user, team, membership } = p;
    rate("key", scopes.key(key.token), `key ${key.key_name}`, pick(key.rpm_limit, keyBudget?.rpm_limit), pick(key.tpm_limit, keyBudget?.tpm_limit),
      pick(key.max_parallel_requests, keyBudget?.max_parallel_requests));
    if (user) rate("user", scopes.user(user.user_id), `user ${user.user_id}`, user.rpm_limit, user.tpm_limit, user.max_parallel_requests);
    if (team) rate("team", scopes.team(team.team_id), `team ${team.team_id}`, team.rpm_limit, team.tpm_limit, team.max_parallel_requests);
    if (membership?.budget) {
      const b = membership.budget;
      rate("team member", scopes.member(membership.team_id, membership.user_id),
        `user ${membership.user_id} in team ${membership.team_id}`, b.rpm_limit, b.tpm_limit, b.max_parallel_requests);
    }
  }

  const principal = caller.kind === "key" ? caller.principal : null;
  if (principal) planPrincipal(principal);
  if (principal) targets.keyUser = principal.key.user_id;
  if (customer) {
    const b = customer.budget;
    const period = periodOf(customer.spend, b?.budget_duration, customer.budget_reset_at, customer.created_at, now, anchorOf(customer));
    targets.customer = { id: customer.user_id, ...turnOf(period, customer.budget_reset_at, customer.unstored ? undefined : customer.created_at) };
    // A budget of the customer's own caps its spend only by its own max_budget (none: no cap, as LiteLLM reads it).
    const cap = b && !customer.defaultBudget ? b.max_budget : (b?.max_budget ?? defaults.maxEndUserBudget ?? null);
    budget("end user", scopes.customer(customer.user_id), `End User=${customer.user_id}`, cap, period);
    if (holdsAny(b?.model_max_budget)) targets.customerModel = holderModelBudget("end user+model", { budgets: b?.model_max_budget, spend: customer.modelSpend, createdAt: customer.created_at },
      (name) => scopes.customerModel(customer.user_id, name), `End User=${customer.user_id}`);
  }
  if (principal) planHolderModelBudgets(principal, planModelBudget(principal));

  const gateway = periodOf(defaults.gatewaySpend, defaults.budgetDuration, defaults.gatewayResetAt, defaults.gatewayCreatedAt, now, defaults.gatewayAnchorAt ?? null);
  targets.gatewayPeriod = gateway.end;
  targets.gatewayBase = baseOf(defaults.gatewayResetAt);
  targets.gatewayStep = gateway.step;
  budget("proxy", scopes.gateway(), "Proxy", defaults.maxBudget ?? null, gateway);

  // Rate limits: the gateway's slots first, for every caller; the master key and proxy admins skip
  // their own; a customer's apply whoever calls.
  if (defaults.globalMaxParallelRequests !== undefined) {
    rate("proxy", scopes.gateway(), "the gateway", null, null, defaults.globalMaxParallelRequests);
  }
  if (principal && caller.kind === "key" && !caller.admin) planLimits(principal);
  const b = customer?.budget;
  if (customer && b) {
    rate("end user", scopes.customer(customer.user_id), `end user ${customer.user_id}`, b.rpm_limit, b.tpm_limit, b.max_parallel_requests);
  }
  if (principal && caller.kind === "key" && !caller.admin) {
    planModelLimits(principal);
    if (principal.team) planTeamModelLimits(principal.team);
  }

  checks.push(...limits);
  return { checks, targets };
}

/** A plan as planned once, valid from the instant it was planned at until a rate window turns or a budget period ends. */
interface CachedPlan {
  checks: PlannedCheck[];
  targets: SpendTargets;
  plannedAt: number;
  validUntil: number;
  defaults: BudgetDefaults;
}

const MASTER = {};

/**
 * `planChecks` with the plan kept per principal, customer and model: the same keys, limits and
 * spend targets serve every request until the rate window turns, a budget period ends, or a newer
 * principal, customer or budget settings object replaces them (a reloaded principal is a new object;
 * the runtime hands out a new settings object when they change). Only the budget reservation, the
 * request's estimated cost (and its tokens, on tpm limits), is filled in per request.
 */
export function createPlanner() {
  type PerModel = { none?: CachedPlan; byCustomer?: WeakMap<CustomerRecord, CachedPlan> };
  const cache = new WeakMap<object, Map<string, PerModel>>();

  function fresh(input: PlanInput): CachedPlan {
    const plan = planChecks({ ...input, estimatedCost: 0, estimatedTokens: 0 });
    let validUntil = rateWindow(input.now).end;
    const t = plan.targets;
    const ends = [t.keyPeriod, t.user?.period, t.team?.period, t.member?.period, t.customer?.period, t.keyModel?.period, t.customerModel?.period,
      t.userModel?.period, t.teamModel?.period, t.gatewayPeriod,
      ...plan.checks.map((check) => check.expiresAt)];
    // Spend targets carry their period too: a target without a budget check still turns over.
    for (const end of ends) if (end !== null && end !== undefined && end < validUntil) validUntil = end;
    return { checks: plan.checks, targets: plan.targets, plannedAt: input.now, validUntil, defaults: input.defaults };
  }

  return function plan(input: PlanInput): Plan {
    const owner = input.caller.kind === "key" ? input.caller.principal : MASTER;
    let models = cache.get(owner);
    if (!models) cache.set(owner, (models = new Map()));
    // An alias gets its own plan: limits keyed by the alias apply to it, not to its group's name.
    const name = input.requested === undefined || input.requested === input.model ? input.model : `${input.requested}\n${input.model}`;
    let perModel = models.get(name);
    if (!perModel) models.set(name, (perModel = {}));
    let cached = input.customer ? perModel.byCustomer?.get(input.customer) : perModel.none;
    // An instant before the cached plan's (a fallback, planned at its request's admission): planned for it, the cache kept.
    if (cached && input.now < cached.plannedAt) cached = fresh(input);
    else if (!cached || input.now >= cached.validUntil || cached.defaults !== input.defaults) {
      cached = fresh(input);
      if (input.customer) (perModel.byCustomer ??= new WeakMap()).set(input.customer, cached);
      else perModel.none = cached;
    }
    const template = cached.checks;
    const checks = new Array<PlannedCheck>(template.length);
    for (let i = 0; i < template.length; i++) {
      const check = template[i]!;
      checks[i] = check.kind === "budget" ? { ...check, reserve: input.estimatedCost }
        : check.kind === "tpm" ? { ...check, reserve: input.estimatedTokens ?? 0 } : check;
    }
    return { checks, targets: cached.targets };
  }
}
