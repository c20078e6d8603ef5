import type { CounterCheck } from "../governance/counters";
import { NO_WAITS, type State, fitsLease } from "./lease";

/**
 * The queue across instances for room on a counter whose refused requests wait for it (a deployment's
 * slots): each instance tells Redis how long its waiting requests have waited, and room goes to those that
 * have waited longest, whichever instance they are on (see sync.lua).
 */

/** Another instance that asked for room this long ago still wants it (it asks again every 25 ms while refused). */
export const CONTESTED_MS = 250;

/**
 * Whether a request may take room on this instance's lease without asking Redis: it fits there (a sync
 * in flight does not stop it: the lease it may change can only grow), and no other instance's request
 * waits in a queue for the room (a deployment's slots): that goes by Redis, to the longest waiting.
 */
export const fitsHere = (s: State, check: CounterCheck, now: number) =>
  fitsLease(s, check) && !(check.queued && (s.ahead > 0 || now - s.othersAskedAt < CONTESTED_MS));

/** The requests waiting here for room on the counter: how long each has waited (ms, oldest first; none: empty). */
export function waitingHere(s: State, waited: readonly number[], now: number): void {
  s.waits = waited.length === 0 ? NO_WAITS : waited.map((ms) => now - ms);
  s.waitsChanged = true;
}
