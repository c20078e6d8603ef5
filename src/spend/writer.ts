import type { Clock } from "../clock";
import type { Sql } from "../db";
import type { Logger } from "../log";
import { Batch, type SpendEvent } from "./batch";
import { applyBatch } from "./repo";

export interface SpendWriterOptions {
  db: Sql;
  clock: Clock;
  log: Logger;
  /** How far behind the database may be, at most (ms). */
  intervalMs?: number;
  /** A batch holds at most this many requests. */
  maxBatch?: number;
}

export type SpendWriter = ReturnType<typeof createSpendWriter>;

/**
 * Batches settled spend and writes it at most `intervalMs` later with atomic increments. A batch that
 * fails stays queued with its id and is retried; a retry of a batch that was in fact committed is
 * skipped by the database, so increments are never lost nor doubled.
 */
export function createSpendWriter(options: SpendWriterOptions) {
  const { db, log } = options;
  const intervalMs = options.intervalMs ?? 1000;
  const maxBatch = options.maxBatch ?? 5000;
  let current = new Batch();
  /** Full batches waiting for the database, oldest first (failed ones stay at the front). */
  const queue: Batch[] = [];
  let flushing: Promise<void> | null = null;
  let failures = 0;
  let written = 0;

  async function writeOnce(): Promise<void> {
    if (current.size > 0) {
      queue.push(current);
      current = new Batch();
    }
    while (queue.length > 0) {
      const batch = queue[0]!;
      await applyBatch(db, batch);
      queue.shift();
      written += batch.size;
    }
  }

  function flush(): Promise<void> {
    if (flushing) return flushing;
    flushing = writeOnce()
      .then(() => {
        if (failures > 0) log.info("spend writes resumed", { after_failures: failures });
        failures = 0;
        log.clearOnce("spend-flush");
      })
      .catch((error) => {
        failures++;
        log.once("error", "spend-flush", "spend flush failed; keeping it queued and retrying", { error: String(error) });
      })
      .finally(() => {
        flushing = null;
      });
    return flushing;
  }

  const timer = setInterval(() => void flush(), intervalMs);

  return {
    record(event: SpendEvent): void {
      current.add(event);
      if (current.size >= maxBatch) {
        queue.push(current);
        current = new Batch();
      }
    },
    flush,
    /** Requests whose spend is not in the database yet. */
    backlog(): number {
      return current.size + queue.reduce((n, batch) => n + batch.size, 0);
    },
    written: () => written,
    /** Whether the last write failed: spend is waiting for the database, not just for the next batch. */
    failing: () => failures > 0,
    /** Stops the timer and writes everything, retrying until `deadlineMs` passes. */
    async close(deadlineMs = 10_000): Promise<void> {
      clearInterval(timer);
      const until = Date.now() + deadlineMs;
      for (;;) {
        await flush();
        if (this.backlog() === 0) return;
        if (Date.now() >= until) {
          log.error("spend not written before shutdown", { requests: this.backlog() });
          return;
        }
        await Bun.sleep(200);
      }
    },
  };
}
