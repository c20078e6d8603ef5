import { counterKeys } from "./keys";
import { type CounterCheck, lessHeld } from "./counters";

/**
 * A counter an admin change made go while requests were in flight on it: a budget's (a new period, a
 * spend set, a budget set again) or, for a regenerated key, its budgets' and its parallel slots'.
 * Made again from the stored spend alone, the next budget counter would not count them (their cost
 * lands in the database only after they end), so the budget could be spent again by as much as was
 * in flight; a regenerated key would have twice its slots. Instead their reservations pass to the
 * counter made next under the same name (the key less its period, under the new token for a
 * regenerated key), and each of them settles there.
 */
interface Carried<S> {
  /** Reservations of the forgotten counters' requests still in flight, until a successor holds them. */
  held: number;
  successor: S | null;
  at: number;
}

/** Whether a counter's requests in flight pass to its successor: budgets and parallel slots (rate windows start afresh). */
const carries = (key: string) => counterKeys.isBudget(key) || counterKeys.isParallel(key);

/** A counter's name: a budget's key without the period, which changes with a new duration; a parallel counter's key. */
const nameOf = (key: string) => (counterKeys.isBudget(key) ? key.slice(0, key.lastIndexOf(":") + 1) : key);

export class Successions<S> {
  private readonly carried = new Map<string, Carried<S>>();
  /** Names of a regenerated key's counters, to those of its new token. */
  private readonly renamed = new Map<string, string>();

  private nameFor(key: string): string {
    const name = nameOf(key);
    return this.renamed.get(name) ?? name;
  }

  /**
   * A counter goes with `held` reserved by requests in flight. `renamed`: its successor's name has
   * the second prefix where this one has the first (a regenerated key's new token).
   */
  retire(key: string, held: number, now: number, renamed?: readonly [string, string]): void {
    if (!carries(key)) return;
    const old = nameOf(key);
    const name = renamed && old.startsWith(renamed[0]) ? renamed[1] + old.slice(renamed[0].length) : old;
    if (name !== old) this.renamed.set(old, name);
    const was = this.carried.get(name);
    if (was && !was.successor) {
      was.held += held;
      was.at = now;
    } else if (held > 0) {
      this.carried.set(name, { held, successor: null, at: now });
    }
  }

  /** A counter made under a name whose counter went: the reservations it takes over. */
  inherit(key: string, successor: S): number {
    if (this.carried.size === 0 || !carries(key)) return 0;
    const carried = this.carried.get(nameOf(key));
    if (!carried || carried.successor) return 0;
    carried.successor = successor;
    const held = carried.held;
    carried.held = 0;
    return held;
  }

  /**
   * The counter a request ends on (settles, or is released from): its own; for one an admin change
   * made go, the one holding its reservation now, or null when none was made yet (its reservation is
   * let go here; its cost reaches the stored spend the next counter is made from). A budget counter
   * that went with nothing carried is not made again from the plan made before the change (that would
   * bring the old spend back); others are, with `make` (a tpm window's tokens still count).
   */
  endingOn(states: ReadonlyMap<string, S>, check: CounterCheck, make: ((check: CounterCheck) => S) | null): S | null {
    const own = states.get(check.key);
    if (own) return own;
    if (this.carried.size > 0 && carries(check.key) && this.carried.has(this.nameFor(check.key))) return this.settled(check.key, check.reserve);
    return make && !counterKeys.isBudget(check.key) ? make(check) : null;
  }

  private settled(key: string, reserve: number): S | null {
    const name = this.nameFor(key);
    const carried = this.carried.get(name);
    if (!carried) return null;
    if (carried.successor) return carried.successor;
    carried.held = lessHeld(carried.held, reserve);
    if (carried.held === 0) this.carried.delete(name);
    return null;
  }

  /** Successions no request can reach any more: taken over long ago. */
  sweep(now: number, idleMs: number): void {
    for (const [name, carried] of this.carried) if (carried.successor && now - carried.at > idleMs) this.carried.delete(name);
    for (const [old, name] of this.renamed) if (!this.carried.has(name)) this.renamed.delete(old);
  }
}
