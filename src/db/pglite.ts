import { runsCompiled } from "../cli";
import type { Reply, Request } from "./pglite-protocol";
import type { CopyRows, Database, Row, Sql } from "./types";

type WithoutId<T> = T extends unknown ? Omit<T, "id"> : never;
type Pending = { resolve: (reply: Extract<Reply, { ok: true }>) => void; reject: (error: Error) => void };

/** An error from the embedded database, with its SQLSTATE code like postgres.js errors carry. */
class DatabaseError extends Error {
  constructor(message: string, readonly code?: string) {
    super(message);
  }
}

/**
 * The worker's entry point: in the compiled binary it is embedded as a second entry point, named
 * relative to src/ (see the build script); from source it sits beside this file.
 */
function workerEntry(): string {
  return runsCompiled() ? "./db/pglite-worker.ts" : new URL("./pglite-worker.ts", import.meta.url).href;
}

/** The database's thread when it was started before the program had loaded, not yet claimed. */
let early: Worker | null = null;

/**
 * Starts the embedded database's thread at once, so that its WebAssembly compiles while the rest of
 * the program loads (about a tenth of a second). Called before anything else when the gateway will
 * most likely run on PGlite; `discardEarlyPglite` ends it if the config says otherwise.
 */
export function startPgliteEarly(): void {
  early ??= new Worker(workerEntry());
}

export function discardEarlyPglite(): void {
  early?.terminate();
  early = null;
}

/**
 * Embedded Postgres (PGlite) in a worker thread of its own, behind the same interface as real
 * Postgres. Persisted in `dataDir`.
 */
export async function openPglite(dataDir: string): Promise<Database> {
  const worker = early ?? new Worker(workerEntry());
  early = null;
  const pending = new Map<number, Pending>();
  let nextId = 1;
  let statements = 0;
  let closed = false;
  worker.onmessage = (event: MessageEvent<Reply>) => {
    const message = event.data;
    const waiter = pending.get(message.id);
    if (!waiter) return;
    pending.delete(message.id);
    if (message.ok) waiter.resolve(message);
    else waiter.reject(new DatabaseError(message.message, message.code));
  };
  worker.onerror = (event) => {
    for (const waiter of pending.values()) waiter.reject(new Error(`embedded database worker failed: ${workerFailure(event.message)}`));
    pending.clear();
  };
  const send = (request: WithoutId<Request>) =>
    new Promise<Extract<Reply, { ok: true }>>((resolve, reject) => {
      if (closed && request.kind !== "close") return reject(new Error("the embedded database is closed"));
      const id = nextId++;
      pending.set(id, { resolve, reject });
      worker.postMessage({ ...request, id });
    });

  await send({ kind: "open", dataDir });

  const wrap = (tx?: number): Sql => ({
    async query<T extends Row>(text: string, params: readonly unknown[] = []) {
      statements++;
      return (await send({ kind: "query", text, params: [...params], tx })).rows as T[];
    },
    async exec(text: string) {
      statements++;
      await send({ kind: "exec", text, tx });
    },
    async copyFrom(table: string, columns: readonly string[], rows: CopyRows) {
      statements++;
      await send({ kind: "copy", table, columns: [...columns], rows, tx });
    },
    async transaction<T>(fn: (sql: Sql) => Promise<T>): Promise<T> {
      // One connection: a nested transaction runs inside the outer one.
      if (tx !== undefined) return fn(wrap(tx));
      const id = (await send({ kind: "begin" })).tx!;
      try {
        const result = await fn(wrap(id));
        await send({ kind: "end", tx: id, commit: true });
        return result;
      } catch (error) {
        await send({ kind: "end", tx: id, commit: false }).catch(() => {});
        throw error;
      }
    },
  });

  return {
    kind: "pglite",
    ...wrap(),
    statements: () => statements,
    async ping() {
      if (closed) return false;
      try {
        await send({ kind: "query", text: "select 1", params: [] });
        return true;
      } catch {
        return false;
      }
    },
    async close() {
      if (closed) return;
      await send({ kind: "close" }).catch(() => {});
      closed = true;
      worker.terminate();
    },
  };
}

/**
 * The error line of an uncaught worker error. The runtime's message is a code frame (a line of the
 * engine's minified source), the error, then its stack: only the error means anything to an operator.
 */
export function workerFailure(message: string): string {
  const lines = String(message ?? "").split("\n").map((line) => line.trim());
  return lines.find((line) => /^[A-Za-z]*Error\b.*:/.test(line)) ?? lines.find((line) => /\w/.test(line) && !/^\d+ \|/.test(line) && !line.startsWith("at ")) ?? "unknown error";
}
