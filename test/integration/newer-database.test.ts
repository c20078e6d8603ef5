import { expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { MIGRATIONS, openDatabase } from "../../src/db";
import { spawn } from "bun";
import { BINARY, ensureBinary } from "../helpers/binary";
import { sharedPostgres, tempDir } from "../helpers/services";

/** An older binary on a database a newer litegate migrated: `serve` and `migrate` refuse it, naming both versions. */

/** The binary run to its exit, or killed after 20 s (a start that was not refused listens for ever). */
async function runToExit(args: string[], cwd: string) {
  await ensureBinary();
  const proc = spawn([BINARY, ...args], { cwd, stdout: "pipe", stderr: "pipe" });
  const timer = setTimeout(() => proc.kill("SIGKILL"), 20_000);
  const [code, stderr] = await Promise.all([proc.exited, new Response(proc.stderr).text()]);
  clearTimeout(timer);
  return { code, stderr };
}

const known = MIGRATIONS[MIGRATIONS.length - 1]!;
const future = { id: known.id + 1, name: `${String(known.id + 1).padStart(4, "0")}_future.sql` };
const refusal = `the database was migrated by a newer litegate: its highest migration is ${future.name} (${future.id}), and this litegate knows migrations up to ${known.name} (${known.id})`;

for (const kind of ["pglite", "postgres"] as const) {
  test(`on ${kind}, a database with a migration this binary does not know stops serve and migrate with exit 1`, async () => {
    const cwd = tempDir("newer-db");
    const url = kind === "postgres" ? await (await sharedPostgres()).newDatabase() : undefined;
    const where = url ? `database_url: ${url}` : `data_dir: ${join(cwd, "db")}`;
    writeFileSync(join(cwd, "config.yaml"), `general_settings:\n  master_key: sk-1234\n  ${where}\n`);
    expect((await runToExit(["migrate", "--config", "config.yaml"], cwd)).code).toBe(0);
    // What a newer litegate leaves behind: one more migration recorded.
    const db = await openDatabase({ url, dataDir: join(cwd, "db") });
    await db.query("insert into litegate_migrations (id, name, checksum) values ($1, $2, 'x')", [future.id, future.name]);
    await db.close();
    for (const args of [["migrate", "--config", "config.yaml"], ["--config", "config.yaml", "--port", "0"]]) {
      expect(await runToExit(args, cwd)).toEqual({ code: 1, stderr: expect.stringContaining(refusal) });
    }
    // Nothing of the refused starts was written: the future migration is still the newest, and alone past this binary's.
    const after = await openDatabase({ url, dataDir: join(cwd, "db") });
    expect(await after.query("select id from litegate_migrations where id > $1", [known.id])).toEqual([{ id: future.id }]);
    await after.close();
  }, 90_000);
}
