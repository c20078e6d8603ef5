import { openPglite } from "./pglite";
import { openPostgres } from "./postgres";
import type { Database } from "./types";

export type { CopyRows, Database, Row, Sql } from "./types";
export { discardEarlyPglite } from "./pglite";
export { deferredDatabase } from "./deferred";
export { DataDirInUse, lockDataDir } from "./dir-lock";
export { isDatabaseUnavailable } from "./unavailable";
export { migrate, MIGRATIONS, MigrationError, type Migration } from "./migrations";

export interface DatabaseOptions {
  /** Postgres URL; none means embedded PGlite in `dataDir`. */
  url?: string;
  dataDir: string;
  maxConnections?: number;
}

export async function openDatabase(options: DatabaseOptions): Promise<Database> {
  if (options.url) return openPostgres({ url: options.url, maxConnections: options.maxConnections });
  return openPglite(options.dataDir);
}
