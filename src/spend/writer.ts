import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, readdirSync, renameSync, unlinkSync, writeSync } from "node:fs";
import { join } from "node:path";
import type { Clock } from "../clock";
import type { Sql } from "../db";
import type { Logger } from "../log";
import { Batch, type SpendEvent, type SpendRow, batchFromSaved, savedBatch } from "./batch";
import { UnencodableBatch, applyBatch } from "./repo";

export interface SpendWriterOptions {
  db: Sql;
  clock: Clock;
  log: Logger;
  /** How far behind the database may be, at most (ms). */
  intervalMs?: number;
  /** A batch holds at most this many requests. */
  maxBatch?: number;
  /** Where a batch the database refuses for its content, or that cannot be encoded, is saved (see `setAside`). */
  quarantineDir?: string;
  /** Where batches the database could not take before shutdown are saved, to be written at the next start. */
  pendingDir?: string;
  /** The master key's hash, the api_key of its requests' log rows (without one: "master"). */
  masterToken?: string | null;
  /** Requests waiting for a failing database past which the log rows of refused requests are dropped (see `refused`). */
  maxRefusedHeld?: number;
}

/**
 * SQLSTATE classes no retry can cure: the batch's own data (22), a constraint (23), the statement (42),
 * a size limit (54). Connection loss, shutdowns, deadlocks and full disks are retried for as long as
 * they last.
 */
const REFUSED = new Set(["22", "23", "42", "54"]);
const refusedForContent = (error: unknown) => REFUSED.has(String((error as { code?: unknown } | null)?.code ?? "").slice(0, 2));
/** Times a batch is refused for its content before it is set aside. */
const REFUSALS_BEFORE_SET_ASIDE = 3;

export type SpendWriter = ReturnType<typeof createSpendWriter>;

/**
 * Batches settled spend and writes it at most `intervalMs` later with atomic increments. A batch that
 * fails stays queued with its id and is retried; a retry of a batch that was in fact committed is
 * skipped by the database, so increments are never lost nor doubled. A batch the database keeps
 * refusing for what it holds is saved to a file and logged, so that it cannot hold back the spend of
 * every request after it.
 */
export function createSpendWriter(options: SpendWriterOptions) {
  const { db, log } = options;
  const intervalMs = options.intervalMs ?? 1000;
  const maxBatch = options.maxBatch ?? 5000;
  const maxRefusedHeld = options.maxRefusedHeld ?? 100_000;
  let current = new Batch(options.masterToken ?? null);
  /** Full batches waiting for the database, oldest first (failed ones stay at the front). */
  const queue: Batch[] = [];
  let flushing: Promise<void> | null = null;
  let failures = 0;
  let written = 0;
  /** Requests whose spend was recorded, and how many of the first of them are surely in the database (all before a flush that completed began). */
  let recorded = 0;
  let writtenThrough = 0;
  let setAsideRequests = 0;
  /** Times in a row the batch at the front of the queue was refused for its content (only it is ever retried). */
  let refusals = 0;
  /** Log rows of refused requests dropped while the database was failing (see `refused`). */
  let droppedRefusals = 0;

  /** The batch as a file (its id keeps a replay exactly-once); null when it could not be written. */
  function saveBatch(batch: Batch, dir: string | undefined, error: unknown): { file: string | null; text: string } {
    const text = JSON.stringify(savedBatch(batch, options.clock.now(), error), null, 1);
    if (!dir) return { file: null, text };
    try {
      mkdirSync(dir, { recursive: true });
      const file = join(dir, `spend-${batch.id}.json`);
      writeWhole(file, text);
      return { file, text };
    } catch {
      return { file: null, text };
    }
  }

  /** A saved batch that cannot be read goes to the set-aside dir, so that it holds back no other at any start. */
  function moveAside(file: string, name: string, error: unknown): void {
    let moved: string | null = null;
    if (options.quarantineDir) {
      try {
        mkdirSync(options.quarantineDir, { recursive: true });
        moved = join(options.quarantineDir, name);
        renameSync(file, moved);
      } catch {
        moved = null;
      }
    }
    log.error("spend saved at the last shutdown cannot be read; set aside, and the next saved files are written", {
      file, error: String(error), moved_to: moved ?? "not moved",
    });
  }

  /** The batch as a file an operator can replay, else in the log. */
  function setAside(batch: Batch, error: unknown): void {
    const { file, text } = saveBatch(batch, options.quarantineDir, error);
    setAsideRequests += batch.size;
    log.error("spend batch refused by the database for its content; set aside so later spend is written", {
      batch: batch.id, requests: batch.size, error: String(error), file: file ?? "none: the batch follows", ...(file ? {} : { saved: text }),
    });
  }

  async function writeOnce(): Promise<void> {
    const through = recorded;
    if (current.size > 0) {
      queue.push(current);
      current = new Batch(options.masterToken ?? null);
    }
    while (queue.length > 0) {
      const batch = queue[0]!;
      const now = options.clock.now();
      batch.writingSince ??= now;
      try {
        await applyBatch(db, batch, now);
        written += batch.size;
      } catch (error) {
        // One that cannot even be encoded fails the same way every time: aside at once.
        refusals = error instanceof UnencodableBatch ? REFUSALS_BEFORE_SET_ASIDE : refusedForContent(error) ? refusals + 1 : 0;
        if (refusals < REFUSALS_BEFORE_SET_ASIDE) throw error;
        setAside(batch, error);
      }
      refusals = 0;
      queue.shift();
    }
    writtenThrough = through;
  }

  let writingSaved: Promise<void> | null = null;
  /** Writes the batches a shutdown saved (see `close`), each exactly once; a file goes once written. */
  function writeSaved(): Promise<void> {
    writingSaved ??= writeSavedFiles().finally(() => {
      writingSaved = null;
    });
    return writingSaved;
  }

  async function writeSavedFiles(): Promise<void> {
    const dir = options.pendingDir;
    if (!dir) return;
    let files: string[];
    try {
      files = readdirSync(dir).filter((name) => name.startsWith("spend-") && name.endsWith(".json")).sort();
    } catch {
      return;
    }
    for (const name of files) {
      const file = join(dir, name);
      let batch: ReturnType<typeof batchFromSaved>;
      try {
        batch = batchFromSaved(JSON.parse(readFileSync(file, "utf8")));
      } catch (error) {
        moveAside(file, name, error);
        continue;
      }
      try {
        const fresh = await applyBatch(db, batch, options.clock.now());
        unlinkSync(file);
        log.info("spend saved at the last shutdown written", { requests: batch.size, file, already_written: !fresh });
      } catch (error) {
        if (error instanceof UnencodableBatch) {
          moveAside(file, name, error);
          continue;
        }
        log.error("spend saved at the last shutdown not written yet; kept for the next start", { file, error: String(error) });
        return;
      }
    }
  }

  function flush(): Promise<void> {
    if (flushing) return flushing;
    flushing = writeOnce()
      .then(() => {
        if (failures > 0) {
          log.info("spend writes resumed", { after_failures: failures, refused_requests_not_logged: droppedRefusals });
          void writeSaved();
        }
        failures = 0;
        droppedRefusals = 0;
        log.clearOnce("spend-flush");
        log.clearOnce("spend-refusals-dropped");
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

  /**
   * Writes everything recorded so far: a flush already under way took only what was recorded when it
   * began, so what came since goes with one more after it.
   */
  function flushAll(): Promise<void> {
    if (!flushing || current.size === 0) return flush();
    return flushing.then(flush);
  }

  return {
    record(event: SpendEvent): void {
      recorded++;
      current.add(event);
      if (current.size >= maxBatch) {
        queue.push(current);
        current = new Batch(options.masterToken ?? null);
      }
    },
    /**
     * The log row of a request refused before any provider (see `Batch.addRefused`), written with the
     * next flush. While the database is failing, such rows beyond `maxRefusedHeld` requests waiting
     * are dropped and counted (they carry no spend): a flood of refusals cannot fill the memory.
     */
    refused(event: SpendEvent): void {
      if (failures > 0 && this.backlog() >= maxRefusedHeld) {
        droppedRefusals++;
        log.once("warn", "spend-refusals-dropped", "database failing: log rows of refused requests dropped until it answers", { held: maxRefusedHeld });
        return;
      }
      current.addRefused(event);
      if (current.size >= maxBatch) {
        queue.push(current);
        current = new Batch(options.masterToken ?? null);
      }
    },
    flush: flushAll,
    /**
     * Drops the spend not yet written for a row an admin reset, from every batch but one being written
     * (that one's spend was there before the reset reached this instance, as a flush just before it would be).
     */
    discard(row: SpendRow): void {
      current.discard(row);
      for (const batch of flushing ? queue.slice(1) : queue) batch.discard(row);
    },
    /** Moves the spend not yet written under a key's old token to its token now, as `discard` drops it. */
    moveKey(from: string, to: string): void {
      current.moveKey(from, to);
      for (const batch of flushing ? queue.slice(1) : queue) batch.moveKey(from, to);
    },
    /** Requests whose spend is not in the database yet. */
    backlog(): number {
      return current.size + queue.reduce((n, batch) => n + batch.size, 0);
    },
    written: () => written,
    /** How far the spend recorded has been written (see `Counters.trackWrites`). */
    progress: { recorded: () => recorded, writtenThrough: () => writtenThrough },
    /** Requests whose spend was refused by the database and saved aside (see `setAside`). */
    setAside: () => setAsideRequests,
    /** Whether the last write failed: spend is waiting for the database, not just for the next batch. */
    failing: () => failures > 0,
    /**
     * Stops the timer and writes everything, retrying until `deadlineMs` passes; what the database
     * still cannot take then is saved to `pendingDir` and written at the next start. Returns the
     * number of requests whose spend is lost (neither written nor saved): 0 unless the disk failed too.
     */
    async close(deadlineMs = 10_000): Promise<number> {
      clearInterval(timer);
      const until = Date.now() + deadlineMs;
      for (;;) {
        // A server that stopped answering (a stall, a cut network) holds a write for ever: the wait for
        // it ends at the deadline too. The batch it held is saved with the rest; were that write to
        // commit after all, its batch id keeps the replay from counting it twice.
        let deadline: Timer | undefined;
        await Promise.race([flush(), new Promise<void>((resolve) => (deadline = setTimeout(resolve, Math.max(0, until - Date.now()))))]);
        clearTimeout(deadline);
        if (this.backlog() === 0) return 0;
        if (Date.now() >= until) break;
        await Bun.sleep(200);
      }
      if (current.size > 0) queue.push(current);
      current = new Batch(options.masterToken ?? null);
      let lost = 0;
      for (const batch of queue.splice(0)) {
        const { file } = saveBatch(batch, options.pendingDir, "database unreachable at shutdown");
        if (file) log.error("spend not written before shutdown: saved, and written at the next start", { requests: batch.size, file });
        else {
          lost += batch.size;
          log.error("spend not written before shutdown and could not be saved", { requests: batch.size, batch: batch.id });
        }
      }
      return lost;
    },
    writeSaved,
    /** What is recorded for a key and not yet written (its batches in memory). */
    unwrittenKeySpend(token: string): number {
      let amount = current.keys.amountOf(token);
      for (const batch of queue) amount += batch.keys.amountOf(token);
      return amount;
    },
  };
}

/**
 * Writes a file whole or not at all: through a temporary name in the same dir, flushed to the disk, then
 * renamed. A full disk otherwise leaves an empty or cut `spend-….json` that no replay can read.
 */
function writeWhole(file: string, text: string): void {
  const draft = `${file}.${process.pid}-${crypto.randomUUID()}.tmp`;
  try {
    const fd = openSync(draft, "w");
    try {
      writeSync(fd, text);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(draft, file);
  } catch (error) {
    try {
      unlinkSync(draft);
    } catch {
      // never made
    }
    throw error;
  }
}
