/**
 * Serving before the embedded database is open. Opening PGlite takes most of a start (compiling its
 * WebAssembly, then starting Postgres inside it: 0.6–0.9 s on a small machine), and only this
 * process ever opens its data directory. So when the gateway knows what the database holds, it
 * serves at once and the database opens behind it:
 * - a new data directory holds the built-in template: no keys, no customers, no spend;
 * - a directory this gateway stopped cleanly holds what it saved at the stop: the keys and customers
 *   it had cached, read afresh after the last spend was written, and the gateway's own spend.
 * Whatever else needs the database (an unknown key, an admin call, a spend flush) waits until it is
 * open. The saved file is removed once the gateway listens, so a run that crashes leaves nothing
 * behind (a start that cannot listen leaves it for the next), and it carries a fingerprint of the closed database's control file, which Postgres rewrites on every
 * start and stop: a directory opened by anything else since, or restored from a backup, has another.
 */
import { createHash } from "node:crypto";
import { readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type Json, ROW_QUERIES, date, loadCustomerRows, loadPrincipalRows } from "./auth";
import { type Database, MIGRATIONS } from "./db";
import { WARM_FILE, hasPendingSpend, isNewDataDir } from "./paths";
import type { GatewayState } from "./proxy";

export interface WarmState {
  gateway: GatewayState;
  principals: Json[];
  customers: Json[];
}

/** Bumped when what is saved changes shape. */
const FORMAT = 1;
/** Keys read per statement when saving. */
const CHUNK = 5000;
/**
 * Keys (and customers) kept, the most recently loaded: reading them back is on the way to serving,
 * about 9 ms per thousand keys (a governed key's row is 1.5 KB). Others are read once the database is open.
 */
export const WARM_KEYS = 10_000;

function fingerprint(dataDir: string): string | null {
  try {
    return createHash("sha256").update(readFileSync(join(dataDir, "global", "pg_control"))).digest("hex");
  } catch {
    return null;
  }
}

/**
 * Which build saved it: another build may have another schema or read the rows differently. The
 * migrations' text and the queries that read the rows are part of it, so a build that changes either
 * opens the database first (and stops there on a migration error, before serving anything).
 */
function build(version: string): string {
  const shape = createHash("sha256").update(JSON.stringify([MIGRATIONS, ROW_QUERIES])).digest("hex").slice(0, 16);
  return `${version}/${FORMAT}/${shape}`;
}

/** The saved state when this build saved it and the database is as it left it; null otherwise. */
function validSaved(dataDir: string, version: string): any {
  let text: string;
  try {
    text = readFileSync(join(dataDir, WARM_FILE), "utf8");
  } catch {
    return null;
  }
  try {
    const saved = JSON.parse(text);
    return saved.build === build(version) && saved.fingerprint === fingerprint(dataDir) ? saved : null;
  } catch {
    return null; // unreadable: the database is opened first, as without it
  }
}

/**
 * Whether the database is known to be migrated without opening it: this build stopped it cleanly
 * (it migrates at start) and nothing has opened it since. `litegate migrate` before each start (as
 * the systemd unit does) then leaves the saved state valid for the start that follows.
 */
export function migratedAtStop(dataDir: string, version: string): boolean {
  return validSaved(dataDir, version) !== null;
}

/**
 * What the database in `dataDir` is known to hold without opening it, or null: open it first. The
 * caller holds the directory (see db/dir-lock.ts), which also made it. A saved state that can be used
 * stays until `dropWarmState`; one that cannot goes now.
 */
export function readWarmState(dataDir: string, version: string): WarmState | null {
  // Spend saved at a shutdown is not in what was saved: the database opens first and takes it, so that
  // budgets count it from the first request.
  if (hasPendingSpend(dataDir)) {
    rmSync(join(dataDir, WARM_FILE), { force: true });
    return null;
  }
  if (isNewDataDir(dataDir)) {
    // The gateway's budget periods are anchored on its creation, now (a null anchor would move with the clock).
    return { gateway: { spend: 0, budgetResetAt: null, createdAt: new Date() }, principals: [], customers: [] };
  }
  const valid = validSaved(dataDir, version);
  if (!valid) {
    rmSync(join(dataDir, WARM_FILE), { force: true });
    return null;
  }
  const { gateway: g, principals, customers } = valid;
  return {
    gateway: { spend: Number(g.spend), budgetResetAt: date(g.budgetResetAt), createdAt: date(g.createdAt), anchorAt: date(g.anchorAt) },
    principals,
    customers,
  };
}

/**
 * Removes the saved state once the gateway listens: the database then opens, which makes it stale, and
 * a crash must not leave it. Until then the database is unopened and the state still good for a start.
 */
export function dropWarmState(dataDir: string): void {
  rmSync(join(dataDir, WARM_FILE), { force: true });
}

async function rowsInChunks(ids: string[], read: (chunk: string[]) => Promise<Json[]>): Promise<Json[]> {
  const rows: Json[] = [];
  for (let i = 0; i < ids.length; i += CHUNK) rows.push(...(await read(ids.slice(i, i + CHUNK))));
  return rows;
}

/**
 * At a clean stop, after the last spend is written: reads the cached keys and customers and the
 * gateway's spend afresh, closes the database, and saves them with the closed database's fingerprint.
 * The database is closed whatever happens; a failure to save only costs the next start its head start.
 */
export async function closeAndSaveWarmState(
  db: Database,
  dataDir: string,
  version: string,
  known: { tokens: string[]; customers: string[] },
  gatewayState: (db: Database) => Promise<GatewayState>,
): Promise<void> {
  let state: WarmState;
  try {
    state = {
      principals: await rowsInChunks(known.tokens, (chunk) => loadPrincipalRows(db, chunk)),
      customers: await rowsInChunks(known.customers, (chunk) => loadCustomerRows(db, chunk)),
      gateway: await gatewayState(db),
    };
  } finally {
    await db.close();
  }
  const print = fingerprint(dataDir);
  if (!print) return;
  const path = join(dataDir, WARM_FILE);
  writeFileSync(`${path}.tmp`, JSON.stringify({ build: build(version), fingerprint: print, ...state }), { mode: 0o600 });
  renameSync(`${path}.tmp`, path);
}
