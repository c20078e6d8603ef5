import type { CounterCheck } from "../governance/counters";
import { nextWindowCheck } from "../governance/keys";
import { IDLE_MS, type State, carryTraffic, consumed, syncNeed, tight } from "./lease";

/** A busy rate counter takes its lease in the next window during the last this-many ms of this one. */
const NEXT_WINDOW_LEAD_MS = 2000;
/** Counters one tick syncs at most: about 5 ms of work. */
const MAX_SYNCS_PER_TICK = 600;

/**
 * The counters a tick syncs, among `candidates`: those asking for room first; pushes, slack and next
 * windows (made with `make`) after them, and at most MAX_SYNCS_PER_TICK unless closing. `later` are
 * for the next tick: busy ones, the rest of a crowd, and spare room near a limit until it goes back.
 * Counters of ended windows, and idle ones holding nothing, are forgotten.
 */
export function chooseSyncs(
  states: Map<string, State>, candidates: Iterable<State>, now: number, closing: boolean, make: (check: CounterCheck) => State, pushAfterMs?: number,
): { chosen: State[]; later: State[] } {
  const urgent: State[] = [];
  const batch: State[] = [];
  const later: State[] = [];
  const upcoming: [State, CounterCheck][] = [];
  for (const s of candidates) {
    const key = s.check.key;
    if (s.busy) {
      later.push(s);
      continue;
    }
    // One with requests waiting here (or whose last word in Redis was that some were) is not idle: Redis must hear when none are.
    const idle = now - s.touchedAt > IDLE_MS && s.inflight === 0 && s.unsynced === 0 && s.waits.length === 0 && !s.waitsInRedis;
    if (!idle && s.check.expiresAt - now < NEXT_WINDOW_LEAD_MS && s.check.expiresAt > now) {
      const next = nextWindowCheck(s.check);
      if (next && !states.has(next.key)) upcoming.push([s, next]);
    }
    if ((s.check.expiresAt <= now && s.inflight === 0) || (idle && s.lease === 0)) {
      states.delete(key);
      continue;
    }
    const need = syncNeed(s, now, idle, closing, pushAfterMs);
    if (need === "urgent") urgent.push(s);
    else if (need === "due") batch.push(s);
    // Spare room near a limit is looked at every tick until it goes back (see `spareWanted`).
    else if (s.inflight === 0 && s.lease > consumed(s) && tight(s)) later.push(s);
  }
  for (const [current, next] of upcoming) batch.push(carryTraffic(make(next), current));
  const chosen = urgent.length > 0 ? urgent.concat(batch) : batch;
  // A tick's work stays bounded (a window turning over ten thousand keys, Redis coming back).
  if (!closing && chosen.length > MAX_SYNCS_PER_TICK) later.push(...chosen.splice(MAX_SYNCS_PER_TICK));
  return { chosen, later };
}
