import { describe, expect, test } from "bun:test";
import { spawn } from "bun";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { DataDirInUse, lockDataDir, parseStat } from "../../src/db/dir-lock";
import { tempDir } from "../helpers/services";

const startTime = (pid: number) => readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ")[19];

describe("the embedded database's directory belongs to one process", () => {
  test("a directory held by a live process is refused; released, it can be taken", () => {
    const dir = tempDir("lock");
    const other = spawn(["sleep", "30"]);
    try {
      writeFileSync(join(dir, "litegate.lock"), `${other.pid} ${startTime(other.pid)}\n`);
      expect(() => lockDataDir(dir)).toThrow(DataDirInUse);
      expect(() => lockDataDir(dir)).toThrow(`in use by another litegate (pid ${other.pid})`);
    } finally {
      other.kill();
    }
  });

  test("a lock left by a process that is gone, or by an earlier process under a reused PID, is taken over", async () => {
    const dir = tempDir("lock");
    const gone = spawn(["true"]);
    await gone.exited;
    writeFileSync(join(dir, "litegate.lock"), `${gone.pid} 1\n`);
    lockDataDir(dir)();
    const reused = spawn(["sleep", "30"]);
    try {
      writeFileSync(join(dir, "litegate.lock"), `${reused.pid} 12345\n`); // that PID, another start time
      const release = lockDataDir(dir);
      expect(readFileSync(join(dir, "litegate.lock"), "utf8")).toStartWith(`${process.pid} `);
      release();
      expect(existsSync(join(dir, "litegate.lock"))).toBe(false);
    } finally {
      reused.kill();
    }
  });

  test("a lock held by a zombie (killed, not yet collected by its parent) is taken over", async () => {
    const dir = tempDir("lock");
    // The child exits at once and its parent never collects it: a zombie for 30 s. (Perl, which leaves
    // a child it forked alone, rather than a shell: a shell may collect it before it execs `sleep`.)
    const parent = spawn(["perl", "-e", "$| = 1; my $child = fork(); exit 0 if $child == 0; print \"$child\\n\"; sleep 30"], { stdout: "pipe" });
    try {
      const reader = (parent.stdout as ReadableStream<Uint8Array>).getReader();
      const zombie = Number(new TextDecoder().decode((await reader.read()).value).trim());
      let stat = parseStat(readFileSync(`/proc/${zombie}/stat`, "utf8"));
      for (let tries = 0; stat?.state !== "Z" && tries < 200; tries++) {
        await Bun.sleep(5);
        stat = parseStat(readFileSync(`/proc/${zombie}/stat`, "utf8"));
      }
      expect(stat?.state).toBe("Z");
      writeFileSync(join(dir, "litegate.lock"), `${zombie} ${stat!.startTime}\n`);
      const release = lockDataDir(dir);
      expect(readFileSync(join(dir, "litegate.lock"), "utf8")).toStartWith(`${process.pid} `);
      release();
    } finally {
      parent.kill();
    }
  });

  test("a stat line is read from the command name's last parenthesis: the state and the start time", () => {
    const fields = Array.from({ length: 50 }, (_, i) => String(i + 4));
    fields[18] = "987654"; // field 22, the start time
    expect(parseStat(`4242 (litegate) x (y) Z ${fields.join(" ")}`)).toEqual({ state: "Z", startTime: "987654" });
    expect(parseStat(`4242 (litegate) S ${fields.join(" ")}`)).toEqual({ state: "S", startTime: "987654" });
    expect(parseStat("4242 (cut")).toBeNull();
  });

  test("a directory that cannot be made is an error of its own, not a lock held", () => {
    const file = join(tempDir("lock"), "a-file");
    writeFileSync(file, "");
    expect(() => lockDataDir(join(file, "data"))).toThrow(/ENOTDIR|not a directory/);
    expect(() => lockDataDir(join(file, "data"))).not.toThrow(DataDirInUse);
  });

  test("the release removes only its own lock", () => {
    const dir = tempDir("lock");
    const release = lockDataDir(dir);
    writeFileSync(join(dir, "litegate.lock"), "999999 1\n"); // replaced by someone else meanwhile
    release();
    expect(readFileSync(join(dir, "litegate.lock"), "utf8")).toBe("999999 1\n");
  });
});
