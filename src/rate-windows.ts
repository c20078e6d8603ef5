/**
 * Rate windows (rpm, tpm) carried over a restart. Without Redis they live only in this process: a stop
 * and a start within one minute would let a key make its rpm_limit's requests a second time in that
 * minute. A clean stop (SIGTERM, SIGINT), once the requests in flight have ended, saves the windows
 * still running to `data_dir/litegate-windows.json`; the next start counts on from those its clock is
 * still in, and removes the file once it listens (a run that is killed leaves none, one that cannot
 * listen leaves it for the next). A file of its own rather than part of litegate-warm.json: that one
 * is for the embedded database alone and for the build that wrote it, while a window holds whatever the
 * database or the build. Budgets need nothing here: their counters are made from the database.
 */
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { WINDOWS_FILE } from "./paths";

/** Bumped when what is saved changes shape: a file of another shape is not read. */
const FORMAT = 1;
/**
 * Windows saved of each kind (rpm, tpm), the highest counts: about 100 bytes each, so the next start
 * reads at most 5 MB on its way to serving (about 40 ms) however many keys were busy.
 */
export const SAVED_WINDOWS_PER_KIND = 25_000;

export type SavedWindow = [key: string, count: number];

/** Saves `windows` for the next start (none: nothing is written). Written whole or not at all. */
export function saveRateWindows(dataDir: string, windows: readonly SavedWindow[]): void {
  if (windows.length === 0) return;
  mkdirSync(dataDir, { recursive: true });
  const path = join(dataDir, WINDOWS_FILE);
  writeFileSync(`${path}.tmp`, JSON.stringify({ format: FORMAT, windows }), { mode: 0o600 });
  renameSync(`${path}.tmp`, path);
}

const isWindow = (entry: unknown): entry is SavedWindow =>
  Array.isArray(entry) && entry.length === 2 && typeof entry[0] === "string" && typeof entry[1] === "number" && Number.isFinite(entry[1]) && entry[1] > 0;

/**
 * The windows the last clean stop saved (none when there is no file). A file that cannot be read (cut,
 * not JSON, another format) is said in `warn`, and the windows start afresh as they did before any was saved.
 */
export function readRateWindows(dataDir: string, warn: (message: string) => void): SavedWindow[] {
  let text: string;
  try {
    text = readFileSync(join(dataDir, WINDOWS_FILE), "utf8");
  } catch {
    return [];
  }
  let saved: { format?: unknown; windows?: unknown } | null = null;
  try {
    saved = JSON.parse(text);
  } catch {
    // said below
  }
  if (saved?.format !== FORMAT || !Array.isArray(saved.windows)) {
    warn(`${join(dataDir, WINDOWS_FILE)} could not be read: the rate windows (rpm, tpm) of the last run start afresh`);
    return [];
  }
  return saved.windows.filter(isWindow).slice(0, 2 * SAVED_WINDOWS_PER_KIND);
}

/** Removes the saved windows once the gateway listens: they are counted in this run from then on. */
export function dropRateWindows(dataDir: string): void {
  rmSync(join(dataDir, WINDOWS_FILE), { force: true });
}
