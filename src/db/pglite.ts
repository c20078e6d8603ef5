import { PGlite, type Transaction } from "@electric-sql/pglite";
import wasmPath from "../../node_modules/@electric-sql/pglite/dist/pglite.wasm" with { type: "file" };
import initdbPath from "../../node_modules/@electric-sql/pglite/dist/initdb.wasm" with { type: "file" };
import dataPath from "../../node_modules/@electric-sql/pglite/dist/pglite.data" with { type: "file" };
import templatePath from "../../build/pglite-template.tar.gz" with { type: "file" };
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import type { Database, Row, Sql } from "./types";

/**
 * Embedded Postgres (PGlite), persisted in `dataDir`. Its wasm and data files are embedded in the
 * binary so it runs with nothing beside it.
 */
export async function openPglite(dataDir: string): Promise<Database> {
  mkdirSync(dataDir, { recursive: true });
  // A new directory starts from the built-in template (initialised and migrated at build time).
  const fresh = !existsSync(join(dataDir, "PG_VERSION"));
  const [pgliteWasmModule, initdbWasmModule, fsBundle, loadDataDir] = await Promise.all([
    Bun.file(wasmPath).arrayBuffer().then((bytes) => WebAssembly.compile(bytes)),
    Bun.file(initdbPath).arrayBuffer().then((bytes) => WebAssembly.compile(bytes)),
    Bun.file(dataPath).arrayBuffer().then((bytes) => new Blob([bytes])),
    fresh ? Bun.file(templatePath).arrayBuffer().then((bytes) => new Blob([bytes])) : undefined,
  ]);
  const db = await PGlite.create({
    dataDir, pgliteWasmModule, initdbWasmModule, fsBundle, loadDataDir,
    // A gateway's embedded database is small: modest buffers keep the process's memory modest too.
    postgresqlconf: ["shared_buffers = 16MB", "wal_buffers = 1MB", "maintenance_work_mem = 16MB", "work_mem = 4MB"],
  });
  let statements = 0;
  let closed = false;

  const wrap = (handle: PGlite | Transaction): Sql => ({
    async query<T extends Row>(text: string, params: readonly unknown[] = []) {
      statements++;
      const result = await handle.query<T>(text, params as any[]);
      return result.rows;
    },
    async exec(text: string) {
      statements++;
      await handle.exec(text);
    },
    transaction<T>(fn: (tx: Sql) => Promise<T>): Promise<T> {
      // PGlite has one connection: a nested transaction runs inside the outer one.
      if (handle !== db) return fn(wrap(handle));
      return db.transaction((tx) => fn(wrap(tx)));
    },
  });

  return {
    kind: "pglite",
    ...wrap(db),
    statements: () => statements,
    async ping() {
      if (closed) return false;
      try {
        await db.query("select 1");
        return true;
      } catch {
        return false;
      }
    },
    async close() {
      if (closed) return;
      closed = true;
      await db.close();
    },
  };
}
