import { randomUUID } from "node:crypto";
import { linkSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { KERNEL_LOCK_FILE, LOCK_FILE } from "../paths";
import { takeKernelLock } from "./kernel-lock";

export class DataDirInUse extends Error {
  /** `holder`: the other process's PID, or what is known of it when its PID means nothing here. */
  constructor(dataDir: string, holder: number | string) {
    super(`the embedded database in ${dataDir} is in use by another litegate (${typeof holder === "number" ? `pid ${holder}` : holder}); stop it first, or give this one another data_dir`);
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
 *
 * A PID means nothing across PID namespaces (two containers sharing a volume, each litegate PID 1), so
 * first the kernel's lock on `KERNEL_LOCK_FILE` is taken, held for the process's life: where the kernel
 * gives none (no C library at hand, a filesystem without locks) the PID alone decides, as `warn` says.
 */
export function lockDataDir(dataDir: string, warn: (message: string) => void = () => {}, kernelLock = takeKernelLock): () => void {
  mkdirSync(dataDir, { recursive: true });
  const path = join(dataDir, LOCK_FILE);
  const kernelPath = join(dataDir, KERNEL_LOCK_FILE);
  const kernel = kernelLock(kernelPath);
  if (kernel.kind === "in-use") throw new DataDirInUse(dataDir, heldBy(path));
  if (kernel.kind === "unavailable") warn(`${kernelPath}: ${kernel.reason}; two litegates in separate PID namespaces (containers) sharing ${dataDir} would not see each other`);
  const unlockKernel = kernel.kind === "held" ? kernel.release : () => {};
  try {
    const unlockPid = lockByPid(dataDir, path);
    return () => {
      unlockPid();
      unlockKernel();
    };
  } catch (error) {
    unlockKernel();
    throw error;
  }
}

/**
 * Who holds the kernel's lock, as the PID lock file tells: its PID when that is a live process here, else
 * one this process cannot see (another PID namespace), whose PID would only mislead.
 */
function heldBy(path: string): number | string {
  let pid = "";
  let startTime: string | undefined;
  try {
    [pid = "", startTime] = readFileSync(path, "utf8").trim().split(" ");
  } catch {
    // not written yet, or on its way out
  }
  if (pid && holderAlive(Number(pid), startTime || undefined)) return Number(pid);
  return `one in another PID namespace, as another container sharing this directory${pid ? `; its lock file names pid ${pid} there` : ""}`;
}

function lockByPid(dataDir: string, path: string): () => void {
  const mine = `${process.pid} ${statOf(process.pid)?.startTime ?? ""}\n`;
  // Written whole under a name of its own, then linked in place (a link is never made over a file): a
  // lock seen half written, empty, would pass for one left by a crash and be taken over.
  const draft = sideName(path);
  try {
    writeFileSync(draft, mine, { mode: 0o600 });
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
    // Also when the draft itself could not be written whole (a full disk): no empty draft stays.
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
