import { counterKeys } from "./keys";
import { type CounterCheck, type WriteProgress, lessHeld } from "./counters";

/**
 * Counters an admin change made go while requests were in flight on them: a budget's (a new period, a
 * spend set, a budget set again) or, for a regenerated key, its budgets' and its parallel slots'.
 * Made again from the stored spend alone, the next budget counter would not count them (their cost
 * lands in the database only after they end), so the budget could be spent again by as much as was
 * in flight; a regenerated key would have twice its slots. Instead their reservations pass to the
 * counter made next under the same name (the key less its period, under the new token for a
 * regenerated key), and each request settles there: it keeps the counter it reserved on (the check's
 * `on`), and a counter that went leads to the one that took its reservations, through any number of
 * changes. A request that ends before a successor is made leaves its cost with the reservations
 * waiting: the successor, made from the stored spend, adds what the spend writer had not written yet.
 * A regenerated key's rate windows have no stored count to be made again from: each goes on under the
 * new token at once, with what it counted (see `retireUnder`).
 */
interface Carried<S> {
  /** Reservations of requests in flight on the counters that went, until a successor takes them. */
  held: number;
  successor: S | null;
  /** Joined to another waiting under the same name (a key regenerated twice before any request). */
  into: Carried<S> | null;
  /** Costs of requests that ended with no successor yet, with their spend's number at the writer (the stored spend has them once written). */
  ended: { cost: number; seq: number }[];
  at: number;
}

/** Whether a counter's requests in flight wait for its successor: budgets and parallel slots (a renamed rate window has its successor at once, see `retireUnder`). */
const carries = (key: string) => counterKeys.isBudget(key) || counterKeys.isParallel(key);

/** A counter's name: a budget's key without the period, which changes with a new duration; a parallel counter's key. */
const nameOf = (key: string) => (counterKeys.isBudget(key) ? key.slice(0, key.lastIndexOf(":") + 1) : key);

export class Successions<S extends object> {
  /** By name: reservations waiting for the next counter made under it. */
  private readonly waiting = new Map<string, Carried<S>>();
  private readonly retired = new WeakMap<S, Carried<S>>();
  /** The spend writer's progress (see `Counters.trackWrites`); without one, all spend counts as written. */
  writes: WriteProgress = { recorded: () => 0, writtenThrough: () => Infinity };

  /**
   * Every counter of `states` under `prefix` goes (`renamedTo`: its successor comes under this prefix
   * instead), each with what `held` says its requests in flight reserved. Returns those that went.
   * `ended`: their row was deleted; what its requests in flight held goes with it, and they end on no
   * counter (those made next under the same names belong to a row made again under its id).
   * `moveWindow`: a renamed rate window (rpm, tpm) goes on under the new name at once, with what it
   * counted and holds (a regenerated key at its rpm_limit stays there): it makes or adds to the
   * counter under `key` and returns it; its requests in flight settle there.
   */
  retireUnder(states: Map<string, S>, prefix: string, renamedTo: string | undefined, now: number, held: (state: S) => number, ended = false,
    moveWindow?: (key: string, state: S) => S): S[] {
    if (renamedTo !== undefined) this.rename(prefix, renamedTo);
    if (ended) for (const name of this.waiting.keys()) if (name.startsWith(prefix)) this.waiting.delete(name);
    const gone: S[] = [];
    for (const [key, state] of states) {
      if (!key.startsWith(prefix)) continue;
      states.delete(key);
      gone.push(state);
      const next = renamedTo === undefined ? key : renamedTo + key.slice(prefix.length);
      if (ended) this.retired.set(state, { held: 0, successor: null, into: null, ended: [], at: now });
      else if (moveWindow && renamedTo !== undefined && counterKeys.isWindow(key)) this.retired.set(state, { held: 0, successor: moveWindow(next, state), into: null, ended: [], at: now });
      else this.retire(next, state, held(state), now);
    }
    return gone;
  }

  /** A counter goes (`state`, its successor to be made under `key`) with `held` reserved by requests in flight. */
  private retire(key: string, state: S, held: number, now: number): void {
    if (!carries(key)) return;
    const name = nameOf(key);
    let carried = this.waiting.get(name);
    if (!carried) this.waiting.set(name, (carried = { held: 0, successor: null, into: null, ended: [], at: now }));
    carried.held += held;
    carried.at = now;
    this.retired.set(state, carried);
  }

  /**
   * A request in flight that reserved nothing on a budget an admin has just set where there was none:
   * its `reserve` waits for the next counter made under `prefix` (one scope's budget counters), as a
   * retired counter's reservations do, and the check returned settles it there.
   */
  holdLate(prefix: string, reserve: number, now: number): CounterCheck {
    const key = `${prefix}in-flight`;
    const reserved = {} as S;
    this.retire(key, reserved, reserve, now);
    return { key, limit: Infinity, reserve, initial: 0, expiresAt: Infinity, on: reserved };
  }

  /** What waits under names starting with `from` waits under `to` instead (a regenerated key's new token). */
  private rename(from: string, to: string): void {
    for (const [name, carried] of [...this.waiting]) {
      if (!name.startsWith(from)) continue;
      this.waiting.delete(name);
      const renamed = to + name.slice(from.length);
      const there = this.waiting.get(renamed);
      if (there) {
        there.held += carried.held;
        there.ended.push(...carried.ended);
        carried.into = there;
      } else {
        this.waiting.set(renamed, carried);
      }
    }
  }

  /**
   * A counter made under a name whose counter went: the reservations it takes over, and the cost of
   * requests that ended meanwhile which its stored spend, read now, cannot have yet.
   */
  inherit(key: string, successor: S): { held: number; unwritten: number } | null {
    if (this.waiting.size === 0 || !carries(key)) return null;
    const name = nameOf(key);
    const carried = this.waiting.get(name);
    if (!carried) return null;
    this.waiting.delete(name);
    carried.successor = successor;
    const through = this.writes.writtenThrough();
    const unwritten = carried.ended.reduce((sum, e) => (e.seq > through ? sum + e.cost : sum), 0);
    return { held: carried.held, unwritten };
  }

  /**
   * The counter a request ends on (settles `actual`, or is released from with 0): the one it reserved
   * on; for one an admin change made go, the one holding its reservation now, or null when none was
   * made yet (its reservation is let go here, its cost kept for the successor, see `inherit`).
   * Without a counter of its own (swept, or never admitted), the one under its key: a budget counter
   * is not made again from the plan made before a change (that would bring the old spend back);
   * others are, with `make` (a tpm window's tokens still count).
   */
  endingOn(states: ReadonlyMap<string, S>, check: CounterCheck, actual: number, make: ((check: CounterCheck) => S) | null): S | null {
    const current = states.get(check.key);
    const own = check.on as S | undefined;
    let carried = own === undefined || own === current ? undefined : this.retired.get(own);
    if (!carried) return current ?? (make && !counterKeys.isBudget(check.key) ? make(check) : null);
    for (;;) {
      while (carried.into) carried = carried.into;
      if (!carried.successor) {
        carried.held = lessHeld(carried.held, check.reserve);
        // Its spend is recorded right after: the next one the writer numbers.
        if (actual > 0 && counterKeys.isBudget(check.key)) carried.ended.push({ cost: actual, seq: this.writes.recorded() + 1 });
        return null;
      }
      const next = this.retired.get(carried.successor);
      if (!next) return carried.successor;
      carried = next;
    }
  }

  /** Reservations no successor took for this long (requests in flight that long are rare) wait no more. */
  sweep(now: number, idleMs: number): void {
    for (const [name, carried] of this.waiting) if (now - carried.at > idleMs) this.waiting.delete(name);
  }
}
