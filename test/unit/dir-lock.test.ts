import { describe, expect, test } from "bun:test";
import { spawn, spawnSync } from "bun";
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { DataDirInUse, lockDataDir, parseStat } from "../../src/db/dir-lock";
import { fullDisk } from "../helpers/full-disk";
import { tempDir } from "../helpers/services";

/** A process holding `dir` (lockDataDir) until its stdin ends; resolves once it holds it. */
async function holder(dir: string) {
  const script = `
    const { lockDataDir } = await import(${JSON.stringify(join(import.meta.dir, "../../src/db/dir-lock.ts"))});
    lockDataDir(process.env.DIR);
    console.log("held");
    await new Promise((resolve) => process.stdin.on("end", resolve).resume());
  `;
  const proc = spawn([process.execPath, "-e", script], { env: { ...process.env, DIR: dir }, stdin: "pipe", stdout: "pipe", stderr: "inherit" });
  const reader = (proc.stdout as ReadableStream<Uint8Array>).getReader();
  expect(new TextDecoder().decode((await reader.read()).value)).toContain("held");
  return { pid: proc.pid, stop: async () => (proc.stdin!.end(), await proc.exited) };
}

/** The suite runs as root (as CI does, installing its packages): a PID namespace of its own is at hand. */
const canUnshare = () => process.getuid?.() === 0 && spawnSync(["unshare", "-p", "-f", "--mount-proc", "true"], { stderr: "ignore" }).exitCode === 0;

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

  test("starts racing for a lock left by a process that is gone: one takes it, the others are refused", async () => {
    const root = tempDir("lock-race");
    const gone = spawn(["true"]);
    await gone.exited;
    const dirs = Array.from({ length: 200 }, (_, i) => join(root, String(i)));
    for (const dir of dirs) {
      mkdirSync(dir);
      writeFileSync(join(dir, "litegate.lock"), `${gone.pid} 1\n`);
    }
    // Three processes take the directories in turn, all of them at the same instants (every 4 ms from a
    // shared start): a race on each directory. Each stays alive, holding what it took, until all have ended.
    const script = `
      const { lockDataDir } = await import(${JSON.stringify(join(import.meta.dir, "../../src/db/dir-lock.ts"))});
      const [dirs, start] = [JSON.parse(process.env.DIRS), Number(process.env.START)];
      const won = [];
      for (const [i, dir] of dirs.entries()) {
        while (Date.now() < start + i * 4) {}
        try {
          lockDataDir(dir);
          won.push(i);
        } catch (error) {
          if (!String(error).includes("in use by another litegate")) throw error;
        }
      }
      console.log(JSON.stringify(won));
      await new Promise((resolve) => process.stdin.on("end", resolve).resume());
    `;
    const env = { ...process.env, DIRS: JSON.stringify(dirs), START: String(Date.now() + 1000) };
    const racers = [0, 1, 2].map(() => spawn([process.execPath, "-e", script], { env, stdin: "pipe", stdout: "pipe", stderr: "inherit" }));
    const readLine = async (stream: ReadableStream<Uint8Array>) => {
      const reader = stream.getReader();
      let text = "";
      while (!text.includes("\n")) {
        const { value, done } = await reader.read();
        if (done) break;
        text += new TextDecoder().decode(value);
      }
      return text;
    };
    const won = (await Promise.all(racers.map((racer) => readLine(racer.stdout as ReadableStream<Uint8Array>)))).map((line) => JSON.parse(line) as number[]);
    for (const racer of racers) racer.stdin!.end();
    await Promise.all(racers.map((racer) => racer.exited));
    const winners = dirs.map((_, i) => won.filter((list) => list.includes(i)).length);
    expect(winners.filter((count) => count !== 1)).toEqual([]);
    for (const dir of dirs) expect(readdirSync(dir).sort()).toEqual(["litegate.flock", "litegate.lock"]); // nothing left aside
  }, 15_000);

  test("a directory held by a litegate whose PID means nothing here (another container's PID 1) is refused: the kernel's lock decides", async () => {
    const dir = tempDir("lock");
    const first = await holder(dir);
    try {
      expect(() => lockDataDir(dir)).toThrow(`in use by another litegate (pid ${first.pid})`); // one this process sees
      // As the lock file of a process in another PID namespace reads here: a PID that is no live process.
      const gone = spawn(["true"]);
      await gone.exited;
      writeFileSync(join(dir, "litegate.lock"), `${gone.pid} 1\n`);
      expect(() => lockDataDir(dir)).toThrow(DataDirInUse);
      expect(() => lockDataDir(dir)).toThrow(`in use by another litegate (one in another PID namespace, as another container sharing this directory; its lock file names pid ${gone.pid} there)`);
      expect(readFileSync(join(dir, "litegate.lock"), "utf8")).toBe(`${gone.pid} 1\n`); // not taken over
    } finally {
      await first.stop();
    }
    // Once it has ended, the directory is free again.
    lockDataDir(dir)();
  });

  test("a second litegate in a PID namespace of its own is refused (the suite runs as root, with util-linux's unshare)", async () => {
    expect(canUnshare()).toBe(true);
    const dir = tempDir("lock");
    const first = await holder(dir);
    try {
      const script = `
        const { lockDataDir } = await import(${JSON.stringify(join(import.meta.dir, "../../src/db/dir-lock.ts"))});
        try { lockDataDir(process.env.DIR); console.log("taken by pid " + process.pid); } catch (error) { console.log(String(error)); }
      `;
      const second = spawnSync(["unshare", "-p", "-f", "--mount-proc", process.execPath, "-e", script], { env: { ...process.env, DIR: dir } });
      expect(second.stdout.toString()).toContain("in use by another litegate");
    } finally {
      await first.stop();
    }
  });

  test("without the kernel's lock (no C library, a filesystem without locks) the PID decides, as before, with a warning", () => {
    const dir = tempDir("lock");
    const warnings: string[] = [];
    const release = lockDataDir(dir, (message) => void warnings.push(message), () => ({ kind: "unavailable", reason: "no C library to lock with" }));
    expect(warnings).toEqual([`${join(dir, "litegate.flock")}: no C library to lock with; two litegates in separate PID namespaces (containers) sharing ${dir} would not see each other`]);
    expect(readFileSync(join(dir, "litegate.lock"), "utf8")).toStartWith(`${process.pid} `);
    release();
  });

  test("a start on a full disk leaves no draft of the lock file behind (a tmpfs mounted full: the suite runs as root)", () => {
    const disk = fullDisk();
    try {
      expect(() => lockDataDir(disk.dir)).toThrow(/ENOSPC|no space/i);
      expect(readdirSync(disk.dir).filter((name) => name.startsWith("litegate.lock"))).toEqual([]);
      // The kernel's lock went with the failed start: once there is room, the directory can be taken.
      expect(readdirSync(disk.dir)).toContain("litegate.flock");
    } finally {
      disk.unmount();
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
