import type { Auth } from "../auth";
import type { Caller, CustomerRecord } from "../auth/principal";
import type { Clock } from "../clock";
import type { Governance, Ticket, createPlanner } from "../governance";
import { budgetPrefixesOf, counterKeys, scopes } from "../governance/keys";
import type { BudgetDefaults } from "../governance/policy";
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

/**
 * A request's own budget prefixes that an admin change started again: `prefixes` name one scope's, or
 * every customer's or user's (a default budget made or changed), or every model's of a key.
 */
const restartedOf = (ctx: InFlight, prefixes: readonly string[]) =>
  budgetPrefixesOf(ctx.ticket.plan.targets).filter((own) => prefixes.some((prefix) => own.startsWith(prefix)));

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
      const done = new Set<string>();
      for (const ctx of inFlight()) {
        const token = ctx.caller.kind === "key" ? ctx.caller.principal.key.token : null;
        const renamed = regenerated !== undefined && token === regenerated.from;
        const wanted = restartedOf(ctx, prefixes);
        if (renamed) wanted.push(...renamedPrefixes(regenerated.to));
        const now = renamed ? regenerated.to : token;
        const which = `${now ?? ""}\n${ctx.customer?.user_id ?? ""}\n${ctx.model}`;
        if (wanted.length === 0 || done.has(which)) continue;
        done.add(which);
        try {
          const principal = now === null ? null : await auth.principal(now);
          if (now !== null && !principal) continue; // deleted meanwhile: nothing to count on
          const caller: Caller = ctx.caller.kind === "key" ? { ...ctx.caller, principal: principal! } : ctx.caller;
          // Read (made, if gone) only when its own counters are wanted: a customer deleted meanwhile stays deleted.
          const customerWanted = ctx.customer !== null && wanted.includes(counterKeys.budgetPrefix(scopes.customer(ctx.customer.user_id)));
          const customer = customerWanted ? await auth.customer(ctx.customer!.user_id) : null;
          const plan = planFor({
            caller, customer, model: ctx.model, requested: ctx.requested, estimatedCost: 0, estimatedTokens: 0, now: clock.now(), defaults: ctx.runtime.budgetDefaults(),
          });
          governance.counters.adopt(plan.checks.filter((check) => wanted.some((prefix) => check.key.startsWith(prefix))));
        } catch {
          // The database unreachable: the next request there makes the counter, as before.
        }
      }
    },
  };
}
