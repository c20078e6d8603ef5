import { counterKeys, scopes } from "./keys";
import { RATE_WINDOW_MS } from "./periods";
import { Successions } from "./succession";

/**
 * Counters behind every budget and rate limit. A counter is a number with a limit: budget spend,
 * requests or tokens in a rate window, requests in flight. Admission adds a reservation to every
 * counter a request touches, all or nothing, while each counter's value plus reservations is below its
 * limit; settling turns the reservation into the actual amount.
 *
 * | use      | reserve            | actual        | period         |
 * | budget   | estimated cost     | real cost     | budget period  |
 * | rpm      | 1                  | 1             | 60 s window    |
 * | tpm      | 0                  | tokens        | 60 s window    |
 * | parallel | 1                  | 0             | none           |
 */

export interface CounterCheck {
  /** Counter identity, including its period (see `counterKeys`). */
  key: string;
  limit: number;
  reserve: number;
  /** Value when this instance first sees the counter (the stored spend for budgets). */
  initial: number;
  /** When the counter's period ends (ms), or Infinity. */
  expiresAt: number;
  /** The counter state admission reserved on: the request settles there, or where an admin change moved it (see `Successions`). */
  on?: unknown;
  /** Requests refused on it wait for room in a queue (a deployment's slots): shared, the longest waiting gets it (see `Counters.waiting`). */
  queued?: boolean;
}

/** The spend writer's progress: requests recorded, and how many of the first of them are in the database. */
export interface WriteProgress {
  recorded(): number;
  writtenThrough(): number;
}

export interface Counters {
  /** Reserves on every check, or on none: the index of the first check at or over its limit, else -1. */
  admit(checks: readonly CounterCheck[]): number | Promise<number>;
  /** Turns a reservation into the actual amount. */
  settle(check: CounterCheck, actual: number): void;
  /** Drops a reservation (the request failed before it cost anything). */
  release(check: CounterCheck): void;
  /**
   * A request in flight that reserved nothing on a budget set since where there was none (`prefix`:
   * that scope's budget counters): it holds `reserve` on the next counter made there and settles on it
   * with the check returned (see `Successions.holdLate`).
   */
  holdLate(prefix: string, reserve: number): CounterCheck;
  /**
   * Makes the counters of `checks` that are not there yet, reserving nothing: a counter an admin change
   * made go takes over the reservations of the requests in flight at once (see `Successions`), rather
   * than at this instance's next request there, which may never come.
   */
  adopt(checks: readonly CounterCheck[]): void;
  /** Current value plus reservations, as this instance knows it (for headers and messages; admission may count more). */
  used(check: CounterCheck): number;
  /**
   * The value the last refusal of this counter was decided on (the shared one, for counters shared
   * between instances), or null when it is not known: what a 429 says was used.
   */
  decidedOn(check: CounterCheck): number | null;
  /** The settled value alone, as this instance knows it: a budget's spend. */
  spent(check: CounterCheck): number;
  /** What admission counts on top of it: reservations of requests in flight (and, shared, other instances' room). */
  held(check: CounterCheck): number;
  /** Whether the counter is in memory here (`spent` and `used` of one that is not give its initial value). */
  holds(check: CounterCheck): boolean;
  /** Counters shared between instances: the value of one not held here is in Redis, not known without asking it. */
  readonly shared: boolean;
  /** Shared: whether a request waiting on another instance for room on the counter came before those waiting here. */
  contested?(check: CounterCheck): boolean;
  /**
   * Shared: how long the requests waiting here for room on the counter have waited (ms, oldest first, as
   * many as the limit at most; none: empty). Room goes to the requests that have waited longest on any instance.
   */
  waiting?(check: CounterCheck, waited: readonly number[]): void;
  /** Shared: `listener` hears of each counter (by key) on which another instance gave back room this one asked for. */
  onFreed?(listener: (key: string) => void): void;
  /**
   * Forgets counters whose key starts with `prefix` (after an admin changed a stored spend or a
   * period), shared ones too. Requests in flight on a budget or parallel counter keep their
   * reservation on the next one made under its name, and settle there (see `Successions`);
   * `renamedTo`: under this prefix instead (a regenerated key's new token). `ended`: their row was
   * deleted, and its requests in flight settle on none (the next counters are a new row's).
   */
  forget(prefix: string, renamedTo?: string, ended?: boolean): void;
  /** Forgets this instance's own state of them: another instance forgot the shared ones. */
  drop(prefix: string, renamedTo?: string, ended?: boolean): void;
  /** Tells the counters how far the spend recorded is in the database (see `Successions`). */
  trackWrites(progress: WriteProgress): void;
  /** Counters held in memory: idle ones and those of ended periods are dropped. */
  readonly size: number;
  /** Stops timers; flushes what must be flushed. */
  close(): Promise<void>;
}

interface State {
  value: number;
  reserved: number;
  expiresAt: number;
  touchedAt: number;
}

/**
 * How long a counter nobody touches stays in memory. A budget counter made again later starts from the
 * stored spend of the record it is planned from, so records this old are read again first (see auth).
 */
export const COUNTER_IDLE_MS = 600_000;

const GATEWAY_BUDGET = counterKeys.budgetPrefix(scopes.gateway());

/**
 * A sum of reservations less one of them. Floating point leaves crumbs of a sum emptied (8.7e-19 of
 * 0.1 + 0.2 - 0.1 - 0.2): they would show as reservations held and keep the counter from being swept.
 */
export function lessHeld(total: number, part: number): number {
  const left = total - part;
  return left > part * 1e-9 ? left : 0;
}

/** The `n` entries with the highest counts. */
function highest(entries: Array<[string, number]>, n: number): Array<[string, number]> {
  return entries.length <= n ? entries : entries.sort((a, b) => b[1] - a[1]).slice(0, n);
}

/** Exact counters for a single instance: everything lives in this process. */
export class LocalCounters implements Counters {
  private readonly states = new Map<string, State>();
  private readonly successions = new Successions<State>();
  private readonly sweeper: Timer;

  /**
   * `holdBudgets`: while it answers true (spend cannot be written), idle budget counters stay: the
   * stored spend they would be made again from lacks what is waiting.
   */
  constructor(
    private readonly now: () => number,
    private readonly idleMs = COUNTER_IDLE_MS,
    private readonly holdBudgets: () => boolean = () => false,
  ) {
    this.sweeper = setInterval(() => this.sweep(), 10_000);
    this.sweeper.unref?.();
  }

  private state(check: CounterCheck): State {
    let state = this.states.get(check.key);
    if (!state) {
      state = { value: check.initial, reserved: 0, expiresAt: check.expiresAt, touchedAt: this.now() };
      const carried = this.successions.inherit(check.key, state);
      if (carried) {
        state.reserved = carried.held;
        state.value += carried.unwritten;
      }
      this.states.set(check.key, state);
    }
    return state;
  }

  adopt(checks: readonly CounterCheck[]): void {
    for (const check of checks) this.state(check);
  }

  admit(checks: readonly CounterCheck[]): number {
    const now = this.now();
    for (let i = 0; i < checks.length; i++) {
      const check = checks[i]!;
      const state = this.state(check);
      if (state.value + state.reserved >= check.limit) return i;
    }
    for (const check of checks) {
      const state = this.states.get(check.key)!;
      state.reserved += check.reserve;
      state.touchedAt = now;
      check.on = state;
    }
    return -1;
  }

  settle(check: CounterCheck, actual: number): void {
    const state = this.successions.endingOn(this.states, check, actual, (c) => this.state(c));
    if (!state) return;
    state.reserved = lessHeld(state.reserved, check.reserve);
    state.value += actual;
    state.touchedAt = this.now();
  }

  release(check: CounterCheck): void {
    const state = this.successions.endingOn(this.states, check, 0, null);
    if (state) state.reserved = lessHeld(state.reserved, check.reserve);
  }

  holdLate(prefix: string, reserve: number): CounterCheck {
    return this.successions.holdLate(prefix, reserve, this.now());
  }

  used(check: CounterCheck): number {
    const state = this.states.get(check.key);
    return state ? state.value + state.reserved : check.initial;
  }

  /** Exact here: everything admitted lives in this process. */
  decidedOn(check: CounterCheck): number | null {
    return this.used(check);
  }

  spent(check: CounterCheck): number {
    return this.states.get(check.key)?.value ?? check.initial;
  }

  held(check: CounterCheck): number {
    return this.states.get(check.key)?.reserved ?? 0;
  }

  holds(check: CounterCheck): boolean {
    return this.states.has(check.key);
  }

  readonly shared = false;

  forget(prefix: string, renamedTo?: string, ended = false): void {
    this.successions.retireUnder(this.states, prefix, renamedTo, this.now(), (state) => state.reserved, ended, (key, state) => this.moveWindow(key, state));
  }

  /** A renamed rate window: under `key`, with what it counted and holds (added to a window already there). */
  private moveWindow(key: string, state: State): State {
    const there = this.states.get(key);
    if (!there) {
      const moved = { ...state };
      this.states.set(key, moved);
      return moved;
    }
    there.value += state.value;
    there.reserved += state.reserved;
    return there;
  }

  drop(prefix: string, renamedTo?: string, ended = false): void {
    this.forget(prefix, renamedTo, ended);
  }

  trackWrites(progress: WriteProgress): void {
    this.successions.writes = progress;
  }

  /**
   * Ended periods and idle counters go; a counter with requests in flight stays, and so does the
   * gateway-wide budget until its period ends (one counter, and its stored spend is only read again
   * by the budget scheduler's pass), and every idle budget while spend cannot be written.
   */
  sweep(): void {
    const now = this.now();
    this.successions.sweep(now, this.idleMs);
    const holdBudgets = this.holdBudgets();
    for (const [key, state] of this.states) {
      if (state.reserved > 0) continue;
      if (state.expiresAt <= now) {
        this.states.delete(key);
        continue;
      }
      if (now - state.touchedAt <= this.idleMs) continue;
      if (counterKeys.isBudget(key) && (holdBudgets || key.startsWith(GATEWAY_BUDGET))) continue;
      this.states.delete(key);
    }
  }

  /**
   * The rate windows (rpm, tpm) still running that counted something, as [key, count], for the next
   * start to count on from (see rate-windows.ts): of each kind, at most `perKind`, the highest counts,
   * whose loss would let the most through again. What requests still in flight hold counts.
   */
  windows(perKind: number): Array<[string, number]> {
    const now = this.now();
    const requests: Array<[string, number]> = [];
    const tokens: Array<[string, number]> = [];
    for (const [key, state] of this.states) {
      const count = state.value + state.reserved;
      if (state.expiresAt <= now || count <= 0 || !counterKeys.isWindow(key)) continue;
      (key.startsWith("r:") ? requests : tokens).push([key, count]);
    }
    return [...highest(requests, perKind), ...highest(tokens, perKind)];
  }

  /**
   * Counts on from rate windows saved at a stop: those running now (a window that ended, or one the
   * clock has not reached, counts nothing). Made before any request, so no counter is there yet.
   */
  seed(windows: Iterable<readonly [string, number]>): void {
    const now = this.now();
    for (const [key, count] of windows) {
      const start = counterKeys.windowStart(key);
      if (start === null || start > now || start + RATE_WINDOW_MS <= now || !(Number.isFinite(count) && count > 0) || this.states.has(key)) continue;
      this.states.set(key, { value: count, reserved: 0, expiresAt: start + RATE_WINDOW_MS, touchedAt: now });
    }
  }

  get size(): number {
    return this.states.size;
  }

  async close(): Promise<void> {
    clearInterval(this.sweeper);
  }
}
