import { spawnSync } from "bun";
import { closeSync, openSync, writeSync } from "node:fs";
import { join } from "node:path";
import { tempDir } from "./services";

/**
 * A directory on a disk with no space left (a tiny tmpfs, filled up), where files can still be made but
 * nothing written into them; null where mounting is not allowed (not root). Call `unmount` when done.
 */
export function fullDisk(): { dir: string; unmount: () => void } | null {
  const dir = tempDir("full-disk");
  if (process.getuid?.() !== 0 || spawnSync(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", dir]).exitCode !== 0) return null;
  const fd = openSync(join(dir, ".filler"), "w");
  try {
    for (;;) writeSync(fd, Buffer.alloc(4096));
  } catch {
    // ENOSPC: full
  } finally {
    closeSync(fd);
  }
  return { dir, unmount: () => void spawnSync(["umount", "-l", dir]) };
}
