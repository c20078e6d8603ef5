import { type CounterCheck, type Counters, counterKeys, scopes } from "../governance";

/** Gives a slot back. Calling it again does nothing. */
export type Release = () => void;

/** A deployment a waiting request may also be served by: its id and its cap. */
export type Place = readonly [id: string, cap: number];

/** A slot a waiting request was given, and the deployment it is at (the one asked for or another). */
export interface Taken {
  id: string;
  release: Release;
}

interface Waiter {
  /** The deployments that may serve it: the first slot freed at any of them is its. */
  at: readonly string[];
  /** When it began to wait (ms). */
  since: number;
  signal: AbortSignal;
  grant: (taken: Taken | null) => void;
  onAbort: () => void;
}

interface Held {
  inFlight: number;
  /** The cap as the last request (or reload) set it: a reload that changes it applies from then on. */
  cap: number;
  /** Shared: a slot asked of Redis, not decided yet (one at a time per deployment). */
  asking: boolean;
  /** Shared: until when (ms) those waiting here leave a slot given back here to another instance's (see `occupy`). */
  yieldUntil: number;
}

/** A slot that holds nothing: the deployment has no cap. */
export const NO_SLOT: Release = () => {};

const NOWHERE_ELSE: readonly Place[] = [];
/** Shared: how often those waiting ask again for a slot another instance may have given back. */
const ASK_AGAIN_MS = 10;
/**
 * Shared: how long those waiting here leave a slot given back here to another instance's waiting
 * request that came before them: it hears at once that the slot is back in Redis (`Counters.onFreed`),
 * and takes it in a round trip or two. Redis would refuse them meanwhile (see `Counters.waiting`).
 */
const YIELD_MS = 20;
/** Shared: the most waiting requests an instance tells Redis of, per deployment (see `report`). */
const MOST_WAITS_TOLD = 100;

/**
 * Requests in flight at each deployment, for a `model_list` entry's `max_parallel_requests`: a request
 * over the cap waits its turn, as LiteLLM's router queues it, rather than reaching a provider that was
 * sized for fewer. Those waiting form one queue, first come, first served: a slot given back at a
 * deployment goes to the oldest request that may go there, whichever deployment it first picked, and
 * a newcomer never takes it ahead of them. Kept by deployment id, so a config reload does not forget
 * the requests already in flight.
 *
 * With counters shared between instances (Redis), the cap holds for the deployment rather than per
 * instance (LiteLLM's is per instance: three instances send three times the cap): each slot is also
 * a parallel counter's reservation (`p:d:<id>:`), taken on this instance's lease while it has room and
 * decided by Redis near the cap. Those refused there wait here, in the same queue, and ask again every
 * ASK_AGAIN_MS, or as soon as another instance says it gave a slot back. The queue is one across the
 * instances: each tells Redis how long its waiting requests have waited, and a slot goes to the request
 * that has waited longest, whichever instance it came to (see `Counters.waiting`).
 */
export class DeploymentSlots {
  private readonly held = new Map<string, Held>();
  /** Requests waiting for a slot, oldest first. */
  private readonly queue: Waiter[] = [];
  private poller: Timer | null = null;

  constructor(private readonly shared?: Counters) {
    // Another instance gave back a slot those waiting here asked for: they ask again now, not at the next
    // poll, and no longer yield (the yield was for that instance's turn, which has ended: both yielding,
    // the slot would be idle while no one asks).
    shared?.onFreed?.((key) => {
      for (const [id, held] of this.held) {
        if (slotKey(id) !== key || this.waiting(id) === 0) continue;
        held.yieldUntil = 0;
        this.admitWaiting(id, held);
      }
    });
  }

  inFlight(id: string): number {
    return this.held.get(id)?.inFlight ?? 0;
  }

  /** Requests waiting that a slot at the deployment would serve. */
  waiting(id: string): number {
    let count = 0;
    for (const waiter of this.queue) if (waiter.at.includes(id)) count++;
    return count;
  }

  /** Whether a request may take a slot at the deployment now, as far as this instance knows (shared: Redis may still refuse it). */
  free(id: string, cap: number): boolean {
    const held = this.held.get(id);
    if (!held) return true;
    return held.inFlight < cap && !held.asking && (!this.shared || this.waiting(id) === 0);
  }

  /**
   * A slot at the deployment: at once while fewer than `cap` are in flight (the slot is at `id`), else
   * at the first of `id` and `also` where one is free now or is given back to this request's turn
   * (then the slot says where); null when `signal` aborts first (the client left, or its deadline passed).
   */
  take(id: string, cap: number, signal: AbortSignal, also: readonly Place[] = NOWHERE_ELSE): Release | Promise<Taken | null> {
    const held = this.heldAt(id, cap);
    const here = this.takeNow(id, held);
    if (here) return here;
    for (const [other, otherCap] of also) {
      const there = this.takeNow(other, this.heldAt(other, otherCap));
      if (there) return Promise.resolve({ id: other, release: there });
    }
    if (signal.aborted) return Promise.resolve(null);
    return new Promise((grant) => {
      const waiter: Waiter = {
        at: also.length === 0 ? [id] : [id, ...also.map(([other]) => other)],
        since: Date.now(),
        signal,
        grant,
        onAbort: () => {
          const place = this.queue.indexOf(waiter);
          if (place >= 0) this.queue.splice(place, 1);
          this.report(waiter.at);
          grant(null);
        },
      };
      this.queue.push(waiter);
      this.report(waiter.at);
      signal.addEventListener("abort", waiter.onAbort, { once: true });
      this.poll();
    });
  }

  /**
   * After a config reload: each deployment's cap as the new config sets it (`capOf` undefined: it has
   * none now, or is gone), and those waiting let through as far as it allows, at once.
   */
  recap(capOf: (id: string) => number | undefined): void {
    for (const [id, held] of this.held) {
      held.cap = capOf(id) ?? Infinity;
      this.admitWaiting(id, held);
    }
  }

  /** The deployment's count, its cap set as given; those waiting let through if that raised it. */
  private heldAt(id: string, cap: number): Held {
    let held = this.held.get(id);
    if (!held) this.held.set(id, (held = { inFlight: 0, cap, asking: false, yieldUntil: 0 }));
    else if (held.cap !== cap) {
      held.cap = cap;
      this.admitWaiting(id, held);
    }
    return held;
  }

  /** A slot at the deployment if one is free now, taking no one's turn (shared: on this instance's lease); else null. */
  private takeNow(id: string, held: Held): Release | null {
    if (held.inFlight >= held.cap) return null;
    if (!this.sharedAt(held)) return this.occupy(id, held, null);
    if (held.asking || this.waiting(id) > 0) return null;
    return this.sharedNow(id, held);
  }

  /** Whether the deployment's slots are counted with the other instances' (a cap a reload removed is not). */
  private sharedAt(held: Held): boolean {
    return this.shared !== undefined && Number.isFinite(held.cap);
  }

  /** A slot the shared counter gave with no request waiting for it yet: to the oldest that may go there, else given back. */
  private hand(id: string, held: Held, check: CounterCheck): void {
    const next = this.queue.findIndex((waiter) => waiter.at.includes(id));
    if (next < 0) {
      this.shared!.release(check);
      return;
    }
    this.grantAt(next, id, this.occupy(id, held, check));
    this.admitWaiting(id, held);
  }

  private occupy(id: string, held: Held, check: CounterCheck | null): Release {
    held.inFlight++;
    let given = false;
    return () => {
      if (given) return;
      given = true;
      held.inFlight--;
      if (check) {
        this.shared!.release(check);
        // A request waiting on another instance came before those waiting here: this slot goes back to
        // Redis (there is no spare room at the cap) for it, rather than to the next request waiting here.
        if (this.shared!.contested?.(check) && this.waiting(id) > 0) held.yieldUntil = Date.now() + YIELD_MS;
      }
      this.admitWaiting(id, held);
      // Kept while anyone waits for it: those refused by the shared count wait with none in flight here.
      if (held.inFlight === 0 && !held.asking && this.held.get(id) === held && this.waiting(id) === 0) this.held.delete(id);
    };
  }

  private grantAt(place: number, id: string, release: Release): void {
    const [waiter] = this.queue.splice(place, 1);
    waiter!.signal.removeEventListener("abort", waiter!.onAbort);
    this.report(waiter!.at);
    waiter!.grant({ id, release });
  }

  /**
   * Shared: how long the oldest requests waiting here for each of the deployments have waited (as many
   * as its cap: no more can go next), for Redis to give slots to the requests that have waited longest,
   * whichever instance they are on.
   */
  private report(ids: readonly string[]): void {
    if (!this.shared?.waiting) return;
    const now = Date.now();
    for (const id of ids) {
      const held = this.held.get(id);
      if (!held || !this.sharedAt(held)) continue;
      const most = Math.min(held.cap, MOST_WAITS_TOLD);
      const waited: number[] = [];
      for (let i = 0; i < this.queue.length && waited.length < most; i++) if (this.queue[i]!.at.includes(id)) waited.push(now - this.queue[i]!.since);
      this.shared.waiting(slotCheck(id, held.cap), waited);
    }
  }

  /**
   * Those waiting who may go to the deployment, oldest first, while it has room (shared: while the
   * shared count grants it, and not while yielding to another instance's). A newcomer never takes room
   * ahead of them: counted here alone, a deployment with room has no one waiting; shared, a newcomer
   * queues behind anyone waiting (see `takeNow`).
   */
  private admitWaiting(id: string, held: Held): void {
    if (held.yieldUntil > Date.now()) return;
    for (let i = 0; i < this.queue.length && held.inFlight < held.cap && !held.asking; ) {
      if (!this.queue[i]!.at.includes(id)) {
        i++;
        continue;
      }
      const release = this.sharedAt(held) ? this.sharedNow(id, held) : this.occupy(id, held, null);
      if (!release) return;
      this.grantAt(i, id, release);
    }
  }

  /** Shared: a slot for the oldest waiter, decided on this instance's lease, or asked of Redis (then handed on when it answers). */
  private sharedNow(id: string, held: Held): Release | null {
    const check = slotCheck(id, held.cap);
    const decided = this.shared!.admit([check]);
    if (typeof decided === "number") return decided < 0 ? this.occupy(id, held, check) : null;
    held.asking = true;
    held.inFlight++;
    void decided.then((failed) => {
      held.asking = false;
      held.inFlight--;
      if (failed < 0) this.hand(id, held, check);
    }, () => {
      held.asking = false;
      held.inFlight--;
    });
    return null;
  }

  /** Shared: while anyone waits, each deployment they wait for is asked again, for slots other instances gave back. */
  private poll(): void {
    if (!this.shared || this.poller) return;
    this.poller = setInterval(() => {
      if (this.queue.length === 0) {
        clearInterval(this.poller!);
        this.poller = null;
        return;
      }
      const ids = new Set(this.queue.flatMap((waiter) => waiter.at));
      for (const id of ids) {
        const held = this.held.get(id);
        if (held) this.admitWaiting(id, held);
      }
    }, ASK_AGAIN_MS);
    this.poller.unref?.();
  }
}

const slotKey = (id: string) => counterKeys.parallel(scopes.deployment(id));

/** A slot at a deployment as a parallel counter's reservation, shared by the instances on one Redis. */
const slotCheck = (id: string, cap: number): CounterCheck => ({ key: slotKey(id), limit: cap, reserve: 1, initial: 0, expiresAt: Infinity, queued: true });
