/**
 * Request timeouts without a timer per request: one sweep a second aborts whatever is overdue.
 * (A timer and a combined signal per request cost a measurable share of the hot path.)
 */
export class Deadlines {
  private readonly pending = new Set<{ at: number; controller: AbortController }>();
  private readonly timer: Timer;

  constructor(private readonly now: () => number = Date.now) {
    this.timer = setInterval(() => this.sweep(), 1000);
    this.timer.unref?.();
  }

  /** A signal aborted when the client goes away or `ms` passes; `done` forgets it. */
  track(client: AbortSignal, ms: number): { signal: AbortSignal; done: () => void } {
    const controller = new AbortController();
    const entry = { at: this.now() + ms, controller };
    this.pending.add(entry);
    client.addEventListener("abort", () => controller.abort(client.reason), { once: true });
    return { signal: controller.signal, done: () => void this.pending.delete(entry) };
  }

  sweep(): void {
    const now = this.now();
    for (const entry of this.pending) {
      if (entry.at <= now) {
        entry.controller.abort(new DOMException("The request took longer than request_timeout", "TimeoutError"));
        this.pending.delete(entry);
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
