/**
 * What runs before the rest of the program loads (main.ts imports it first).
 *
 * 1. The memory allocator's setting, which it reads from the environment when the process starts:
 *    the gateway keeps memory it has freed for reuse instead of handing it back to the system at
 *    once. Handed back, every page is faulted in again on the next requests, and on a virtual
 *    machine a page fault costs microseconds: measured under load, 0.6–0.9 faults per request
 *    against 0.1, and about 28% fewer requests/s. The process then keeps its peak memory.
 *    Without the setting, the process replaces itself (same PID, arguments and environment) with
 *    one started with it; an operator's own MIMALLOC_PURGE_DELAY is left as it is.
 * 2. When the gateway is going to run on the embedded database and must open it before serving,
 *    the database's thread starts now and compiles its engine while the other modules load. It is a
 *    guess from the command line and the config's text, made without the config parser; main.ts ends
 *    the thread if the loaded config names a Postgres URL. When the gateway will serve first (a new
 *    data directory, or one stopped cleanly: see warm.ts), the thread waits until it listens: on a
 *    small machine it would slow the start it no longer shortens (measured: the other modules took
 *    90–110 ms to load beside it, 47–50 alone).
 */
import { ignoreHangupAcrossExec } from "./hangup"; // first: a SIGHUP while starting is ignored from here on
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { type CliArgs, parseArgs, runsCompiled } from "./cli";
import { startPgliteEarly } from "./db/pglite";
import { DEFAULT_DATA_DIR, WARM_FILE, isNewDataDir } from "./paths";

/** mimalloc's purge delay (ms); -1: freed memory is never decommitted, only reused. */
const PURGE_DELAY = "-1";

/** The command line as main will read it; null when it is bad (main reports it). */
export function commandOf(argv: readonly string[]): CliArgs | null {
  try {
    return parseArgs(argv);
  } catch {
    return null;
  }
}

/** Restarts the process in place with the allocator setting, for the commands that serve. */
function keepFreedMemory(args: CliArgs | null, env: Record<string, string | undefined>): void {
  if (args?.command !== "serve" || !args.config || env.MIMALLOC_PURGE_DELAY !== undefined) return;
  // From source the runtime's own flags and the script's path come first; the compiled binary takes
  // the user's arguments only.
  const argv = runsCompiled() ? [process.argv0, ...process.argv.slice(2)] : [process.argv0, ...process.execArgv, ...process.argv.slice(1)];
  if (!process.execve) return;
  const restoreHangup = ignoreHangupAcrossExec();
  try {
    process.execve(process.execPath, argv, { ...env, MIMALLOC_PURGE_DELAY: PURGE_DELAY });
  } catch {
    // Not replaceable here: run with the allocator's defaults.
    restoreHangup();
  }
}

function configText(args: CliArgs | null): string | null {
  if (!args || args.command === "help" || args.command === "version" || !args.config) return null;
  try {
    return readFileSync(args.config, "utf8");
  } catch {
    return null; // main reports an unreadable config
  }
}

export function likelyPglite(args: CliArgs | null, env: Record<string, string | undefined>): boolean {
  const text = configText(args);
  return !env.DATABASE_URL && text !== null && !/^\s*database_url\s*:/m.test(text);
}

/** The embedded database's directory as the config's text names it; null when it is not a plain path. */
export function dataDirOf(text: string): string | null {
  const match = /^\s*data_dir\s*:[ \t]*(.*?)[ \t]*(?:#.*)?$/m.exec(text);
  if (!match) return DEFAULT_DATA_DIR;
  const value = match[1]!.replace(/^(["'])(.*)\1$/, "$2");
  return value === "" || value.startsWith("os.environ/") ? null : value;
}

/**
 * Whether the embedded database will not be opened at once (see warm.ts): a start serves first on a
 * new directory or a saved state, and `migrate` has nothing to do on a saved state.
 */
export function likelyOpenedLater(args: CliArgs | null): boolean {
  const text = configText(args);
  const dataDir = text !== null ? dataDirOf(text) : null;
  if (dataDir === null) return false;
  const saved = existsSync(join(dataDir, WARM_FILE));
  if (args?.command === "migrate") return saved;
  return saved || isNewDataDir(dataDir);
}

export { hangupWhileStarting, reportHangupsTo } from "./hangup";

const args = commandOf(process.argv.slice(2));
keepFreedMemory(args, process.env);
if (likelyPglite(args, process.env) && !likelyOpenedLater(args)) startPgliteEarly();
