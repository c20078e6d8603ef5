import { randomUUID } from "node:crypto";
import { linkSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { LOCK_FILE } from "../paths";

export class DataDirInUse extends Error {
  constructor(dataDir: string, pid: number) {
    super(`the embedded database in ${dataDir} is in use by another litegate (pid ${pid}); stop it first, or give this one another data_dir`);
  }
}

/**
 * A process's state letter and start time (clock ticks since boot) from its `/proc/<pid>/stat` line.
 * The command name, in parentheses, may hold spaces and parentheses: the fields are counted from its last `)`.
 */
export function parseStat(line: string): { state: string; startTime: string } | null {
  const fields = line.slice(line.lastIndexOf(")") + 2).split(" ");
  const [state, startTime] = [fields[0], fields[19]];
  return state && startTime ? { state, startTime } : null;
}

function statOf(pid: number): { state: string; startTime: string } | null {
  try {
    return parseStat(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return null;
  }
}

/**
 * Whether the process a lock names is still the one that took it (a PID can be reused). A zombie (state
 * Z: it ended, its parent has not collected its status yet, as right after a `kill -9`) or a dead one
 * (X) holds nothing.
 */
function holderAlive(pid: number, startTime: string | undefined): boolean {
  if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid) return false; // our PID: a previous life of this process
  const stat = statOf(pid);
  if (stat !== null) return stat.state !== "Z" && stat.state !== "X" && (startTime === undefined || stat.startTime === startTime);
  try {
    process.kill(pid, 0); // no /proc: whether the PID exists at all
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * Takes the embedded database's directory for this process, or throws `DataDirInUse`. PGlite keeps no
 * lock of its own: two processes on one directory would corrupt it, and a start that serves from a
 * saved state counts on no other process having opened it (see ../warm.ts). The lock is a file made
 * with an exclusive create, holding the owner's PID and start time; one whose process is gone (a
 * crash, `kill -9`) is taken over, by one start only when several race for it. Returns the release,
 * for a clean stop.
 */
export function lockDataDir(dataDir: string): () => void {
  mkdirSync(dataDir, { recursive: true });
  const path = join(dataDir, LOCK_FILE);
  const mine = `${process.pid} ${statOf(process.pid)?.startTime ?? ""}\n`;
  // Written whole under a name of its own, then linked in place (a link is never made over a file): a
  // lock seen half written, empty, would pass for one left by a crash and be taken over.
  const draft = sideName(path);
  writeFileSync(draft, mine, { mode: 0o600 });
  try {
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        linkSync(draft, path);
        return () => {
          try {
            if (readFileSync(path, "utf8") === mine) rmSync(path);
          } catch {
            // already gone
          }
        };
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
      }
      let held: string;
      try {
        held = readFileSync(path, "utf8");
      } catch {
        continue; // released meanwhile
      }
      const [pid, startTime] = held.trim().split(" ");
      if (holderAlive(Number(pid), startTime || undefined)) throw new DataDirInUse(dataDir, Number(pid));
      removeStale(path, held);
    }
  } finally {
    rmSync(draft, { force: true });
  }
  throw new Error(`could not lock ${dataDir}: ${path} keeps coming back`);
}

/** A name beside the lock that no other process uses. */
const sideName = (path: string) => `${path}.${process.pid}-${randomUUID()}`;

/**
 * Removes the lock `held`, left by a process that is gone, unless another start took it over since it
 * was read: removed and made again at once, two starts racing on it would both think they hold it. So it
 * is moved aside under a name of this process's own (a rename moves a file for one process only), and
 * what was moved is checked: a lock other than the one read (the winner's) is put back. Either way the
 * caller tries again from the start.
 */
function removeStale(path: string, held: string): void {
  const aside = sideName(path);
  try {
    renameSync(path, aside);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return; // moved by another start, or released
    throw error;
  }
  try {
    if (readFileSync(aside, "utf8") !== held) linkSync(aside, path); // back, unless made again meanwhile
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
  } finally {
    rmSync(aside, { force: true });
  }
}
