import { counterKeys } from "./keys";
import { lessHeld } from "./counters";

/**
 * A budget counter an admin change made go (a new period, a spend set, a budget set again) while
 * requests were in flight on it. Made again from the stored spend alone, the next counter would not
 * count them: their cost lands in the database only after they end, so the budget could be spent
 * again by as much as was in flight. Instead their reservations pass to the counter made next under
 * the same name (the key less its period), and each of them settles there.
 */
interface Carried<S> {
  /** Reservations of the forgotten counters' requests still in flight, until a successor holds them. */
  held: number;
  successor: S | null;
  at: number;
}

/** A budget counter's name: its key without the period, which changes with a new duration. */
const nameOf = (key: string) => key.slice(0, key.lastIndexOf(":") + 1);

export class Successions<S> {
  private readonly carried = new Map<string, Carried<S>>();

  /** A budget counter goes with `held` reserved by requests in flight. */
  retire(key: string, held: number, now: number): void {
    if (!counterKeys.isBudget(key)) return;
    const name = nameOf(key);
    const was = this.carried.get(name);
    if (was && !was.successor) {
      was.held += held;
      was.at = now;
    } else if (held > 0) {
      this.carried.set(name, { held, successor: null, at: now });
    }
  }

  /** A budget counter made under a name whose counter went: the reservations it takes over. */
  inherit(key: string, successor: S): number {
    if (this.carried.size === 0 || !counterKeys.isBudget(key)) return 0;
    const carried = this.carried.get(nameOf(key));
    if (!carried || carried.successor) return 0;
    carried.successor = successor;
    const held = carried.held;
    carried.held = 0;
    return held;
  }

  /**
   * A request admitted on a counter that went has ended: the counter now holding its reservation, to
   * settle it there, or null when none was made yet (its reservation is let go here; its cost reaches
   * the stored spend the next counter is made from).
   */
  settled(key: string, reserve: number): S | null {
    if (this.carried.size === 0) return null;
    const name = nameOf(key);
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
  }
}
