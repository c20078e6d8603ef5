/**
 * Builds the embedded database template: a fresh PGlite data directory with every migration applied,
 * packed as a tarball the binary embeds. A first start copies it instead of running initdb (about a
 * second and a half of WebAssembly), so even a cold start is quick.
 */
import { PGlite } from "@electric-sql/pglite";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { migrate } from "../src/db/migrations";
import type { Sql } from "../src/db/types";

const out = join(import.meta.dir, "../build/pglite-template.tar.gz");
const db = await PGlite.create();
const wrap = (handle: Pick<PGlite, "query" | "exec">): Sql => ({
  query: async (text, params = []) => (await handle.query<any>(text, params as any[])).rows,
  exec: async (text) => void (await handle.exec(text)),
  transaction: (fn) => db.transaction((tx) => fn(wrap(tx))),
  copyFrom: () => Promise.reject(new Error("migrations do not load rows")),
});
await migrate(wrap(db));
const tarball = await db.dumpDataDir("gzip");
await db.close();
mkdirSync(join(import.meta.dir, "../build"), { recursive: true });
writeFileSync(out, new Uint8Array(await tarball.arrayBuffer()));
process.stdout.write(`embedded database template: ${out} (${Math.round(tarball.size / 1024)} KiB)\n`);
