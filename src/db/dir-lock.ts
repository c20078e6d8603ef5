import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { LOCK_FILE } from "../paths";

export class DataDirInUse extends Error {
  constructor(dataDir: string, pid: number) {
    super(`the embedded database in ${dataDir} is in use by another litegate (pid ${pid}); stop it first, or give this one another data_dir`);
  }
}

/** The kernel's start time of a process (clock ticks since boot), or null when there is no such process. */
function startTimeOf(pid: number): string | null {
  try {
    // The fields after the command name, which may hold spaces; the start time is the 22nd field.
    return readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ")[19] ?? null;
  } catch {
    return null;
  }
}

/** Whether the process a lock names is still the one that took it (a PID can be reused). */
function holderAlive(pid: number, startTime: string | undefined): boolean {
  if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid) return false; // our PID: a previous life of this process
  const now = startTimeOf(pid);
  if (now !== null) return startTime === undefined || now === startTime;
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
 * crash, `kill -9`) is taken over. Returns the release, for a clean stop.
 */
export function lockDataDir(dataDir: string): () => void {
  mkdirSync(dataDir, { recursive: true });
  const path = join(dataDir, LOCK_FILE);
  const mine = `${process.pid} ${startTimeOf(process.pid) ?? ""}\n`;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      writeFileSync(path, mine, { flag: "wx", mode: 0o600 });
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
    rmSync(path, { force: true }); // left by a process that is gone
  }
  throw new Error(`could not lock ${dataDir}: ${path} keeps coming back`);
}
