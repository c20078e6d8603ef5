import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type Database, type Sql, migrate, openDatabase } from "../../src/db";
import type { SpendTargets } from "../../src/governance";
import { batchFromSaved, buildBatch, savedBatch, type SpendEvent } from "../../src/spend/batch";
import { applyBatch } from "../../src/spend/repo";
import { createSpendWriter } from "../../src/spend/writer";
import { systemClock } from "../../src/clock";
import { silentLogger } from "../../src/log";
import { fullDisk } from "../helpers/full-disk";
import { startPostgres, tempDir } from "../helpers/services";

let db: Database;
/** The rows the events below name: user u1 in team t1, and their key k1. */
async function seeded(target: Database): Promise<Database> {
  await migrate(target);
  await target.query("insert into users (user_id) values ('u1')");
  await target.query("insert into teams (team_id) values ('t1')");
  await target.query("insert into team_memberships (team_id, user_id) values ('t1', 'u1')");
  await target.query("insert into keys (token, key_name, user_id, team_id, budget_duration, budget_reset_at) values ('k1', 'sk-...k1', 'u1', 't1', '1d', '2026-01-02T00:00:00Z')");
  return target;
}
beforeAll(async () => {
  db = await seeded(await openDatabase({ dataDir: tempDir("spend") }));
}, 120_000);
afterAll(() => db.close());

function event(cost: number, targets: Partial<SpendTargets>, id = crypto.randomUUID()): SpendEvent {
  return {
    requestId: id, model: "gpt-4o", deployment: "gpt-4o#0", route: "chat", cost, start: Date.now(), end: Date.now(), status: "success", metadata: {},
    usage: { prompt_tokens: 10, completion_tokens: 20, total_tokens: 30 },
    targets: { token: "k1", keyPeriod: Date.parse("2026-01-02T00:00:00Z"), user: null, team: { id: "t1", period: null },
      member: { teamId: "t1", userId: "u1", period: null }, customer: { id: "cust-1", period: null }, keyModel: { model: "gpt-4o", period: null },
      gatewayPeriod: null, ...targets },
  };
}

const one = async (sql: string, target: Sql = db) => (await target.query(sql))[0]!;

describe("spend batches", () => {
  test("every target row gets the cost once; a retried batch is skipped", async () => {
    const batch = buildBatch("batch-1", [event(0.25, {}), event(0.5, {})]);
    expect(await applyBatch(db, batch)).toBe(true);
    expect(await applyBatch(db, batch)).toBe(false);
    expect((await one("select spend from keys where token = 'k1'")).spend).toBe(0.75);
    expect((await one("select spend from teams where team_id = 't1'")).spend).toBe(0.75);
    expect((await one("select spend from team_memberships")).spend).toBe(0.75);
    expect((await one("select spend from end_users where user_id = 'cust-1'")).spend).toBe(0.75);
    expect((await one("select spend from key_model_spend where token = 'k1' and model = 'gpt-4o'")).spend).toBe(0.75);
    expect((await one("select spend from gateway_spend")).spend).toBe(0.75);
    expect((await one("select count(*)::int as n from spend_logs")).n).toBe(2);
  });

  test("a delta for a newer period starts it; a delta for an ended period leaves the running spend alone", async () => {
    const next = Date.parse("2026-01-03T00:00:00Z");
    await applyBatch(db, buildBatch("batch-2", [event(0.125, { keyPeriod: next })]));
    const row = await one("select spend, budget_reset_at from keys where token = 'k1'");
    expect(row.spend).toBe(0.125);
    expect(new Date(row.budget_reset_at).getTime()).toBe(next);
    await applyBatch(db, buildBatch("batch-3", [event(1, { keyPeriod: Date.parse("2026-01-02T00:00:00Z") })]));
    expect((await one("select spend from keys where token = 'k1'")).spend).toBe(0.125);
  });

  test("periods that differ although neither ended (a duration changed mid-request) both count, and the stored reset stays", async () => {
    const now = Date.now();
    const stored = new Date(now + 30_000).toISOString();
    await db.query("insert into keys (token, key_name, budget_duration, budget_reset_at) values ('k2', 'sk-...k2', '30s', $1)", [stored]);
    const at = (period: number) => ({ ...event(0.25, { token: "k2", keyPeriod: period, keyModel: null }), end: now });
    // In one batch: the old plan's longer period and the new one's, summed; then a batch of the old plan's alone.
    await applyBatch(db, buildBatch("batch-mid-1", [at(now + 86_400_000), at(now + 30_000)]));
    await applyBatch(db, buildBatch("batch-mid-2", [at(now + 3_600_000)]));
    const row = await one("select spend, budget_reset_at from keys where token = 'k2'");
    expect(row.spend).toBe(0.75);
    expect(new Date(row.budget_reset_at).toISOString()).toBe(stored);
  });

  test("a duration removed or shortened while a request was in flight: its spend adds to the stored spend, and the stored reset stays", async () => {
    const now = Date.now();
    const oldEnd = now + 600_000;
    // Removed: the row holds no reset any more; shortened: a 3 s period that has already ended at the write.
    const cases = [["k-removed", null], ["k-shortened", new Date(now - 1_000).toISOString()]] as const;
    for (const [token, stored] of cases) {
      await db.query("insert into keys (token, key_name, spend, budget_reset_at) values ($1, $1, 0.5, $2)", [token, stored]);
      const late = { ...event(0.25, { token, keyPeriod: oldEnd, keyBase: oldEnd, keyModel: null }), end: now };
      await applyBatch(db, buildBatch(`batch-${token}`, [late]));
      const row = await one(`select spend, budget_reset_at from keys where token = '${token}'`);
      expect(`${token} ${row.spend}`).toBe(`${token} 0.75`);
      expect(row.budget_reset_at === null ? null : new Date(row.budget_reset_at).toISOString()).toBe(stored);
    }
    // A period that turned (the row still holds the reset the plan saw) or a first one still starts afresh.
    await db.query("insert into keys (token, key_name, spend, budget_reset_at) values ('k-turned', 'k-turned', 0.5, $1), ('k-first', 'k-first', 0.5, null)",
      [new Date(now - 1_000).toISOString()]);
    await applyBatch(db, buildBatch("batch-turned", [
      { ...event(0.25, { token: "k-turned", keyPeriod: oldEnd, keyBase: now - 1_000, keyModel: null }), end: now },
      { ...event(0.25, { token: "k-first", keyPeriod: oldEnd, keyBase: null, keyModel: null }), end: now },
    ]));
    for (const token of ["k-turned", "k-first"]) {
      const row = await one(`select spend, budget_reset_at from keys where token = '${token}'`);
      expect(`${token} ${row.spend} ${new Date(row.budget_reset_at).getTime()}`).toBe(`${token} 0.25 ${oldEnd}`);
    }
  });

  test("a delta planned from a row read periods ago starts its period when the stored reset is a later end of that chain; a reset an admin moved stays", async () => {
    const now = Date.now();
    const base = now - 25_000;
    // 10 s periods: the plan saw the reset `base`; other writes turned the row to base + 10 s since (its spend is that period's).
    await db.query("insert into keys (token, key_name, spend, budget_reset_at) values ('k-stale', 'k-stale', 0.5, $1), ('k-moved', 'k-moved', 0.5, $2)",
      [new Date(base + 10_000).toISOString(), new Date(base + 7_000).toISOString()]);
    const late = (token: string) => ({ ...event(0.25, { token, keyPeriod: base + 30_000, keyBase: base, keyStep: 10_000, keyModel: null }), end: now });
    await applyBatch(db, buildBatch("batch-stale", [late("k-stale"), late("k-moved")]));
    const stale = await one("select spend, budget_reset_at from keys where token = 'k-stale'");
    expect([stale.spend, new Date(stale.budget_reset_at).getTime()]).toEqual([0.25, base + 30_000]);
    const moved = await one("select spend, budget_reset_at from keys where token = 'k-moved'");
    expect([moved.spend, new Date(moved.budget_reset_at).getTime()]).toEqual([0.75, base + 7_000]);
  });

  test("spend made before its period ended, written after the scheduler reset the row to the next end: the new period stays as reset", async () => {
    const end = Date.now() - 2_000;
    await db.query("insert into keys (token, key_name, spend, budget_reset_at) values ('k-sched', 'k-sched', 0, $1), ('k-admin', 'k-admin', 0.5, $2)",
      [new Date(end + 10_000).toISOString(), new Date(end + 7_000).toISOString()]);
    // Every request of the batch ended before `end`; the scheduler turned k-sched to the next 10 s end meanwhile (an
    // admin moved k-admin's reset off that chain: that one is a changed duration, and its spend adds to the stored period).
    const before = (token: string) => ({ ...event(0.25, { token, keyPeriod: end, keyBase: end, keyStep: 10_000, keyModel: null }), end: end - 1_000 });
    await applyBatch(db, buildBatch("batch-sched", [before("k-sched"), before("k-admin")]));
    const sched = await one("select spend, budget_reset_at from keys where token = 'k-sched'");
    expect([sched.spend, new Date(sched.budget_reset_at).getTime()]).toEqual([0, end + 10_000]);
    const admin = await one("select spend, budget_reset_at from keys where token = 'k-admin'");
    expect([admin.spend, new Date(admin.budget_reset_at).getTime()]).toEqual([0.75, end + 7_000]);
    // A period still running whose reset an admin moved along its chain (a longer duration set at one of its ends): the spend counts.
    const running = Date.now() + 60_000;
    await db.query("insert into keys (token, key_name, spend, budget_reset_at) values ('k-longer', 'k-longer', 0.5, $1)", [new Date(running + 3_600_000).toISOString()]);
    await applyBatch(db, buildBatch("batch-longer", [{ ...event(0.25, { token: "k-longer", keyPeriod: running, keyBase: running, keyStep: 60_000, keyModel: null }), end: Date.now() }]));
    expect((await one("select spend from keys where token = 'k-longer'")).spend).toBe(0.75);
  });

  test("a holder's spend an admin set after the batch's write began stays as set; one set before it takes the batch's spend", async () => {
    const began = Date.now() - 10_000;
    await db.query("insert into keys (token, key_name, spend, spend_set_at) values ('k-set-after', 'k-set-after', 0, $1), ('k-set-before', 'k-set-before', 0, $2)",
      [new Date(began + 1_000).toISOString(), new Date(began - 1_000).toISOString()]);
    await db.query("insert into end_users (user_id, spend, spend_set_at) values ('c-set-after', 0.5, $1)", [new Date(began + 1_000).toISOString()]);
    const spent = (token: string) => event(0.25, { token, keyPeriod: null, keyModel: null, team: null, member: null, customer: { id: "c-set-after", period: null } });
    const batch = buildBatch("batch-set", [spent("k-set-after"), spent("k-set-before")]);
    batch.writingSince = began;
    await applyBatch(db, batch);
    const spendOf = async (token: string) => (await one(`select spend from keys where token = '${token}'`)).spend;
    expect({ after: await spendOf("k-set-after"), before: await spendOf("k-set-before"), customer: (await one("select spend from end_users where user_id = 'c-set-after'")).spend })
      .toEqual({ after: 0, before: 0.25, customer: 0.5 });
    // Saved and read back (a shutdown's batch), it keeps when its write began.
    expect(batchFromSaved(JSON.parse(JSON.stringify(savedBatch(batch, Date.now(), "saved")))).writingSince).toBe(began);
    expect((await one("select count(*)::int as n from spend_logs where api_key in ('k-set-after', 'k-set-before')")).n).toBe(2);
  });

  test("spend of a deleted key is still logged and does not fail the batch", async () => {
    await applyBatch(db, buildBatch("batch-4", [event(0.5, { token: "gone", team: null, member: null })]));
    expect((await one("select count(*)::int as n from spend_logs where api_key = 'gone'")).n).toBe(1);
    expect((await one("select count(*)::int as n from key_model_spend where token = 'gone'")).n).toBe(0);
  });

  test("per-model spend: a stored row is added to or restarted by period, a new model gets its row, in one batch", async () => {
    const day = Date.parse("2026-01-02T00:00:00Z");
    const next = Date.parse("2026-01-03T00:00:00Z");
    const model = (name: string, period: number | null) => ({ keyModel: { model: name, period } });
    await applyBatch(db, buildBatch("batch-5", [event(0.5, model("m-day", day)), event(0.25, model("m-open", null))]));
    await applyBatch(db, buildBatch("batch-6", [
      event(1, model("m-day", next)), event(0.125, model("m-open", null)), event(2, model("m-new", null)),
    ]));
    await applyBatch(db, buildBatch("batch-7", [event(4, model("m-day", day))]));
    const rows = await db.query<{ model: string; spend: number; budget_reset_at: string | null }>(
      "select model, spend, budget_reset_at from key_model_spend where token = 'k1' and model like 'm-%' order by model");
    expect(rows.map((r) => [r.model, r.spend, r.budget_reset_at && new Date(r.budget_reset_at).getTime()])).toEqual([
      ["m-day", 1, next], ["m-new", 2, null], ["m-open", 0.375, null],
    ]);
  });

  test("a user's and a team's spend per model: on a team key too (the user's own spend not charged), not for a user or team gone", async () => {
    const day = Date.parse("2026-01-02T00:00:00Z");
    const next = Date.parse("2026-01-03T00:00:00Z");
    const holders = (user: string, team: string, period: number | null) =>
      ({ userModel: { id: user, model: "gpt-4o", period }, teamModel: { id: team, model: "gpt-4o", period } });
    await applyBatch(db, buildBatch("batch-holders-1", [event(0.5, holders("u1", "t1", day)), event(0.25, holders("u1", "t1", day)),
      event(8, holders("no-such-user", "no-such-team", day))]));
    await applyBatch(db, buildBatch("batch-holders-2", [event(1, holders("u1", "t1", next))]));
    const rows = await db.query(`select 'user' as kind, user_id as id, spend, budget_reset_at from user_model_spend
      union all select 'team', team_id, spend, budget_reset_at from team_model_spend order by kind desc, id`);
    expect(rows.map((r: any) => [r.kind, r.id, r.spend, new Date(r.budget_reset_at).getTime()])).toEqual([["user", "u1", 1, next], ["team", "t1", 1, next]]);
    // The user's own spend stays untouched: the events spent on a team key.
    expect((await one("select spend from users where user_id = 'u1'")).spend).toBe(0);
  });
});

describe("log rows are written whatever text they carry", () => {
  const awkward = 'tab\there, line\nbreak, cr\r, back\\slash \\N, quote " and nul \u0000, Zoë 🚀 漢字 end';
  const check = async (target: Database) => {
    await target.query("delete from spend_logs");
    const odd = event(0.001, { customer: { id: "cust\twith\\odd\ntext", period: null }, user: null, team: null, member: null });
    odd.metadata = { note: awkward, nested: { list: [1, "two"] } };
    odd.usage = { prompt_tokens: 10.4, completion_tokens: Number.NaN, total_tokens: 3e9 };
    odd.model = "model\u0000from a config";
    const plain = event(2.8e-5, { token: null, customer: null, team: null, member: null, keyModel: null });
    await applyBatch(target, buildBatch(crypto.randomUUID(), [odd, plain], "f".repeat(64)));
    const rows = await target.query("select * from spend_logs order by spend");
    expect(rows.length).toBe(2);
    const [master, row] = rows as [Record<string, any>, Record<string, any>];
    // The master key's requests are logged under its hash, as every key's are.
    expect(master.api_key).toBe("f".repeat(64));
    expect(master.spend).toBe(2.8e-5);
    expect(master.user_id).toBeNull();
    expect(master.end_user).toBeNull();
    expect(row.end_user).toBe("cust\twith\\odd\ntext");
    const metadata = typeof row.metadata === "string" ? JSON.parse(row.metadata) : row.metadata;
    expect(metadata).toEqual({ note: awkward.replace("\u0000", ""), nested: { list: [1, "two"] } });
    expect([row.prompt_tokens, row.completion_tokens, row.total_tokens]).toEqual([10, 0, 0]);
    expect(row.model).toBe("modelfrom a config");
    expect(new Date(row.start_time).getTime()).toBe(odd.start);

    // Rows are kept as UTF-8 in 64 KB pieces: a batch of them spans several, and one row larger than a piece
    // gets one of its own; every row arrives whole, non-ASCII text included.
    await target.query("delete from spend_logs");
    const many = Array.from({ length: 1500 }, (_, i) => {
      const e = event(0.001, {});
      e.metadata = { i, note: `Zoë 🚀 漢字 ${"é".repeat(i % 97)}` };
      return e;
    });
    const huge = event(0.002, {});
    huge.metadata = { i: -1, note: "漢🚀".repeat(30_000) };
    many.splice(700, 0, huge);
    const batch = buildBatch(crypto.randomUUID(), many);
    expect(batch.logRows().length).toBeGreaterThan(3);
    await applyBatch(target, batch);
    const written = await target.query("select metadata from spend_logs");
    const notes = new Map(written.map((r) => {
      const m = typeof r.metadata === "string" ? JSON.parse(r.metadata) : r.metadata;
      return [m.i as number, m.note as string];
    }));
    expect(notes.size).toBe(1501);
    expect(notes.get(-1)).toBe(huge.metadata.note as string);
    for (const e of many) expect(notes.get(e.metadata.i as number)).toBe(e.metadata.note as string);
  };

  test("embedded database", () => check(db));

  test("Postgres", async () => {
    const pg = await startPostgres();
    const target = await openDatabase({ url: await pg.newDatabase(), dataDir: "" });
    try {
      await migrate(target);
      await check(target);
    } finally {
      await target.close();
      await pg.stop();
    }
  });
});

describe("the spend writer", () => {
  const refusedIsSetAside = async (target: Database) => {
    const dir = tempDir("set-aside");
    const errors: string[] = [];
    const log = { ...silentLogger, error: (message: string) => void errors.push(message), once: () => {} };
    const writer = createSpendWriter({ db: target, clock: systemClock, log, intervalMs: 60_000, quarantineDir: dir });
    try {
      const before = (await one("select spend from teams where team_id = 't1'", target)).spend;
      // A row the table will never take (here a constraint says so; SQLSTATE 23514): no retry can help.
      await target.query("alter table spend_logs add constraint refuse_one_model check (model <> 'refused-model')");
      writer.record({ ...event(0.125, {}), model: "refused-model" });
      for (let attempt = 1; attempt <= 2; attempt++) {
        await writer.flush();
        expect(writer.backlog()).toBe(1);
      }
      await writer.flush();
      expect(writer.backlog()).toBe(0);
      expect(writer.setAside()).toBe(1);
      const [file] = readdirSync(dir);
      const saved = JSON.parse(readFileSync(join(dir, file!), "utf8"));
      expect(saved.requests).toBe(1);
      expect(saved.deltas.keys).toEqual([{ id: "k1", amount: 0.125, period: Date.parse("2026-01-02T00:00:00Z") }]);
      expect(saved.spend_logs.copy_text).toContain("\trefused-model\t");
      expect(errors.some((message) => message.includes("set aside"))).toBe(true);
      await expectWrittenAfter(writer, before, target);
    } finally {
      await writer.close();
      await target.query("alter table spend_logs drop constraint if exists refuse_one_model");
    }
  };

  test("a batch the database refuses for its content is set aside in a file after three tries; the spend after it is written", () => refusedIsSetAside(db));

  test("on Postgres too, where a refused COPY is an error like any other: the flush neither waits forever nor leaves its transaction open", async () => {
    const pg = await startPostgres();
    const target = await seeded(await openDatabase({ url: await pg.newDatabase(), dataDir: "" }));
    try {
      await refusedIsSetAside(target);
      // A COPY refused after all its rows were sent (here for a row with a field too many): the real error, at once.
      await target.query("create table copy_probe (a text)");
      const refused = target.transaction((tx) => tx.copyFrom("copy_probe", ["a"], [new TextEncoder().encode("x\ty\n")]));
      expect(await Promise.race([refused.then(() => "written", (error) => String(error?.code)), Bun.sleep(10_000).then(() => "still waiting")])).toBe("22P04");
      // Rolled back, and the connection serves the next statement.
      const aborted = await target.query("select count(*)::int as n from pg_stat_activity where state like 'idle in transaction%'");
      expect(aborted[0]!.n).toBe(0);
      await target.copyFrom("copy_probe", ["a"], "fine\n");
      expect((await one("select count(*)::int as n from copy_probe", target)).n).toBe(1);
    } finally {
      await target.close();
      await pg.stop();
    }
  }, 60_000);
});

describe("spend saved at a shutdown", () => {
  test("a saved file that cannot be read (empty, as a full disk left it) is set aside and the files after it are written", async () => {
    const pending = tempDir("pending");
    const aside = tempDir("set-aside");
    const errors: string[] = [];
    const log = { ...silentLogger, error: (message: string, fields?: Record<string, unknown>) => void errors.push(`${message} ${JSON.stringify(fields)}`) };
    const before = (await one("select spend from teams where team_id = 't1'")).spend;
    writeFileSync(join(pending, "spend-0000-empty.json"), "");
    const batch = buildBatch("batch-saved-after-empty", [event(0.375, {})]);
    writeFileSync(join(pending, "spend-zzzz-valid.json"), JSON.stringify(savedBatch(batch, Date.now(), "database unreachable at shutdown")));
    const writer = createSpendWriter({ db, clock: systemClock, log, intervalMs: 60_000, pendingDir: pending, quarantineDir: aside });
    try {
      await writer.writeSaved();
      expect((await one("select spend from teams where team_id = 't1'")).spend).toBeCloseTo(before + 0.375, 12);
      expect(readdirSync(pending)).toEqual([]);
      expect(readdirSync(aside)).toEqual(["spend-0000-empty.json"]);
      expect(errors.some((line) => line.includes("cannot be read") && line.includes("spend-0000-empty.json"))).toBe(true);
    } finally {
      await writer.close();
    }
  });

  test("a batch saved at shutdown on a full disk leaves no empty file for the next start to stumble on (a tmpfs mounted full: the suite runs as root)", async () => {
    const disk = fullDisk();
    const down = { transaction: () => Promise.reject(new Error("database down")) } as unknown as Sql;
    const writer = createSpendWriter({ db: down, clock: systemClock, log: { ...silentLogger, once: () => {} }, intervalMs: 60_000, pendingDir: disk.dir });
    try {
      writer.record(event(0.25, {}));
      expect(await writer.close(0)).toBe(1);
      expect(readdirSync(disk.dir).filter((name) => name !== ".filler")).toEqual([]);
    } finally {
      disk.unmount();
    }
  });
});

describe("flush", () => {
  test("writes what was recorded while a flush was already under way", async () => {
    const writer = createSpendWriter({ db, clock: systemClock, log: silentLogger, intervalMs: 60_000 });
    try {
      const before = (await one("select spend from teams where team_id = 't1'")).spend;
      writer.record(event(0.25, {}));
      const first = writer.flush();
      writer.record(event(0.5, {}));
      await writer.flush();
      await first;
      expect(writer.backlog()).toBe(0);
      expect((await one("select spend from teams where team_id = 't1'")).spend).toBeCloseTo(before + 0.75, 12);
    } finally {
      await writer.close();
    }
  });
});

/** Spend recorded after a batch was set aside is written: the team's spend grows from `before` by it. */
async function expectWrittenAfter(writer: ReturnType<typeof createSpendWriter>, before: number, target: Sql = db): Promise<void> {
  writer.record(event(0.25, {}));
  await writer.flush();
  expect(writer.backlog()).toBe(0);
  expect((await one("select spend from teams where team_id = 't1'", target)).spend).toBeCloseTo(before + 0.25, 12);
}

describe("a batch that cannot be encoded", () => {
  test("(a period that is not a date) is set aside at the first try, and the spend after it is written", async () => {
    const dir = tempDir("set-aside");
    const writer = createSpendWriter({ db, clock: systemClock, log: { ...silentLogger, once: () => {} }, intervalMs: 60_000, quarantineDir: dir });
    try {
      const before = (await one("select spend from teams where team_id = 't1'")).spend;
      writer.record(event(0.125, { keyPeriod: Number.NaN }));
      await writer.flush();
      expect(writer.failing()).toBe(false);
      expect(writer.backlog()).toBe(0);
      expect(writer.setAside()).toBe(1);
      expect(readdirSync(dir)).toHaveLength(1);
      await expectWrittenAfter(writer, before);
    } finally {
      await writer.close();
    }
  });
});

describe("deltas of one row in one batch", () => {
  test("spend with a period and spend without one (a duration taken away or given mid-request) are both kept, in either order", async () => {
    const { DeltaMap } = await import("../../src/spend/batch");
    const period = Date.UTC(2030, 0, 1);
    for (const order of [[period, null], [null, period]] as const) {
      const deltas = new DeltaMap();
      deltas.add("key-1", 0.25, order[0], undefined, period - 1000);
      deltas.add("key-1", 0.5, order[1], undefined, period - 500);
      expect(deltas.sorted()).toMatchObject([{ id: "key-1", amount: 0.75, period: null }]);
    }
    // Two periods, the older one over when the later spend came: the older one's is dropped, as before.
    const turned = new DeltaMap();
    turned.add("key-1", 0.25, period, period - 86_400_000, period - 10);
    turned.add("key-1", 0.5, period + 60_000, period, period + 10);
    expect(turned.sorted()).toEqual([{ id: "key-1", amount: 0.5, period: period + 60_000, base: period }]);
    // One period seen from two stored resets (before and after the reset was written): the earlier view.
    const seen = new DeltaMap();
    seen.add("key-1", 0.25, period, null, period - 10);
    seen.add("key-1", 0.5, period, period, period - 5);
    expect(seen.sorted()).toEqual([{ id: "key-1", amount: 0.75, period, base: null }]);
  });

  test("spend of a row deleted and made again under its id within one batch: the new row's alone", async () => {
    const { DeltaMap } = await import("../../src/spend/batch");
    const at = Date.UTC(2030, 0, 1);
    for (const [first, second] of [[1_000, 2_000], [2_000, 1_000]]) {
      const deltas = new DeltaMap();
      deltas.add("team-1", 0.25, null, null, at, null, first);
      deltas.add("team-1", 0.5, null, null, at, null, second);
      deltas.add("team-1", 0.125, null, null, at, null, 2_000);
      // A delta whose row's making is not known (a batch saved before it was kept) adds to whichever row is there.
      deltas.add("team-1", 1, null, null, at);
      expect(deltas.sorted()).toEqual([{ id: "team-1", amount: (first === 2_000 ? 0.25 : 0.5) + 0.125 + 1, period: null, base: null, step: null, born: 2_000 }]);
    }
  });
});

describe("the log row of a refused request", () => {
  const refused = (id: ReturnType<typeof crypto.randomUUID>, targets: Partial<SpendTargets> = {}): SpendEvent => ({
    ...event(0, targets, id), deployment: null, usage: { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 }, status: "failure",
    metadata: { error_information: { error_code: "429", error_class: "rate_limit_error", error_message: "Rate limit exceeded" } },
  });

  test("is written with the next flush and changes no stored spend, not even a period a delta of 0 would start", async () => {
    const writer = createSpendWriter({ db, clock: systemClock, log: silentLogger, intervalMs: 60_000 });
    try {
      const key = await one("select spend, budget_reset_at from keys where token = 'k1'");
      const team = (await one("select spend from teams where team_id = 't1'")).spend;
      const id = crypto.randomUUID();
      // A plan made after the key's period ended: a spend delta would start the next period at 0.
      writer.refused(refused(id, { keyPeriod: Date.parse("2099-01-01T00:00:00Z") }));
      await writer.flush();
      expect(writer.backlog()).toBe(0);
      expect(await one("select spend, budget_reset_at from keys where token = 'k1'")).toEqual(key);
      expect((await one("select spend from teams where team_id = 't1'")).spend).toBe(team);
      const row = await one(`select status, spend, total_tokens, deployment, metadata from spend_logs where request_id = '${id}'`);
      expect(row).toEqual({ status: "failure", spend: 0, total_tokens: 0, deployment: null, metadata: refused(id).metadata });
    } finally {
      await writer.close();
    }
  });

  test("is dropped while the database fails and `maxRefusedHeld` requests wait; spend never is, and what was held is written once it answers", async () => {
    let up = false;
    const flaky = { transaction: (work: (tx: Sql) => Promise<unknown>) => (up ? db.transaction(work) : Promise.reject(new Error("database down"))) } as unknown as Sql;
    const writer = createSpendWriter({ db: flaky, clock: systemClock, log: { ...silentLogger, once: () => {} }, intervalMs: 60_000, maxRefusedHeld: 3 });
    try {
      const before = (await one("select spend from teams where team_id = 't1'")).spend;
      const ids = Array.from({ length: 5 }, () => crypto.randomUUID());
      writer.refused(refused(ids[0]!));
      await writer.flush();
      expect(writer.failing()).toBe(true);
      for (const id of ids.slice(1)) writer.refused(refused(id));
      writer.record(event(0.25, {}));
      expect(writer.backlog()).toBe(4);
      up = true;
      await writer.flush();
      expect(writer.backlog()).toBe(0);
      expect((await db.query(`select request_id from spend_logs where request_id in (${ids.map((id) => `'${id}'`).join(", ")})`)).length).toBe(3);
      expect((await one("select spend from teams where team_id = 't1'")).spend).toBeCloseTo(before + 0.25, 12);
      // Answering again, the database takes every refused row.
      writer.refused(refused(crypto.randomUUID()));
      expect(writer.backlog()).toBe(1);
    } finally {
      await writer.close();
    }
  });
});
