import type { Sql } from "../db";
import { type Batch, type Delta, LOG_COLUMNS } from "./batch";

/**
 * The period-aware spend update, shared by every table: a delta for the stored period adds to it; a
 * delta for a newer period (the reset was not written yet) starts it; a delta for an older period
 * (a reset already happened) leaves the running spend alone — it stays in spend_logs.
 */
const SPEND = (t: string) => `case
    when d.p is null or ${t}.budget_reset_at is not distinct from d.p then ${t}.spend + d.x
    when ${t}.budget_reset_at is null or ${t}.budget_reset_at < d.p then d.x
    else ${t}.spend end`;
const RESET_AT = (t: string) =>
  `case when d.p is not null and (${t}.budget_reset_at is null or ${t}.budget_reset_at < d.p) then d.p else ${t}.budget_reset_at end`;
// Deltas travel as one JSON document: Postgres parses it in C far faster than three parallel arrays
// (a flush can carry thousands of rows when traffic is spread over many keys).
const DELTAS = `select id, x, p from json_to_recordset($1::text::json) as d(id text, x float8, p timestamptz) order by id`;

function deltaParams(deltas: Delta[]): [string] {
  return [JSON.stringify(deltas.map((d) => ({ id: d.id, x: d.amount, p: d.period === null ? null : new Date(d.period).toISOString() })))];
}

/** `match` joins a table row `t` to its delta row `d`. */
async function updateTable(sql: Sql, table: string, match: string, deltas: Delta[]): Promise<void> {
  if (deltas.length === 0) return;
  await sql.query(
    `update ${table} t set spend = ${SPEND("t")}, budget_reset_at = ${RESET_AT("t")}
     from (${DELTAS}) d where ${match}`,
    deltaParams(deltas),
  );
}

/** Applies a batch exactly once: a batch id already recorded means a retry of a committed flush. */
export async function applyBatch(db: Sql, batch: Batch): Promise<boolean> {
  return db.transaction(async (tx) => {
    const fresh = await tx.query("insert into spend_batches (batch_id) values ($1) on conflict do nothing returning batch_id", [batch.id]);
    if (fresh.length === 0) return false;

    await updateTable(tx, "keys", "t.token = d.id", batch.keys.sorted());
    await updateTable(tx, "users", "t.user_id = d.id", batch.users.sorted());
    await updateTable(tx, "teams", "t.team_id = d.id", batch.teams.sorted());

    const members = batch.members.sorted();
    if (members.length > 0) {
      await tx.query(
        `update team_memberships t set spend = ${SPEND("t")}, budget_reset_at = ${RESET_AT("t")}
         from (${DELTAS}) d where t.team_id = split_part(d.id, chr(31), 1) and t.user_id = substr(d.id, strpos(d.id, chr(31)) + 1)`,
        deltaParams(members),
      );
    }

    const customers = batch.customers.sorted();
    if (customers.length > 0) {
      await tx.query(
        `insert into end_users as t (user_id, spend, budget_reset_at)
         select d.id, d.x, d.p from (${DELTAS}) d
         on conflict (user_id) do update set
           spend = case when excluded.budget_reset_at is null or t.budget_reset_at is not distinct from excluded.budget_reset_at then t.spend + excluded.spend
                        when t.budget_reset_at is null or t.budget_reset_at < excluded.budget_reset_at then excluded.spend
                        else t.spend end,
           budget_reset_at = case when excluded.budget_reset_at is not null and (t.budget_reset_at is null or t.budget_reset_at < excluded.budget_reset_at)
                                  then excluded.budget_reset_at else t.budget_reset_at end,
           updated_at = now()`,
        deltaParams(customers),
      );
    }

    const keyModels = batch.keyModels.sorted();
    if (keyModels.length > 0) {
      await tx.query(
        `insert into key_model_spend as t (token, model, spend, budget_reset_at)
         select split_part(d.id, chr(31), 1), substr(d.id, strpos(d.id, chr(31)) + 1), d.x, d.p from (${DELTAS}) d
         where exists (select 1 from keys k where k.token = split_part(d.id, chr(31), 1))
         on conflict (token, model) do update set
           spend = case when excluded.budget_reset_at is null or t.budget_reset_at is not distinct from excluded.budget_reset_at then t.spend + excluded.spend
                        when t.budget_reset_at is null or t.budget_reset_at < excluded.budget_reset_at then excluded.spend
                        else t.spend end,
           budget_reset_at = case when excluded.budget_reset_at is not null and (t.budget_reset_at is null or t.budget_reset_at < excluded.budget_reset_at)
                                  then excluded.budget_reset_at else t.budget_reset_at end`,
        deltaParams(keyModels),
      );
    }

    await updateTable(tx, "gateway_spend", "t.id = 1", batch.gateway.sorted());

    // The log rows in one COPY: the cheapest way into the table, and a row per request is the bulk of the write.
    if (batch.size > 0) await tx.copyFrom("spend_logs", LOG_COLUMNS, batch.rowsText());
    return true;
  });
}
