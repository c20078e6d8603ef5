import type { State } from "./lease";

/** Every counter is looked at at least this often (ms), used or not. */
export const SWEEP_MS = 500;

/**
 * Slices of all counters, one per tick, so idle and due ones are found without a full pass: each
 * slice is sized by the time since the last one, as ticks are skipped while a sync is under way.
 */
export class Sweep {
  private cursor: Iterator<State> | null = null;
  private at = 0;

  constructor(private readonly states: ReadonlyMap<string, State>) {}

  /** Adds the next slice to `into`. */
  addSlice(into: Set<State>, now: number): void {
    let n = Math.max(1, Math.ceil((this.states.size * Math.min(SWEEP_MS, now - this.at)) / SWEEP_MS));
    this.at = now;
    while (n-- > 0) {
      this.cursor ??= this.states.values();
      const next = this.cursor.next();
      if (next.done) {
        this.cursor = null;
        return;
      }
      into.add(next.value);
    }
  }
}
