import type { Auth } from "../auth";
import type { Caller, CustomerRecord } from "../auth/principal";
import type { Clock } from "../clock";
import type { Governance, Ticket, createPlanner } from "../governance";
import { budgetPrefixesOf, counterKeys, scopes } from "../governance/keys";
import { modelNames } from "../governance/per-model";
import type { BudgetDefaults, Plan, ScopeName, SpendTargets } from "../governance/policy";
import type { Regenerated } from "../spend/reset";

/** What an admin change needs to know of a request in flight (inference's context). */
export interface InFlight {
  caller: Caller;
  customer: CustomerRecord | null;
  model: string;
  requested: string;
  ticket: Ticket;
  reserved: number;
  closed: boolean;
  runtime: { budgetDefaults(): BudgetDefaults };
}

interface Deps {
  /** The requests in flight (some slots may be empty). */
  owners: () => Iterable<unknown>;
  governance: Governance;
  auth: Auth;
  clock: Clock;
  planFor: ReturnType<typeof createPlanner>;
}

const prefixOf = counterKeys.budgetPrefix;
/**
 * How long the spend of a request that ended waits for the plan an admin change made it need (see
 * `takeUp`): past the wait for this instance's unwritten spend that the records' read comes after.
 */
const PLAN_WAIT_MS = 3000;

/**
 * The per-model budgets a request would spend on, were one set now where its plan holds none: under
 * each name of its model (as asked, its group, without a `provider/`), its key's, its key's user's,
 * its team's (unless its key's own takes its place) and its customer's. Which of them a plan made now
 * holds is for that plan to say (see `takeUp`).
 */
function perModelPrefixesOf(ctx: InFlight): string[] {
  const { checks, targets: t } = ctx.ticket.plan;
  const budgeted = (scope: ScopeName) => checks.some((check) => check.kind === "budget" && check.scope === scope);
  const [key, user, team, customer] = [budgeted("key+model"), budgeted("user+model"), budgeted("team+model"), budgeted("end user+model")];
  const prefixes: string[] = [];
  for (const name of modelNames(ctx.requested, ctx.model)) {
    if (t.token && !key) prefixes.push(prefixOf(scopes.keyModel(t.token, name)));
    if (t.keyUser && !user) prefixes.push(prefixOf(scopes.userModel(t.keyUser, name)));
    if (t.team && !key && !team) prefixes.push(prefixOf(scopes.teamModel(t.team.id, name)));
    if (t.customer && !customer) prefixes.push(prefixOf(scopes.customerModel(t.customer.id, name)));
  }
  return prefixes;
}

/**
 * A request's own budget prefixes that an admin change started again: `prefixes` name one scope's, or
 * every customer's or user's (a default budget made or changed), or every model's of a key, user,
 * team or customer (a per-model budget set).
 */
const restartedOf = (ctx: InFlight, prefixes: readonly string[]) =>
  [...new Set([...budgetPrefixesOf(ctx.ticket.plan.targets), ...perModelPrefixesOf(ctx)])].filter((own) => prefixes.some((prefix) => own.startsWith(prefix)));

/** The per-model fields of spend targets, and the budget counter prefix of each. */
const PER_MODEL_TARGETS: ReadonlyArray<["keyModel" | "userModel" | "teamModel" | "customerModel", (t: SpendTargets) => string | null]> = [
  ["keyModel", (t) => t.token && t.keyModel ? prefixOf(scopes.keyModel(t.token, t.keyModel.model)) : null],
  ["userModel", (t) => t.userModel ? prefixOf(scopes.userModel(t.userModel.id, t.userModel.model)) : null],
  ["teamModel", (t) => t.teamModel ? prefixOf(scopes.teamModel(t.teamModel.id, t.teamModel.model)) : null],
  ["customerModel", (t) => t.customer && t.customerModel ? prefixOf(scopes.customerModel(t.customer.id, t.customerModel.model)) : null],
];

/** The per-model budgets among `restarted` that a request in flight would spend on and its plan holds none of. */
function lateModelPrefixes(ctx: InFlight, restarted: readonly string[]): string[] {
  const perModel = new Set(perModelPrefixesOf(ctx));
  return restarted.filter((prefix) => perModel.has(prefix));
}

/**
 * A request in flight with a per-model budget an admin set where its plan held none (among
 * `restarted`), as a plan made now (`fresh`) has them: its spend is recorded where that plan's would
 * be, and its late holds on budgets that plan does not spend on (another name's came first) are given back.
 */
function followPlan(ctx: InFlight, fresh: Plan, restarted: readonly string[]): void {
  const late = lateModelPrefixes(ctx, restarted);
  if (late.length === 0) return;
  const targets: Partial<SpendTargets> = {};
  for (const [field, prefix] of PER_MODEL_TARGETS) {
    const at = prefix(fresh.targets);
    if (at !== null && late.includes(at)) Object.assign(targets, { [field]: fresh.targets[field] });
  }
  const spentOn = (prefix: string) => fresh.checks.some((check) => check.kind === "budget" && check.key.startsWith(prefix));
  ctx.ticket.lateModelBudgets(targets, late.filter((prefix) => !spentOn(prefix)));
}

/** The counters of a regenerated key that pass to its new token (see `carryOver`). */
const renamedPrefixes = (token: string) =>
  [counterKeys.budgetPrefix(scopes.key(token)), counterKeys.budgetPrefix(scopes.keyModels(token)), counterKeys.parallel(scopes.key(token))];

/** What admin changes do to the requests in flight on this instance. */
export function inFlightChanges({ owners, governance, auth, clock, planFor }: Deps) {
  const inFlight = function* () {
    for (const owner of owners()) {
      const ctx = owner as InFlight | null;
      if (ctx && !ctx.closed) yield ctx;
    }
  };

  /** A plan made now for a request in flight, from its records read again; its `wanted` counters made. */
  async function planAgain(ctx: InFlight, now: string | null, wanted: readonly string[]): Promise<Plan | null> {
    try {
      const principal = now === null ? null : await auth.principal(now);
      if (now !== null && !principal) return null; // deleted meanwhile: nothing to count on
      const caller: Caller = ctx.caller.kind === "key" ? { ...ctx.caller, principal: principal! } : ctx.caller;
      // Read (made, if gone) only when its own counters are wanted: a customer deleted meanwhile stays deleted.
      const id = ctx.customer?.user_id;
      const customerWanted = id !== undefined
        && wanted.some((prefix) => prefix === prefixOf(scopes.customer(id)) || prefix.startsWith(prefixOf(scopes.customerModels(id))));
      const customer = customerWanted ? await auth.customer(id) : null;
      const plan = planFor({
        caller, customer, model: ctx.model, requested: ctx.requested, estimatedCost: 0, estimatedTokens: 0, now: clock.now(), defaults: ctx.runtime.budgetDefaults(),
      });
      governance.counters.adopt(plan.checks.filter((check) => wanted.some((prefix) => check.key.startsWith(prefix))));
      return plan;
    } catch {
      // The database unreachable: the next request there makes the counter, as before.
      return null;
    }
  }

  return {
    /**
     * Budgets an admin set where there were none (`prefixes`: budget counter prefixes of scopes an
     * admin change started again): a request in flight of such a scope reserved nothing there, so it
     * holds its reservation on the next counter made there from now on, and settles on it. A burst sent
     * at that moment cannot spend past the new budget by what was in flight.
     */
    holdInFlight(prefixes: readonly string[]): void {
      if (prefixes.length === 0) return;
      for (const ctx of inFlight()) {
        for (const prefix of restartedOf(ctx, prefixes)) {
          if (!ctx.ticket.holds(prefix)) ctx.ticket.holdLate(governance.counters.holdLate(prefix, ctx.reserved));
        }
      }
    },

    /**
     * Counters an admin change made go or set anew (`prefixes`, or a regenerated key's) while requests
     * were in flight here: the requests' reservations wait for the next counter this instance makes
     * there, which its next request on them would make. Made now instead, from the records read again:
     * with Redis, the shared counter (which another instance may have made from the stored spend,
     * without them) counts them from now on, and their cost when they settle; none may come here
     * before they end.
     */
    async takeUp(prefixes: readonly string[], regenerated?: Regenerated): Promise<void> {
      if (prefixes.length === 0 && !regenerated) return;
      // One plan for the requests in flight of the same key, customer, model and name asked for, its counters made once.
      const planned = new Map<string, Promise<Plan | null>>();
      // All asked for at once, before any answer: a request with a per-model budget set where it had none
      // that ends before its plan comes is recorded once it has (see `Ticket.awaitPlan`), where it says.
      const asked: { ctx: InFlight; plan: Promise<Plan | null>; restarted: string[]; follows: boolean }[] = [];
      for (const ctx of inFlight()) {
        const token = ctx.caller.kind === "key" ? ctx.caller.principal.key.token : null;
        const renamed = regenerated !== undefined && token === regenerated.from;
        const restarted = restartedOf(ctx, prefixes);
        const wanted = renamed ? [...restarted, ...renamedPrefixes(regenerated.to)] : restarted;
        if (wanted.length === 0) continue;
        const now = renamed ? regenerated.to : token;
        const which = `${now ?? ""}\n${ctx.customer?.user_id ?? ""}\n${ctx.model}\n${ctx.requested}`;
        let plan = planned.get(which);
        if (!plan) planned.set(which, (plan = planAgain(ctx, now, wanted)));
        const follows = !renamed && lateModelPrefixes(ctx, restarted).length > 0;
        if (follows) ctx.ticket.awaitPlan();
        asked.push({ ctx, plan, restarted, follows });
      }
      // A database that does not answer holds no spend back for long: then it goes where it was planned.
      const gaveUp = asked.some(({ follows }) => follows) ? Bun.sleep(PLAN_WAIT_MS).then(() => null) : null;
      for (const { ctx, plan, restarted, follows } of asked) {
        try {
          const fresh = await (gaveUp ? Promise.race([plan, gaveUp]) : plan);
          if (fresh && follows) followPlan(ctx, fresh, restarted);
        } finally {
          if (follows) ctx.ticket.planned();
        }
      }
    },
  };
}
