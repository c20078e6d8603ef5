import { expect, test } from "bun:test";
import { MIGRATIONS, MigrationError, migrate, openDatabase } from "../../src/db";
import { checkNumbering } from "../../src/db/migrations";
import { tempDir } from "../helpers/services";

test("migrations apply once; a changed applied file stops the start naming it", async () => {
  const db = await openDatabase({ dataDir: tempDir("mig") });
  await migrate(db);
  // An up-to-date database is confirmed by two reads: no lock, no transaction per file.
  const before = db.statements();
  expect(await migrate(db)).toEqual([]);
  expect(db.statements() - before).toBe(2);
  const changed = MIGRATIONS.map((m) => (m.id === 2 ? { ...m, sql: `${m.sql}\n-- edited` } : m));
  const error = await migrate(db, changed).catch((e) => e);
  expect(error).toBeInstanceOf(MigrationError);
  expect(error.message).toContain("0002_identity.sql was changed after it was applied");
  const next = MIGRATIONS.length + 1;
  const name = `${String(next).padStart(4, "0")}_extra.sql`;
  const added = [...MIGRATIONS, { id: next, name, sql: "create table extra (id int)" }];
  expect(await migrate(db, added)).toEqual([name]);
  await db.close();
});

test("numbering must be contiguous", () => {
  expect(() => checkNumbering([MIGRATIONS[0]!, { id: 3, name: "0003_gap.sql", sql: "" }])).toThrow(/contiguous/);
});
