import init from "../../sql/0001_init.sql" with { type: "text" };
import identity from "../../sql/0002_identity.sql" with { type: "text" };
import spendLogIndexes from "../../sql/0003_spend_log_indexes.sql" with { type: "text" };
import keyRenames from "../../sql/0004_key_renames.sql" with { type: "text" };
import gatewayBudgetDuration from "../../sql/0005_gateway_budget_duration.sql" with { type: "text" };
import customerModelSpend from "../../sql/0006_customer_model_spend.sql" with { type: "text" };
import defaultBudgetDurations from "../../sql/0007_default_budget_durations.sql" with { type: "text" };
import userTeamModelBudgets from "../../sql/0008_user_team_model_budgets.sql" with { type: "text" };
import keyGrace from "../../sql/0009_key_grace.sql" with { type: "text" };
import spendSetAt from "../../sql/0010_spend_set_at.sql" with { type: "text" };
import budgetAnchor from "../../sql/0011_budget_anchor.sql" with { type: "text" };
import type { Sql } from "./types";

export interface Migration {
  id: number;
  name: string;
  sql: string;
}

/** Every migration, in order. A compiled binary cannot read sql/ at run time, so each file is imported. */
export const MIGRATIONS: readonly Migration[] = [
  { id: 1, name: "0001_init.sql", sql: init },
  { id: 2, name: "0002_identity.sql", sql: identity },
  { id: 3, name: "0003_spend_log_indexes.sql", sql: spendLogIndexes },
  { id: 4, name: "0004_key_renames.sql", sql: keyRenames },
  { id: 5, name: "0005_gateway_budget_duration.sql", sql: gatewayBudgetDuration },
  { id: 6, name: "0006_customer_model_spend.sql", sql: customerModelSpend },
  { id: 7, name: "0007_default_budget_durations.sql", sql: defaultBudgetDurations },
  { id: 8, name: "0008_user_team_model_budgets.sql", sql: userTeamModelBudgets },
  { id: 9, name: "0009_key_grace.sql", sql: keyGrace },
  { id: 10, name: "0010_spend_set_at.sql", sql: spendSetAt },
  { id: 11, name: "0011_budget_anchor.sql", sql: budgetAnchor },
];

export class MigrationError extends Error {}

/** Any 64-bit constant works; it only has to be the same for every litegate instance. */
const LOCK_ID = 7_220_531_113;

export function checksum(text: string): string {
  return new Bun.CryptoHasher("sha256").update(text).digest("hex");
}

/** Refuses gaps and duplicates: file N must be the N-th. */
export function checkNumbering(migrations: readonly Migration[]): void {
  migrations.forEach((migration, index) => {
    const expected = index + 1;
    const prefix = Number(migration.name.slice(0, 4));
    if (migration.id !== expected || prefix !== expected) {
      throw new MigrationError(`migration ${migration.name}: expected number ${expected}, numbering must be contiguous`);
    }
  });
}

/**
 * The usual start: every migration applied and unchanged, answered by two reads without a lock or a
 * transaction per file (warm start on Postgres: 132 → 109 ms). Anything else (a new database, a
 * pending or changed file, a newer database) takes the locked path.
 */
async function upToDate(db: Sql, migrations: readonly Migration[]): Promise<boolean> {
  const [table] = await db.query<{ present: boolean }>("select to_regclass('litegate_migrations') is not null as present");
  if (!table?.present) return false;
  const rows = await db.query<{ id: number; checksum: string }>("select id, checksum from litegate_migrations order by id");
  return rows.length === migrations.length && migrations.every((m, i) => rows[i]!.id === m.id && rows[i]!.checksum === checksum(m.sql));
}

/**
 * Stops the start on a database a newer litegate migrated: this build would write rows its schema
 * does not expect. Going back means the newer build, or a backup taken before the upgrade.
 */
async function refuseNewer(db: Sql, migrations: readonly Migration[]): Promise<void> {
  const [newest] = await db.query<{ id: number; name: string }>("select id, name from litegate_migrations order by id desc limit 1");
  const known = migrations[migrations.length - 1];
  if (!newest || newest.id <= (known?.id ?? 0)) return;
  throw new MigrationError(
    `the database was migrated by a newer litegate: its highest migration is ${newest.name} (${newest.id}), and this litegate knows migrations up to ${known?.name ?? "none"} (${known?.id ?? 0}); run the newer litegate on it, or restore a backup taken before the upgrade`,
  );
}

/**
 * Applies pending migrations in order, each in its own transaction under an advisory lock, so that
 * instances starting together apply each file exactly once. An applied file whose text changed stops
 * the start: the database no longer matches the code.
 */
export async function migrate(db: Sql, migrations: readonly Migration[] = MIGRATIONS): Promise<string[]> {
  checkNumbering(migrations);
  if (await upToDate(db, migrations)) return [];
  await db.transaction(async (tx) => {
    await tx.query("select pg_advisory_xact_lock($1)", [LOCK_ID]);
    await tx.exec(`create table if not exists litegate_migrations (
      id integer primary key, name text not null, checksum text not null,
      applied_at timestamptz not null default now())`);
    await refuseNewer(tx, migrations);
  });
  const applied: string[] = [];
  for (const migration of migrations) {
    const sum = checksum(migration.sql);
    const ran = await db.transaction(async (tx) => {
      await tx.query("select pg_advisory_xact_lock($1)", [LOCK_ID]);
      const [row] = await tx.query<{ checksum: string }>("select checksum from litegate_migrations where id = $1", [migration.id]);
      if (row) {
        if (row.checksum !== sum) {
          throw new MigrationError(
            `migration ${migration.name} was changed after it was applied (checksum ${row.checksum.slice(0, 12)} in the database, ${sum.slice(0, 12)} now); restore the file or add a new migration`,
          );
        }
        return false;
      }
      await tx.exec(migration.sql);
      await tx.query("insert into litegate_migrations (id, name, checksum) values ($1, $2, $3)", [migration.id, migration.name, sum]);
      return true;
    });
    if (ran) applied.push(migration.name);
  }
  return applied;
}
