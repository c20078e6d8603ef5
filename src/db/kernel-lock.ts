import { FFIType, dlopen, read } from "bun:ffi";
import { closeSync, openSync } from "node:fs";

const LOCK_EX = 2;
const LOCK_NB = 4;
/** EWOULDBLOCK on Linux: another open file holds the lock. */
const EWOULDBLOCK = 11;

export type KernelLock =
  | { kind: "held"; release: () => void }
  | { kind: "in-use" }
  /** No lock to be had here (no C library at hand, or a filesystem without locks): `reason` says why. */
  | { kind: "unavailable"; reason: string };

function openLibc() {
  return dlopen("libc.so.6", {
    flock: { args: [FFIType.i32, FFIType.i32], returns: FFIType.i32 },
    __errno_location: { args: [], returns: FFIType.ptr },
  });
}

/**
 * An exclusive lock the kernel holds on `path` for this process until `release` or its end, whatever
 * the end (`kill -9` included). Unlike a PID written in a file it tells nothing to mistake: two
 * containers sharing a volume each run as PID 1, and each would see the other's PID as its own.
 */
export function takeKernelLock(path: string): KernelLock {
  let libc: ReturnType<typeof openLibc>;
  try {
    libc = openLibc();
  } catch (error) {
    return { kind: "unavailable", reason: `no C library to lock with (${error instanceof Error ? error.message : String(error)})` };
  }
  let fd: number;
  try {
    fd = openSync(path, "a", 0o600);
  } catch (error) {
    libc.close();
    throw error;
  }
  if (libc.symbols.flock(fd, LOCK_EX | LOCK_NB) === 0) {
    return {
      kind: "held",
      release: () => {
        closeSync(fd); // the lock goes with the last descriptor of the file
        libc.close();
      },
    };
  }
  const errno = read.i32(libc.symbols.__errno_location()!);
  closeSync(fd);
  libc.close();
  if (errno === EWOULDBLOCK) return { kind: "in-use" };
  return { kind: "unavailable", reason: `the filesystem refused a lock (errno ${errno})` };
}
