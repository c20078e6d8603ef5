import { PGlite } from "@electric-sql/pglite";
import wasmPath from "../../node_modules/@electric-sql/pglite/dist/pglite.wasm" with { type: "file" };
import dataPath from "../../node_modules/@electric-sql/pglite/dist/pglite.data" with { type: "file" };
import templatePath from "../../build/pglite-template.tar.gz" with { type: "file" };
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join, normalize } from "node:path";
import { PG_VERSION_FILE, isNewDataDir } from "../paths";

/** The engine's WebAssembly, compiled: the longest step of a start, so it is begun first. */
export function compilePglite(): Promise<WebAssembly.Module> {
  return Bun.file(wasmPath).arrayBuffer().then((bytes) => WebAssembly.compile(bytes));
}

/**
 * Embedded Postgres (PGlite), persisted in `dataDir`. Its wasm and data files are embedded in the
 * binary so it runs with nothing beside it; a new directory starts from the built-in template
 * (initialised and migrated at build time).
 */
export async function startPglite(dataDir: string, compiled: Promise<WebAssembly.Module>): Promise<PGlite> {
  mkdirSync(dataDir, { recursive: true });
  const fresh = isNewDataDir(dataDir);
  // No initdb: a new directory starts from the template, already initialised and migrated.
  const [pgliteWasmModule, fsBundle] = await Promise.all([
    compiled,
    Bun.file(dataPath).arrayBuffer().then((bytes) => new Blob([bytes])),
    fresh ? Bun.file(templatePath).bytes().then((bytes) => unpackTemplate(bytes, dataDir)) : undefined,
  ]);
  return PGlite.create({
    dataDir, pgliteWasmModule, fsBundle,
    // A gateway's embedded database is small: modest buffers keep the process's memory modest too.
    postgresqlconf: ["shared_buffers = 16MB", "wal_buffers = 1MB", "maintenance_work_mem = 16MB", "work_mem = 4MB"],
  });
}

const latin1 = new TextDecoder("latin1");
const field = (header: Uint8Array, from: number, to: number) => latin1.decode(header.subarray(from, to)).replace(/\0.*$/s, "").trim();

/**
 * Writes the template (a gzipped ustar archive of directories and regular files) into `dataDir` with
 * plain file writes: PGlite's own loader extracts it through its WebAssembly file system, several
 * times slower. PG_VERSION goes last, so a start interrupted halfway unpacks again next time.
 */
export function unpackTemplate(gzipped: Uint8Array<ArrayBuffer>, dataDir: string): void {
  const tar = Bun.gunzipSync(gzipped);
  let version: { path: string; bytes: Uint8Array; mode: number } | null = null;
  for (let offset = 0; offset + 512 <= tar.length;) {
    const header = tar.subarray(offset, offset + 512);
    const name = field(header, 345, 500) + field(header, 0, 100);
    if (name === "") break;
    const size = Number.parseInt(field(header, 124, 136) || "0", 8);
    const mode = Number.parseInt(field(header, 100, 108) || "0", 8) || 0o600;
    const type = String.fromCharCode(header[156]!);
    const relative = normalize(name).replace(/^\/+/, "");
    if (relative.startsWith("..")) throw new Error(`database template: entry outside the data directory: ${name}`);
    const path = join(dataDir, relative);
    const bytes = tar.subarray(offset + 512, offset + 512 + size);
    if (type === "5") mkdirSync(path, { recursive: true, mode });
    else if (type === "0" || type === "\0") {
      mkdirSync(dirname(path), { recursive: true });
      if (relative === PG_VERSION_FILE) version = { path, bytes, mode };
      else writeFileSync(path, bytes, { mode });
    } else throw new Error(`database template: unexpected entry type ${JSON.stringify(type)} for ${name}`);
    offset += 512 + Math.ceil(size / 512) * 512;
  }
  if (!version) throw new Error("database template: no PG_VERSION");
  writeFileSync(version.path, version.bytes, { mode: version.mode });
}
