import type Redis from "ioredis";
import { COUNTER_IDLE_MS, type CounterCheck, type Counters, type WriteProgress, lessHeld } from "../governance/counters";
import { Successions } from "../governance/succession";
import type { Logger } from "../log";
import { chooseSyncs } from "./choose";
import { ALIVE_ADMITTING_MS, ALIVE_MS, Heartbeat } from "./heartbeat";
import { FreedRoom } from "./freed";
import { type RedisKeys, deleteCounters, reclaimMessage, redisKeys } from "./keys";
import { type State, type SyncReply, alone, consumed, atLimit, heldByOthers, lostData, newState, refused, spareWanted, takeShare } from "./lease";
import { RedisLink } from "./link";
import { Sweep } from "./sweep";
import { CONTESTED_MS, fitsHere, waitingHere } from "./waits";

/**
 * Counters shared by every instance through Redis, without a Redis round trip per request.
 *
 * Each instance holds a lease on each counter it uses: room it may consume on its own. Requests are
 * admitted in memory while they fit in the lease; every tick (10 ms) one pipelined round trip pushes
 * settled amounts, returns slack and asks for more room. The sum of leases and settled value never
 * exceeds the limit, except by the one request admitted when the room ran out (its own reservation
 * need not fit), so limits hold across instances. Leases shrink as the room shrinks, so near the edge
 * requests are decided by Redis itself. A dead instance's leases expire with its heartbeat.
 */

/** An admission refused for the other instances' leases alone asks them for their spare room (see `reclaim`), and is asked again after these waits (a few of their ticks each). */
const RETRY_AFTER_MS = [25, 50];

export interface SharedCountersOptions {
  redis: Redis;
  instanceId: string;
  log: Logger;
  now: () => number;
  tickMs?: number;
  leaseTtlMs?: number;
  /** How old settled amounts get before a push of their own (see `pushDue`). */
  pushAfterMs?: number;
  keys?: RedisKeys; // under `router_settings.redis_namespace`
}

export class SharedCounters implements Counters {
  private readonly states = new Map<string, State>();
  private readonly successions = new Successions<State>();
  private readonly redis: Redis;
  private readonly link: RedisLink;
  private readonly timer: Timer;
  private ticking = false;
  private closing = false;
  private slackPending = false;
  /** Counters used since the last tick, which the next tick looks at… */
  private dirty = new Set<State>();
  /** …with a slice of all the others, in proportion to the time since the last slice (see sweep.ts). */
  private readonly sweep: Sweep;
  private aliveAt = 0;
  /** Admitted on its lease since the last round trip. */
  private admittedAlone = false;
  private readonly heartbeat: Heartbeat;
  syncs = 0;
  lastSyncMs = 0;
  private readonly tickMs: number;
  private readonly freedRoom = new FreedRoom();

  constructor(private readonly options: SharedCountersOptions) {
    this.tickMs = options.tickMs ?? 10;
    this.redis = options.redis;
    this.heartbeat = new Heartbeat(options.instanceId, options.leaseTtlMs ?? 3000, options.keys ?? redisKeys);
    this.sweep = new Sweep(this.states);
    this.link = new RedisLink({ redis: options.redis, heartbeat: this.heartbeat, instanceId: options.instanceId, log: options.log, now: options.now, tickMs: this.tickMs,
      lostData: () => {
        for (const s of this.states.values()) {
          lostData(s);
          this.dirty.add(s);
        }
      } });
    this.redis.set(this.heartbeat.keys.alive(options.instanceId), "1", "PX", options.leaseTtlMs ?? 3000).catch(() => {});
    this.timer = setInterval(() => void this.tick(), this.tickMs);
  }

  get isDegraded(): boolean { return this.link.degraded; }
  get failures(): number { return this.link.failures; }
  /** Round trips to Redis: one per tick with something to sync, one per admission Redis decides (and each reclaim message). */
  get roundTrips(): number { return this.link.roundTrips; }
  /** Counters synced: a tick's round trip syncs many. */
  get counterSyncs(): number { return this.link.counterSyncs; }

  private state(check: CounterCheck): State {
    let s = this.states.get(check.key);
    if (!s) {
      s = newState(check, this.options.now());
      const carried = this.successions.inherit(check.key, s);
      if (carried) {
        s.inflight = carried.held;
        // Not in the stored spend it starts from: pushed to the shared value as settled here.
        s.unsynced = carried.unwritten;
        this.dirty.add(s);
      }
      this.states.set(check.key, s);
    } else {
      s.check = check;
    }
    return s;
  }

  private fitsLocally(s: State, check: CounterCheck): boolean {
    // Without Redis an instance still leaves room for what the others held at the last sync.
    if (this.link.degraded) return alone(s) < check.limit;
    return fitsHere(s, check, this.options.now());
  }

  private take(s: State, check: CounterCheck): true {
    this.dirty.add(s);
    this.admittedAlone = true;
    s.inflight += check.reserve;
    s.reclaim = false;
    s.admittedSinceSync += check.reserve;
    s.lastReserve = Math.max(check.reserve, s.lastReserve * 0.9);
    s.touchedAt = this.options.now();
    check.on = s;
    return true;
  }

  admit(checks: readonly CounterCheck[]): number | Promise<number> {
    const states = checks.map((check) => this.state(check));
    let allLocal = true;
    for (let i = 0; i < checks.length; i++) {
      if (!this.fitsLocally(states[i]!, checks[i]!)) {
        if (this.link.degraded) return refused(states[i]!, alone(states[i]!), i);
        allLocal = false;
      }
    }
    if (allLocal) {
      for (let i = 0; i < checks.length; i++) this.take(states[i]!, checks[i]!);
      return -1;
    }
    return this.admitRemote(checks, states);
  }

  private async admitRemote(checks: readonly CounterCheck[], states: State[]): Promise<number> {
    // Refused before anything is held on the other counters (where a concurrent request would meet it).
    const full = checks.findIndex((check, i) => atLimit(states[i]!, check));
    if (full >= 0) {
      const s = states[full]!;
      // Refused on what was used, whoever holds room besides: room other instances still hold (a limit
      // lowered under them, which they do not know of until they serve it) is asked back, and this
      // counter is read from Redis again (its next request decided there), so that what the refusals say
      // is held comes back to what is, within a tick or two.
      if (s.others > 0) {
        this.askBack(s);
        s.synced = false;
        this.dirty.add(s);
      }
      return refused(s, s.v + consumed(s), full);
    }
    let results = await this.decide(checks, states);
    for (const wait of RETRY_AFTER_MS) {
      const held = states.filter((s, i) => !results[i] && heldByOthers(s, checks[i]!));
      if (held.length === 0) break;
      // Refused only for room other instances hold, which they may not be using: they are asked for it
      // (they give back what they do not use at their next tick), and the request is decided again.
      for (const s of held) this.askBack(s);
      results.forEach((ok, i) => ok && this.release(checks[i]!));
      await this.freedRoom.pause(wait, held);
      results = await this.decide(checks, states);
    }
    const failed = results.indexOf(false);
    if (failed >= 0) {
      results.forEach((ok, i) => ok && this.release(checks[i]!));
      return failed;
    }
    return -1;
  }

  /**
   * An admission decided counter by counter, once no other Redis operation is under way on any of its
   * counters (a tick's sync): on this instance's lease where it holds the request now (it may have grown
   * meanwhile), the other counters by Redis, all in one round trip.
   */
  private async decide(checks: readonly CounterCheck[], states: State[]): Promise<boolean[]> {
    // A counter twice in one admission: the second is decided after the first took its share.
    if (new Set(states).size < states.length) {
      const results: boolean[] = [];
      for (let i = 0; i < checks.length; i++) results.push(...(await this.decide([checks[i]!], [states[i]!])));
      return results;
    }
    for (let s = states.find((x) => x.busy); s; s = states.find((x) => x.busy)) await s.busy!.catch(() => {});
    const results = checks.map(() => false);
    const remote: number[] = [];
    checks.forEach((check, i) => {
      const s = states[i]!;
      if (!this.link.degraded && !this.fitsLocally(s, check)) remote.push(i);
      else if (this.link.degraded && alone(s) >= check.limit) refused(s, alone(s), false);
      else results[i] = this.take(s, check);
    });
    if (remote.length === 0) return results;
    const run = this.decideByRedis(remote.map((i) => ({ s: states[i]!, check: checks[i]! })));
    for (const i of remote) states[i]!.busy = run;
    try {
      const decided = await run;
      remote.forEach((i, j) => (results[i] = decided[j]!));
    } finally {
      for (const i of remote) if (states[i]!.busy === run) states[i]!.busy = null;
    }
    return results;
  }

  private async decideByRedis(counters: readonly { s: State; check: CounterCheck }[]): Promise<boolean[]> {
    const batch = counters.map(({ s, check }) => ({ s, need: check.reserve }));
    const replies: (SyncReply | null)[] = (await this.link.syncForAdmission(batch)) ?? batch.map(() => null);
    // Made again in an emptied Redis: brought back up to what this instance saw before deciding.
    const again = batch.flatMap(({ s }, j) => (replies[j] && s.recover ? [j] : []));
    if (again.length > 0) {
      const second = await this.link.syncForAdmission(again.map((j) => batch[j]!));
      again.forEach((j, k) => (replies[j] = second?.[k] ?? null));
    }
    return counters.map(({ s, check }, j) => {
      const reply = replies[j];
      // Without an answer, decided as if alone (and degraded until Redis answers again). Refused by Redis,
      // it is on what its reply brought: the shared value and the others' leases, with this one's use.
      if (reply ? reply[0] !== 1 : alone(s) >= check.limit) return refused(s, alone(s), false);
      return this.take(s, check);
    });
  }

  /** Tells the other instances that a request was refused for the room they hold on `s` (once per retry wait). */
  private askBack(s: State): void {
    const now = this.options.now();
    if (now - s.askedAt < RETRY_AFTER_MS[0]!) return;
    s.askedAt = now;
    this.link.askBack(s.check.key);
  }

  /**
   * Another instance was refused for room this one holds (a message on `keys.reclaim`): what this
   * one holds beyond its use goes back at the next tick, and it holds no spare room until it admits again.
   */
  reclaimed(message: string): void {
    const { from, key } = reclaimMessage.read(message);
    const s = key === null ? undefined : this.states.get(key);
    if (!s || from === this.options.instanceId) return;
    s.othersAskedAt = this.options.now();
    if (s.lease <= consumed(s)) return;
    s.reclaim = true;
    this.dirty.add(s);
  }

  /** Another instance gave back room this one asked it for (a message on `keys.freed`): see `FreedRoom`. */
  freed(message: string): void {
    const { from, key } = reclaimMessage.read(message);
    if (key !== null && from !== this.options.instanceId) this.freedRoom.heard(key, this.states.get(key));
  }

  readonly onFreed = (listener: (key: string) => void): void => this.freedRoom.listen(listener);

  /** Whether a request waiting on another instance came before the oldest waiting here, as the last sync said. */
  contested(check: CounterCheck): boolean {
    return (this.states.get(check.key)?.ahead ?? 0) > 0;
  }

  /** How long the requests waiting here for room on the counter have waited (ms, oldest first); see `State.waits`. */
  waiting(check: CounterCheck, waited: readonly number[]): void {
    const s = waited.length === 0 ? this.states.get(check.key) : this.state(check);
    if (!s) return;
    waitingHere(s, waited, this.options.now());
    this.dirty.add(s);
  }

  /**
   * Near the edge a lease holds no more than the requests in flight: room a request no longer needs
   * goes back to Redis at once rather than at the next tick, so another instance's next request finds it.
   */
  private returnSlackSoon(s: State): void {
    if (this.slackPending || s.lease <= consumed(s) || spareWanted(s, this.options.now()) > 0) return;
    this.slackPending = true;
    queueMicrotask(() => {
      this.slackPending = false;
      void this.tick();
    });
  }

  /** Every tick: one pipelined round trip for every counter with something to tell or to ask. */
  private async tick(): Promise<void> {
    if (this.ticking) return;
    this.ticking = true;
    const now = this.options.now();
    const started = performance.now();
    const candidates = this.closing ? new Set(this.states.values()) : this.dirty;
    this.successions.sweep(now, COUNTER_IDLE_MS);
    if (!this.closing) this.sweep.addSlice(candidates, now);
    this.dirty = new Set();
    const { chosen, later } = chooseSyncs(this.states, candidates, now, this.closing, (check) => this.state(check), this.options.pushAfterMs);
    for (const s of later) this.dirty.add(s);
    try {
      // Stay alive (our leases stay valid) even when no counter needs a sync. While Redis does not answer
      // (it may hang: syncs would wait for their timeout), only the heartbeat goes, until it answers.
      if (chosen.length === 0 || (this.link.degraded && !this.closing)) {
        for (const s of chosen) this.dirty.add(s);
        if (this.link.degraded || now - this.aliveAt > (this.admittedAlone ? ALIVE_ADMITTING_MS : ALIVE_MS)) {
          this.aliveAt = now;
          this.admittedAlone = false;
          await this.link.ping();
        }
        return;
      }
      this.aliveAt = now;
      this.admittedAlone = false;
      let asked: [State, number][] | null = null;
      for (const s of chosen) if (now - s.othersAskedAt < CONTESTED_MS) (asked ??= []).push([s, s.lease]);
      if (!(await this.link.syncMany(chosen, now))) return;
      // Room another instance asked for is back in Redis: it is told, so that it need not wait to ask again.
      if (asked) for (const [s, lease] of asked) if (s.lease < lease) this.link.freed(s.check.key);
      this.syncs++;
      this.lastSyncMs = performance.now() - started;
    } finally {
      this.ticking = false;
    }
  }

  settle(check: CounterCheck, actual: number): void {
    const s = this.successions.endingOn(this.states, check, actual, (c) => this.state(c));
    if (!s) return;
    this.dirty.add(s);
    s.inflight = lessHeld(s.inflight, check.reserve);
    s.unsynced += actual;
    if (check.reserve === 0 && actual > 0) {
      s.admittedSinceSync += actual;
      s.lastActual = s.lastActual === 0 ? actual : s.lastActual * 0.9 + actual * 0.1;
    }
    s.touchedAt = this.options.now();
    this.returnSlackSoon(s);
  }

  release(check: CounterCheck): void {
    const s = this.successions.endingOn(this.states, check, 0, null);
    if (!s) return;
    s.inflight = lessHeld(s.inflight, check.reserve);
    // The next tick looks at it: room this request no longer needs goes back to the other instances.
    this.dirty.add(s);
    this.returnSlackSoon(s);
  }

  readonly holdLate = (prefix: string, reserve: number): CounterCheck => this.successions.holdLate(prefix, reserve, this.options.now());
  /** A successor made here pushes what it took over (the requests in flight here) to the shared counter at the next tick. */
  adopt(checks: readonly CounterCheck[]): void {
    for (const check of checks) this.state(check).touchedAt = this.options.now();
  }

  /** The shared value as last synced plus this instance's own in flight and unpushed (admission also counts the others' room: `alone`). */
  used(check: CounterCheck): number {
    const s = this.states.get(check.key);
    return s ? s.v + consumed(s) : check.initial;
  }

  decidedOn(check: CounterCheck): number | null {
    return this.states.get(check.key)?.refusedOn ?? null;
  }

  /** The shared settled value and this instance's unpushed settlements: a budget's spend. */
  spent(check: CounterCheck): number {
    const s = this.states.get(check.key);
    return s ? s.v + s.unsynced + s.pushing : check.initial;
  }

  /** This instance's requests in flight, and the room the other instances hold. */
  held(check: CounterCheck): number {
    const s = this.states.get(check.key);
    return s ? s.inflight + s.others : 0;
  }

  /** The shared value of a counter held here is the one last synced: what admission decides on, with the others' leases. */
  readonly holds = (check: CounterCheck): boolean => this.states.has(check.key);
  readonly shared = true;

  drop(prefix: string, renamedTo?: string, ended = false): void {
    // Never synced again: a successor may have their key, and their requests in flight are the successor's now.
    const moveWindow = (key: string, old: State) => takeShare(this.state({ ...old.check, key, initial: 0, on: undefined }), old, this.dirty, this.options.now());
    for (const s of this.successions.retireUnder(this.states, prefix, renamedTo, this.options.now(), (s) => s.inflight, ended, moveWindow)) this.dirty.delete(s);
  }

  trackWrites(progress: WriteProgress): void { this.successions.writes = progress; }

  forget(prefix: string, renamedTo?: string, ended = false): void {
    this.drop(prefix, renamedTo, ended);
    deleteCounters(this.redis, prefix, this.heartbeat.keys);
  }

  get size(): number { return this.states.size; }

  async close(): Promise<void> {
    clearInterval(this.timer);
    // Hand back every lease so the other instances get the room at once, with every settled amount.
    for (const s of this.states.values()) {
      s.inflight = 0;
      s.touchedAt = 0;
    }
    this.closing = true;
    // A tick under way would make this one a no-op: wait for it (bounded by the Redis client's own timeouts).
    for (let waited = 0; this.ticking && waited < 5000; waited += 10) await Bun.sleep(10);
    await this.tick().catch(() => {});
  }
}
