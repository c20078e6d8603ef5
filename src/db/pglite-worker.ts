/**
 * The worker thread that owns the embedded database: its WebAssembly Postgres then never runs on the
 * thread that serves requests (a spend flush used to stall them for tens of milliseconds).
 */
import type { PGlite, Transaction } from "@electric-sql/pglite";
import { compilePglite, startPglite } from "./pglite-engine";
import type { Reply, Request } from "./pglite-protocol";

declare const self: Worker;

// Compiling starts as the thread starts, before the gateway asks for the database: the thread may be
// started early (see ../early.ts), while the rest of the program loads. A failure is reported on "open".
const compiled = compilePglite();
compiled.catch(() => {});

let db: PGlite | null = null;
let nextTx = 1;
/** Open transactions: their handle, and how to end them. */
const open = new Map<number, { tx: Transaction; end: (commit: boolean) => void; done: Promise<void> }>();

const reply = (message: Reply) => self.postMessage(message);

function handleFor(tx: number | undefined): PGlite | Transaction {
  if (tx === undefined) return db!;
  const entry = open.get(tx);
  if (!entry) throw new Error(`transaction ${tx} is not open`);
  return entry.tx;
}

async function handle(message: Request): Promise<void> {
  switch (message.kind) {
    case "open":
      db = await startPglite(message.dataDir, compiled);
      reply({ id: message.id, ok: true });
      setTimeout(() => Bun.gc(true), 0); // the engine's files, read to start it, are garbage now
      return;
    case "query": {
      const result = await handleFor(message.tx).query(message.text, message.params as any[]);
      return reply({ id: message.id, ok: true, rows: result.rows });
    }
    case "exec":
      await handleFor(message.tx).exec(message.text);
      return reply({ id: message.id, ok: true });
    case "copy":
      // PGlite reads COPY input from a blob it names /dev/blob.
      await handleFor(message.tx).query(`copy ${message.table} (${message.columns.join(", ")}) from '/dev/blob'`, [], { blob: new Blob(typeof message.rows === "string" ? [message.rows] : [...message.rows]) });
      return reply({ id: message.id, ok: true });
    case "begin": {
      const tx = nextTx++;
      let started!: (entry: { tx: Transaction; end: (commit: boolean) => void }) => void;
      let failed!: (error: unknown) => void;
      const ready = new Promise<{ tx: Transaction; end: (commit: boolean) => void }>((resolve, reject) => {
        started = resolve;
        failed = reject;
      });
      // The transaction stays open until the gateway sends "end": commit resolves it, rollback throws.
      const done = db!.transaction(async (handle) => {
        const ended = new Promise<boolean>((resolve) => started({ tx: handle, end: resolve }));
        if (!(await ended)) throw new RollbackRequested();
      }).then(() => undefined, (error) => {
        failed(error);
        if (!(error instanceof RollbackRequested)) throw error;
      });
      done.catch(() => {}); // awaited by "end"; a failed begin is reported through `ready`
      open.set(tx, { ...(await ready), done });
      return reply({ id: message.id, ok: true, tx });
    }
    case "end": {
      const entry = open.get(message.tx);
      if (!entry) throw new Error(`transaction ${message.tx} is not open`);
      open.delete(message.tx);
      entry.end(message.commit);
      await entry.done; // a failed commit reaches the gateway as an error
      return reply({ id: message.id, ok: true });
    }
    case "close":
      await db?.close();
      db = null;
      return reply({ id: message.id, ok: true });
  }
}

class RollbackRequested extends Error {}

// Spend logs arrive here as large blocks of text that the engine copies into its own memory: left
// to itself this thread's collector lets them pile up to hundreds of megabytes. A collection a second
// on this thread keeps the process small and costs the request thread nothing.
let copied = false;
setInterval(() => {
  if (!copied) return;
  copied = false;
  Bun.gc(true);
}, 1000);

self.onmessage = (event: MessageEvent<Request>) => {
  if (event.data.kind === "copy") copied = true;
  handle(event.data).catch((error: any) =>
    reply({ id: event.data.id, ok: false, message: error?.message ?? String(error), code: error?.code }));
};
