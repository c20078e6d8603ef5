/** Gives a slot back. Calling it again does nothing. */
export type Release = () => void;

interface Waiter {
  signal: AbortSignal;
  grant: (release: Release | null) => void;
  onAbort: () => void;
}

interface Held {
  inFlight: number;
  /** The cap as the last request found it: a reload that changes it applies from the next request on. */
  cap: number;
  waiting: Waiter[];
}

/** A slot that holds nothing: the deployment has no cap. */
export const NO_SLOT: Release = () => {};

/**
 * Requests in flight at each deployment, for a `model_list` entry's `max_parallel_requests`: a request
 * over the cap waits its turn (first come, first served), as LiteLLM's router queues it, rather than
 * reaching a provider that was sized for fewer. Kept by deployment id, so a config reload does not
 * forget the requests already in flight.
 */
export class DeploymentSlots {
  private readonly held = new Map<string, Held>();

  inFlight(id: string): number {
    return this.held.get(id)?.inFlight ?? 0;
  }

  /** Requests waiting for a slot at the deployment. */
  waiting(id: string): number {
    return this.held.get(id)?.waiting.length ?? 0;
  }

  /**
   * A slot at the deployment: at once while fewer than `cap` are in flight, else once one is given back
   * to this request's turn; null when `signal` aborts first (the client left, or its deadline passed).
   */
  take(id: string, cap: number, signal: AbortSignal): Release | Promise<Release | null> {
    let held = this.held.get(id);
    if (!held) this.held.set(id, (held = { inFlight: 0, cap, waiting: [] }));
    held.cap = cap;
    this.admitWaiting(id, held);
    if (held.inFlight < cap && held.waiting.length === 0) {
      held.inFlight++;
      return this.releaser(id, held);
    }
    if (signal.aborted) return Promise.resolve(null);
    return new Promise((grant) => {
      const waiter: Waiter = {
        signal,
        grant,
        onAbort: () => {
          const at = held.waiting.indexOf(waiter);
          if (at >= 0) held.waiting.splice(at, 1);
          this.forgetIfIdle(id, held);
          grant(null);
        },
      };
      held.waiting.push(waiter);
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

  private releaser(id: string, held: Held): Release {
    let given = false;
    return () => {
      if (given) return;
      given = true;
      held.inFlight--;
      this.admitWaiting(id, held);
      this.forgetIfIdle(id, held);
    };
  }

  /** Those waiting, in turn, while there is room. */
  private admitWaiting(id: string, held: Held): void {
    while (held.waiting.length > 0 && held.inFlight < held.cap) {
      const next = held.waiting.shift()!;
      next.signal.removeEventListener("abort", next.onAbort);
      held.inFlight++;
      next.grant(this.releaser(id, held));
    }
  }

  private forgetIfIdle(id: string, held: Held): void {
    if (held.inFlight === 0 && held.waiting.length === 0 && this.held.get(id) === held) this.held.delete(id);
  }
}
