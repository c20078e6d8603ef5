import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { deferredDatabase } from "../../src/db/deferred";
import { openPglite } from "../../src/db/pglite";
import type { Database } from "../../src/db/types";
import { isDatabaseUnavailable } from "../../src/db/unavailable";
import { tempDir } from "../helpers/services";

describe("a database still opening", () => {
  test("statements wait until it is open, then run on it; ping says no meanwhile", async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const db = deferredDatabase(gate.then(() => openPglite(join(tempDir("deferred"), "data"))), "pglite");
    let answered = false;
    const query = db.query<{ n: number }>("select 41 + $1::int as n", [1]).then((rows) => {
      answered = true;
      return rows;
    });
    expect(await db.ping(50)).toBe(false);
    expect(answered).toBe(false);
    expect(db.statements()).toBe(0);
    release();
    expect(await query).toEqual([{ n: 42 }]);
    expect(await db.transaction((tx) => tx.query("select 1 as one"))).toEqual([{ one: 1 }]);
    expect(await db.ping(1000)).toBe(true);
    expect(db.statements()).toBeGreaterThanOrEqual(2);
    await db.close();
  }, 60_000);

  test("when opening fails, every statement fails with its error, as the database unreachable (a 503), and close still returns", async () => {
    const db: Database = deferredDatabase(Promise.reject(new Error("disk on fire")), "pglite");
    await expect(db.query("select 1")).rejects.toThrow("disk on fire");
    await expect(db.copyFrom("t", ["a"], "1\n")).rejects.toThrow("disk on fire");
    expect(isDatabaseUnavailable(await db.exec("select 1").catch((error: unknown) => error))).toBe(true);
    expect(await db.ping(100)).toBe(false);
    await db.close();
  });
});
