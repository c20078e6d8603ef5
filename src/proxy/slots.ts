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
  signal: AbortSignal;
  grant: (taken: Taken | null) => void;
  onAbort: () => void;
}

interface Held {
  inFlight: number;
  /** The cap as the last request (or reload) set it: a reload that changes it applies from then on. */
  cap: number;
}

/** A slot that holds nothing: the deployment has no cap. */
export const NO_SLOT: Release = () => {};

const NOWHERE_ELSE: readonly Place[] = [];

/**
 * Requests in flight at each deployment, for a `model_list` entry's `max_parallel_requests`: a request
 * over the cap waits its turn, as LiteLLM's router queues it, rather than reaching a provider that was
 * sized for fewer. Those waiting form one queue, first come, first served: a slot given back at a
 * deployment goes to the oldest request that may go there, whichever deployment it first picked, and
 * a newcomer never takes it ahead of them. Kept by deployment id, so a config reload does not forget
 * the requests already in flight.
 */
export class DeploymentSlots {
  private readonly held = new Map<string, Held>();
  /** Requests waiting for a slot, oldest first. */
  private readonly queue: Waiter[] = [];

  inFlight(id: string): number {
    return this.held.get(id)?.inFlight ?? 0;
  }

  /** Requests waiting that a slot at the deployment would serve. */
  waiting(id: string): number {
    let count = 0;
    for (const waiter of this.queue) if (waiter.at.includes(id)) count++;
    return count;
  }

  /**
   * A slot at the deployment: at once while fewer than `cap` are in flight (the slot is at `id`), else
   * at the first of `id` and `also` where one is free now or is given back to this request's turn
   * (then the slot says where); null when `signal` aborts first (the client left, or its deadline passed).
   */
  take(id: string, cap: number, signal: AbortSignal, also: readonly Place[] = NOWHERE_ELSE): Release | Promise<Taken | null> {
    const held = this.heldAt(id, cap);
    if (held.inFlight < held.cap) return this.occupy(id, held);
    for (const [other, otherCap] of also) {
      const free = this.heldAt(other, otherCap);
      if (free.inFlight < free.cap) return Promise.resolve({ id: other, release: this.occupy(other, free) });
    }
    if (signal.aborted) return Promise.resolve(null);
    return new Promise((grant) => {
      const waiter: Waiter = {
        at: also.length === 0 ? [id] : [id, ...also.map(([other]) => other)],
        signal,
        grant,
        onAbort: () => {
          const place = this.queue.indexOf(waiter);
          if (place >= 0) this.queue.splice(place, 1);
          grant(null);
        },
      };
      this.queue.push(waiter);
      signal.addEventListener("abort", waiter.onAbort, { once: true });
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
    if (!held) this.held.set(id, (held = { inFlight: 0, cap }));
    else if (held.cap !== cap) {
      held.cap = cap;
      this.admitWaiting(id, held);
    }
    return held;
  }

  private occupy(id: string, held: Held): Release {
    held.inFlight++;
    let given = false;
    return () => {
      if (given) return;
      given = true;
      held.inFlight--;
      this.admitWaiting(id, held);
      if (held.inFlight === 0 && this.held.get(id) === held) this.held.delete(id);
    };
  }

  /**
   * Those waiting who may go to the deployment, oldest first, while it has room. A deployment with room
   * has no one waiting for it, so a request that finds room there takes it ahead of no one.
   */
  private admitWaiting(id: string, held: Held): void {
    for (let i = 0; i < this.queue.length && held.inFlight < held.cap; ) {
      const next = this.queue[i]!;
      if (!next.at.includes(id)) {
        i++;
        continue;
      }
      this.queue.splice(i, 1);
      next.signal.removeEventListener("abort", next.onAbort);
      next.grant({ id, release: this.occupy(id, held) });
    }
  }
}
