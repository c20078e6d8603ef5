/** Names of files in the data directory, in a module light enough for the first line to import (see early.ts). */

export const DEFAULT_DATA_DIR = "./litegate-data";
/** What a clean stop leaves for the next start to serve with (see warm.ts). */
export const WARM_FILE = "litegate-warm.json";
/** Held by the process that has the embedded database open (see db/dir-lock.ts). */
export const LOCK_FILE = "litegate.lock";
