/** Names of files in the data directory, in a module light enough for the first line to import (see early.ts). */
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";

export const DEFAULT_DATA_DIR = "./litegate-data";
/** What a clean stop leaves for the next start to serve with (see warm.ts). */
export const WARM_FILE = "litegate-warm.json";
/** The rate windows a clean stop without Redis leaves for the next start (see rate-windows.ts). */
export const WINDOWS_FILE = "litegate-windows.json";
/** Held by the process that has the embedded database open (see db/dir-lock.ts). */
export const LOCK_FILE = "litegate.lock";
/** Never removed: the kernel's lock on it is what is held (see db/kernel-lock.ts), and it must stay one file. */
export const KERNEL_LOCK_FILE = "litegate.flock";
/** Written last when the embedded database is created from its template (see db/pglite-engine.ts). */
export const PG_VERSION_FILE = "PG_VERSION";

/** Whether the embedded database has yet to be created in `dataDir`. */
export function isNewDataDir(dataDir: string): boolean {
  return !existsSync(join(dataDir, PG_VERSION_FILE));
}

/** Where spend a shutdown could not write waits for the next start (see spend/writer.ts). */
export const SPEND_PENDING_DIR = "spend-pending";

/** Whether spend a shutdown could not write waits in `dataDir`. */
export function hasPendingSpend(dataDir: string): boolean {
  try {
    return readdirSync(join(dataDir, SPEND_PENDING_DIR)).some((name) => name.startsWith("spend-") && name.endsWith(".json"));
  } catch {
    return false;
  }
}
