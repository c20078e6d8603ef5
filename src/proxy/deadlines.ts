/** One request's deadline: aborted when its client goes away or the sweep finds it overdue. */
class Deadline {
  private readonly controller = new AbortController();

  constructor(
    readonly at: number,
    private readonly pending: Set<Deadline>,
  ) {}

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  /** The client's abort event: the deadline is its own listener, so tracking allocates no closure. */
  handleEvent(event: Event): void {
    this.controller.abort((event.target as AbortSignal).reason);
  }

  expire(): void {
    this.controller.abort(new DOMException("The request took longer than request_timeout", "TimeoutError"));
  }

  /** The request is over: forget it. */
  done(): void {
    this.pending.delete(this);
  }
}

/**
 * Request timeouts without a timer per request: one sweep a second aborts whatever is overdue.
 * (A timer and a combined signal per request cost a measurable share of the hot path.)
 */
export class Deadlines {
  private readonly pending = new Set<Deadline>();
  private readonly timer: Timer;

  constructor(private readonly now: () => number = Date.now) {
    this.timer = setInterval(() => this.sweep(), 1000);
    this.timer.unref?.();
  }

  /** A deadline whose signal aborts when the client goes away or `ms` passes; call `done()` when the request ends. */
  track(client: AbortSignal, ms: number): Deadline {
    const deadline = new Deadline(this.now() + ms, this.pending);
    this.pending.add(deadline);
    client.addEventListener("abort", deadline);
    return deadline;
  }

  sweep(): void {
    const now = this.now();
    for (const deadline of this.pending) {
      if (deadline.at <= now) {
        deadline.expire();
        this.pending.delete(deadline);
      }
    }
  }

  get size(): number {
    return this.pending.size;
  }

  close(): void {
    clearInterval(this.timer);
  }
}
