import type { CounterCheck } from "../governance/counters";
import type { RedisKeys } from "./keys";

/**
 * One shared counter as an instance sees it, and the arithmetic of its lease: how much room it holds,
 * whether a request fits in it, how much more to ask Redis for, and what a sync sends and gets back.
 * Pure functions of the state; the Redis round trips live in `SharedCounters`.
 */
export interface State {
  check: CounterCheck;
  lease: number;
  inflight: number;
  /** Settled amounts not yet pushed to Redis… */
  unsynced: number;
  /** …and those on their way (counted until Redis has them, or they go back to `unsynced`). */
  pushing: number;
  /**
   * Of the running total of amounts this state has pushed (see `pushTotal`), what a reply confirmed
   * Redis has; `series` numbers the state among those this process made (the total counts from it).
   */
  acked: number;
  series: number;
  /** Another instance was refused for room this one holds: spare room goes back, until it admits again. */
  reclaim: boolean;
  /** When this instance last asked the others for room they hold on the counter (see `SharedCounters.askBack`). */
  askedAt: number;
  /** When another instance last asked this one for room (it was refused), whether or not this one had any spare. */
  othersAskedAt: number;
  /** Admissions here waiting to ask Redis again (see `SharedCounters.pause`): woken when another instance frees room. */
  wakers: Set<() => void> | null;
  /**
   * The limit the last sync was sent under (its lease and view of the others are as of it), and the one
   * being sent: a lower limit since makes Redis decide again (see `fitsLease`).
   */
  syncedLimit: number;
  sendingLimit: number;
  /** Shared settled value and the other instances' leases, as of the last sync. */
  v: number;
  others: number;
  peers: number;
  synced: boolean;
  busy: Promise<unknown> | null;
  /** Reserved and settled since the last sync. */
  admittedSinceSync: number;
  /** This instance's recent traffic on the counter, per millisecond (smoothed over syncs): sizes leases. */
  rate: number;
  lastReserve: number;
  /** Typical settled amount of one request (tokens for tpm counters, which reserve nothing). */
  lastActual: number;
  touchedAt: number;
  syncedAt: number;
  /** Redis lost its data since the last sync: the next one brings the shared value back up to `floor`. */
  recover: boolean;
  /** The shared value this instance last saw before Redis lost its data. */
  floor: number;
  /** Redis's data generation the shared value was last read from (see heartbeat.ts); null before the first sync. */
  generation: string | null;
  /** The value the last refusal was decided on: the shared value, the other instances' leases and this one's use. */
  refusedOn?: number;
  /**
   * When the oldest requests waiting here for room on the counter began to wait, oldest first (up to as
   * many as the limit; see `SharedCounters.waiting`): Redis keeps every instance's, so that room goes to
   * the requests that have waited longest, whichever instance they are on.
   */
  waits: number[];
  /** `waits` changed since a sync last sent them; Redis may hold some of this instance's (a sync sent some). */
  waitsChanged: boolean;
  waitsInRedis: boolean;
  /** Requests waiting on other instances that came before this one's oldest (before the last sync, with none here), as of that sync. */
  ahead: number;
}

/** No request waiting. */
export const NO_WAITS: number[] = [];

/** States this process made: each numbers its own series of pushes. */
let made = 0;

/** A counter's state when an instance first uses it. */
export function newState(check: CounterCheck, now: number): State {
  return {
    check, lease: 0, inflight: 0, unsynced: 0, pushing: 0, acked: 0, series: ++made, reclaim: false, askedAt: 0, othersAskedAt: 0, wakers: null,
    syncedLimit: check.limit, sendingLimit: check.limit, v: check.initial, others: 0, peers: 0, synced: false, busy: null,
    admittedSinceSync: 0, rate: 0, lastReserve: check.reserve, lastActual: 0, touchedAt: now, syncedAt: 0, recover: false,
    floor: check.initial, generation: null, waits: NO_WAITS, waitsChanged: false, waitsInRedis: false, ahead: 0,
  };
}

/**
 * A renamed rate window (a regenerated key's) goes on in `s`: this instance's share of the `old` one,
 * everything it settled there (pushed or not) and its requests in flight, goes to the shared counter
 * at the next tick. Each instance moves its own share as it learns of the rename: the count stays whole.
 */
export function takeShare(s: State, old: State, dirty: Set<State>, now: number): State {
  s.inflight += old.inflight;
  s.unsynced += old.acked + old.pushing + old.unsynced;
  s.touchedAt = now;
  dirty.add(s);
  return s;
}

/** Remembers what a refusal was decided on, for its message (`Counters.decidedOn`), and answers `answer`. */
export function refused<T>(s: State, value: number, answer: T): T {
  s.refusedOn = value;
  return answer;
}

/** A counter unused this long hands its lease back and is forgotten. */
export const IDLE_MS = 30_000;
/** How much of its recent traffic an instance's lease covers, far from a limit. */
const LEASE_MS = 300;
const DAY_MS = 86_400_000;
/** Counters per sync script call: each call runs to its end inside Redis, holding up every other client. */
export const SYNC_SLICE = 200;

/** In flight plus settled but not yet in Redis: what this instance has taken out of its lease. */
export const consumed = (s: State) => s.inflight + s.unsynced + s.pushing;

/** The counter as this instance alone can know it: the last shared view plus its own consumption. */
export const alone = (s: State) => s.v + s.others + consumed(s);

/** Room under the limit that nobody has used yet (this instance's unused lease included). */
const roomLeft = (s: State) => s.check.limit - alone(s);

/**
 * Whether a request fits in the room this instance holds, under the limit its lease was granted under:
 * a limit lowered since (by an admin) is decided by Redis, as what the other instances used since this
 * one's last sync, inside their own leases, may already be past it.
 */
export const fitsLease = (s: State, check: CounterCheck) =>
  s.synced && check.limit >= s.syncedLimit && consumed(s) + check.reserve <= s.lease && (check.reserve > 0 || consumed(s) < s.lease) && alone(s) < check.limit;

/** Whether a counter is at its limit as last seen, whatever the other instances hold: Redis need not be asked. */
export const atLimit = (s: State, check: CounterCheck) => s.synced && s.v + consumed(s) >= check.limit;

/** Whether a request Redis refused would have fitted but for the room the other instances hold. */
export const heldByOthers = (s: State, check: CounterCheck) => s.others > 0 && s.v + consumed(s) < check.limit;

/** The size of one request on this counter (tokens counters reserve nothing: one token then). */
const unit = (s: State) => (s.lastReserve > 0 ? s.lastReserve : Math.max(1, s.lastActual));

/** Settled amounts ride along with syncs for room; on their own they go once they are this old… */
const PUSH_MS = 15_000;
/** …unless they are at most this share of the room left: then they may wait four times as long… */
const SLIVER = 0.01;
/** …and near a limit (see `tight`), or when another instance wants the room, after this long. */
const NEAR_PUSH_MS = 100;
/** Near a limit, room nothing has used for this long (and nothing holds) goes back to Redis. */
export const RETURN_MS = 250;

/** Far from a limit, a lease holds at least this many requests' worth (see `roomWanted`). */
export const LEASE_FLOOR = 64;

/**
 * Near a limit: this instance's share of the room left holds fewer than LEASE_FLOOR requests, so every
 * request's worth of room matters to the other instances.
 */
export const tight = (s: State) => roomLeft(s) / (2 * (s.peers + 1)) < LEASE_FLOOR * unit(s);

/**
 * Whether settled amounts are due in Redis although the lease needs nothing. Pushing them never
 * changes what the other instances may admit (the lease covers them until then, and a push moves
 * them from the lease into the shared value), so the only thing waiting costs is what a crash keeps
 * from Redis, which the others may then admit again: never more than the lease, and on its own at
 * most 15 s of a quiet counter's traffic, or 60 s of it while that is no more than 1% of the room
 * left (a limit far away). With ten thousand keys in use, pushes were most of the sync work. Near a
 * limit they go within NEAR_PUSH_MS: there a crash would give the others room a whole lease's worth of
 * requests already took.
 */
export function pushDue(s: State, now: number, after = PUSH_MS): boolean {
  if (s.unsynced <= 0) return false;
  const age = now - s.syncedAt;
  if (age > NEAR_PUSH_MS && (s.reclaim || tight(s))) return true;
  if (age <= after) return false;
  return age > 4 * after || s.unsynced > SLIVER * roomLeft(s);
}

/**
 * Room to ask for: a few ticks of this instance's traffic (at least LEASE_FLOOR requests, so a quiet
 * key syncs every few dozen requests, not every few), never more than its share of what is left.
 * The share keeps leases small near a limit, and the sum of every lease and the settled value never
 * exceeds it, whatever the floor.
 */
export function roomWanted(s: State): number {
  const size = unit(s);
  const share = roomLeft(s) / (2 * (s.peers + 1));
  // A share that does not hold a whole request is not worth holding: it would only starve the others.
  // Near the edge, room with nothing in flight goes back too: another instance may need it now.
  if (share < size || (share < 2 * size && s.inflight === 0)) return 0;
  // A lease covers LEASE_MS of recent traffic, so a busy counter syncs a few times a second, not every tick.
  return Math.min(Math.max(LEASE_FLOOR * size, LEASE_MS * s.rate, 3 * s.admittedSinceSync), share);
}

/**
 * Room to hold beyond what is in use, now: none once another instance was refused for it (until this
 * one admits again), nor near a limit once nothing has used it for RETURN_MS with nothing in flight
 * (an idle instance must not keep the others under a small limit); else `roomWanted`.
 */
export function spareWanted(s: State, now: number): number {
  if (s.reclaim || (s.inflight === 0 && now - s.touchedAt > RETURN_MS && tight(s))) return 0;
  return roomWanted(s);
}

/** Admitted, lease, shared value, others' leases, live peers, earlier waiters elsewhere: one counter's answer from the sync script. */
export type SyncReply = [number, string, string, string, number, number];

/**
 * Marks a counter as made again in an emptied Redis: what this instance saw before is its floor, brought
 * back at its next sync, and until then it admits nothing on its own. Its lease is what it has in use.
 */
export function lostData(s: State): void {
  s.floor = s.recover ? Math.max(s.floor, s.v) : s.v;
  s.recover = true;
  s.synced = false;
  s.lease = consumed(s);
}

/**
 * A counter's state after its sync's reply, read from Redis data generation `generation`; its traffic
 * rate (which sizes its lease) smoothed over syncs. A reply from a newer generation than the counter's
 * last, to a sync that was not bringing it back, comes from a counter made again from the stored value
 * alone: it is marked to be brought back up (`lostData`), whichever round trip saw the loss first.
 */
export function applyReply(s: State, reply: SyncReply, now: number, tickMs: number, generation: string | null, recovering: boolean): void {
  const lost = !recovering && s.generation !== null && generation !== null && generation !== s.generation;
  if (lost) lostData(s);
  if (generation !== null) s.generation = generation;
  s.recover = lost;
  s.lease = Number(reply[1]) + s.pushing;
  s.syncedLimit = s.sendingLimit;
  s.v = Number(reply[2]);
  s.others = Number(reply[3]);
  s.peers = Number(reply[4]);
  s.ahead = Number(reply[5]);
  s.synced = !lost;
  const rate = s.admittedSinceSync / Math.max(now - s.syncedAt, tickMs);
  s.rate = s.syncedAt === 0 ? 0 : 0.7 * s.rate + 0.3 * rate;
  s.admittedSinceSync = 0;
  s.syncedAt = now;
}

/** Counter `i`'s reply within a sync call's flat answer (six values per counter). */
export const replyAt = (flat: unknown[], i: number): SyncReply => flat.slice(6 * i, 6 * i + 6) as SyncReply;

/**
 * Settled amounts leave `unsynced` for a sync: they count as `pushing` (in the lease, and in what this
 * instance has consumed) until Redis has them (`pushed`) or the sync failed (`unpushed`). Counting them
 * meanwhile matters while Redis hangs: a sync then waits for its timeout, and an instance deciding
 * alone must still see them.
 */
export function startPush(s: State): number {
  const push = s.unsynced;
  s.unsynced = 0;
  s.pushing += push;
  return push;
}

/**
 * What a sync sends for them: the running total of every amount this state has pushed, those of
 * syncs that failed included (they went back to `unsynced` and go again). Redis adds only what it
 * does not have of it yet (see sync.lua): a sync it runs after its reply timed out, when the
 * amounts already went again, adds nothing a second time.
 */
export const pushTotal = (s: State) => s.acked + s.pushing;

/** A reply confirmed Redis has `total`: the amounts it takes in leave `pushing`, then those a failed sync put back. */
export function pushedUpTo(s: State, total: number): void {
  const confirmed = total - s.acked;
  if (!(confirmed > 0)) return;
  s.acked = total;
  const fromPushing = Math.min(s.pushing, confirmed);
  // What floating point leaves of an amount taken out whole is no amount.
  const whole = (left: number) => (left > 1e-12 * Math.max(1, total) ? left : 0);
  s.pushing = whole(s.pushing - fromPushing);
  s.unsynced = whole(s.unsynced - (confirmed - fromPushing));
}

/** A sync failed: its amounts go with a later one (whose total carries them again), and so do the requests waiting here. */
export function unpushed(s: State, push: number): void {
  s.pushing = Math.max(0, s.pushing - push);
  s.unsynced += push;
  s.waitsChanged = true;
}

/** One counter's sync: its state, what it pushes (taken back if Redis does not answer) and the script's arguments. */
export interface Sync {
  s: State;
  push: number;
  total: number;
  recovering: boolean;
  args: (string | number)[];
}

/** A sync of `s` starting now: its unpushed amounts go, with `need` for Redis to decide on (admissions) and `request`, room wanted. */
function sync(s: State, need: number, request: () => number, admission: boolean, now: number): Sync {
  const push = startPush(s);
  const total = pushTotal(s);
  return { s, push, total, recovering: s.recover, args: syncArgs(s, total, need, request(), admission, now) };
}

/**
 * What a tick's sync of a counter sends: its unpushed amount, and a request for the room it wants,
 * slack beyond what the next few ticks need returned (idle counters return all, see `spareWanted`).
 */
export function tickSync(s: State, now: number): Sync {
  return sync(s, 0, () => {
    const idle = now - s.touchedAt > IDLE_MS && s.inflight === 0;
    const want = idle ? 0 : spareWanted(s, now);
    if (s.lease - s.pushing - s.inflight > want) s.lease = s.pushing + s.inflight + want;
    return Math.max(0, want - (s.lease - s.pushing - s.inflight));
  }, false, now);
}

/** What an admission's sync of a counter sends: its unpushed amount, the request's reservation on it for Redis to decide, and room wanted. */
export const admissionSync = (s: State, need: number, now: number): Sync => sync(s, need, () => roomWanted(s), true, now);

/** A sync's reply: its push is in Redis (in the counter made again, after Redis lost its data: brought back up next), and the lease and views are as it says. */
export function synced({ s, total, recovering }: Sync, reply: SyncReply, now: number, tickMs: number, generation: string | null): void {
  pushedUpTo(s, total);
  applyReply(s, reply, now, tickMs, generation, recovering);
}

/** A counter's values for the sync script, in the order it reads them. */
export function syncArgs(s: State, total: number, need: number, request: number, admission: boolean, now: number): (string | number)[] {
  const keyTtl = Number.isFinite(s.check.expiresAt) ? Math.max(1000, s.check.expiresAt - now + 10_000) : DAY_MS;
  // A counter missing from Redis starts from the stored value the check was planned from (after an admin
  // reset, that is the new value). After Redis lost its data, what this instance last saw is a floor
  // too: the script makes the value the highest floor plus what was pushed since.
  const initial = s.recover ? Math.max(s.check.initial, s.floor) : s.check.initial;
  s.sendingLimit = s.check.limit;
  s.waitsChanged = false;
  s.waitsInRedis = s.waits.length > 0;
  // What is being pushed leaves the lease and joins the shared value there.
  return [
    initial, s.check.limit, total, Math.max(0, s.lease - s.pushing), consumed(s) - s.pushing, need, request, Math.ceil(keyTtl),
    admission ? "1" : "0", unit(s), s.recover ? "1" : "0", s.acked, s.series,
    s.waits.map((since) => Math.max(0, Math.round(now - since))).join(","),
  ];
}

/**
 * Whether a counter goes to Redis this tick: "urgent" when it needs room (those go first), "due" for
 * slack to return or settled amounts that have waited long enough (see `pushDue`), and everything
 * still held when closing; null when nothing matters yet.
 */
export function syncNeed(s: State, now: number, idle: boolean, closing: boolean, pushAfterMs?: number): "urgent" | "due" | null {
  const want = spareWanted(s, now);
  const free = s.lease - consumed(s);
  if (!s.synced || free < want / 2) return "urgent";
  // Hysteresis: slack is returned once it is twice what is wanted (at once when nothing is wanted).
  // A change in the requests waiting here goes at once: the other instances' queues wait on it.
  const due = free > 2 * want || (want === 0 && free > 0) || idle || pushDue(s, now, pushAfterMs) || (closing && s.unsynced > 0) || s.waitsChanged;
  return due ? "due" : null;
}

/** A rate counter's next window starts with the traffic figures of the current one (its lease is sized by them). */
export function carryTraffic(next: State, current: State): State {
  next.admittedSinceSync = current.admittedSinceSync;
  next.rate = current.rate;
  next.lastReserve = current.lastReserve;
  next.lastActual = current.lastActual;
  return next;
}

/** A tick's syncs, added to its pipeline: many counters per script call, in slices short enough not to hold Redis up for the other instances. */
export function addTickSyncs(pipeline: object, sent: readonly Sync[], instanceId: string, redisKeys: RedisKeys): void {
  for (let from = 0; from < sent.length; from += SYNC_SLICE) {
    const slice = sent.slice(from, from + SYNC_SLICE);
    const keys = slice.map(({ s }) => redisKeys.counter(s.check.key));
    (pipeline as any).litegateSync(slice.length, ...keys, instanceId, redisKeys.alivePrefix, ...slice.flatMap(({ args }) => args));
  }
}

/**
 * A tick's replies (one per script call, see `addTickSyncs`) applied to the counters it synced; a
 * counter whose call failed keeps its push for a later sync. Returns the errors, one per such counter.
 */
export function applyTickReplies(sent: readonly Sync[], replies: readonly [Error | null, unknown][], now: number, tickMs: number, generation: string | null): Error[] {
  const errors: Error[] = [];
  sent.forEach((one, i) => {
    const [error, flat] = replies[Math.floor(i / SYNC_SLICE)]!;
    if (error) {
      unpushed(one.s, one.push);
      errors.push(error);
    } else synced(one, replyAt(flat as unknown[], i % SYNC_SLICE), now, tickMs, generation);
  });
  return errors;
}
