import type { CopyRows, Database, Row, Sql } from "./types";

/**
 * A database still opening, usable at once: every statement waits until it is open, then runs. The
 * gateway serves what it already knows meanwhile (see ../warm.ts); whatever needs the database waits
 * for it, as it would for a slow query. If opening fails, every statement fails with that error.
 */
export function deferredDatabase(opening: Promise<Database>, kind: Database["kind"]): Database {
  let db: Database | null = null;
  // The caller handles a failure to open; statements see it as the database being unreachable (08006:
  // connection failure), which requests and admin calls answer 503, not as an error of their own.
  const ready = opening.then(
    (opened) => (db = opened),
    (error: unknown) => {
      throw Object.assign(new Error(`the database could not be opened: ${error instanceof Error ? error.message : String(error)}`), { code: "08006" });
    },
  );
  ready.catch(() => {});
  const open = () => db ?? ready;
  const sql: Sql = {
    async query<T extends Row>(text: string, params?: readonly unknown[]) {
      return (await open()).query<T>(text, params);
    },
    async exec(text: string) {
      return (await open()).exec(text);
    },
    async copyFrom(table: string, columns: readonly string[], rows: CopyRows) {
      return (await open()).copyFrom(table, columns, rows);
    },
    async transaction<T>(fn: (tx: Sql) => Promise<T>) {
      return (await open()).transaction(fn);
    },
  };
  return {
    kind,
    ...sql,
    statements: () => db?.statements() ?? 0,
    opening: () => db === null,
    async ping(timeoutMs = 1000) {
      if (db) return db.ping(timeoutMs);
      const opened = await Promise.race([ready.catch(() => null), Bun.sleep(timeoutMs).then(() => null)]);
      return opened ? opened.ping(timeoutMs) : false;
    },
    async close() {
      const opened = await ready.catch(() => null);
      await opened?.close();
    },
  };
}
