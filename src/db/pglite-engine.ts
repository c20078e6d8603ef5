import { PGlite } from "@electric-sql/pglite";
import wasmPath from "../../node_modules/@electric-sql/pglite/dist/pglite.wasm" with { type: "file" };
import dataPath from "../../node_modules/@electric-sql/pglite/dist/pglite.data" with { type: "file" };
import templatePath from "../../build/pglite-template.tar.gz" with { type: "file" };
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";

/**
 * Embedded Postgres (PGlite), persisted in `dataDir`. Its wasm and data files are embedded in the
 * binary so it runs with nothing beside it; a new directory starts from the built-in template
 * (initialised and migrated at build time).
 */
export async function startPglite(dataDir: string): Promise<PGlite> {
  mkdirSync(dataDir, { recursive: true });
  const fresh = !existsSync(join(dataDir, "PG_VERSION"));
  // No initdb: a new directory starts from the template, already initialised and migrated.
  const [pgliteWasmModule, fsBundle, loadDataDir] = await Promise.all([
    Bun.file(wasmPath).arrayBuffer().then((bytes) => WebAssembly.compile(bytes)),
    Bun.file(dataPath).arrayBuffer().then((bytes) => new Blob([bytes])),
    fresh ? Bun.file(templatePath).arrayBuffer().then((bytes) => new Blob([bytes])) : undefined,
  ]);
  return PGlite.create({
    dataDir, pgliteWasmModule, fsBundle, loadDataDir,
    // A gateway's embedded database is small: modest buffers keep the process's memory modest too.
    postgresqlconf: ["shared_buffers = 16MB", "wal_buffers = 1MB", "maintenance_work_mem = 16MB", "work_mem = 4MB"],
  });
}
