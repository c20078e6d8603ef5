import { spawnSync } from "bun";
import { closeSync, openSync, writeSync } from "node:fs";
import { join } from "node:path";
import { tempDir } from "./services";

/**
 * A directory on a disk with no space left (a tiny tmpfs, filled up), where files can still be made but
 * nothing written into them. The suite runs as root (as CI does), which mounting needs: without it the
 * test fails saying so rather than passing untried. Call `unmount` when done.
 */
export function fullDisk(): { dir: string; unmount: () => void } {
  const dir = tempDir("full-disk");
  if (process.getuid?.() !== 0 || spawnSync(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", dir]).exitCode !== 0) {
    throw new Error("a full disk is a tiny tmpfs mounted for the test: run the suite as root");
  }
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
