import type { Sql } from "../db";
import { type Delta, LOG_COLUMNS, SEP, type WritableBatch } from "./batch";

/**
 * The stored reset is a later end of the delta's own chain of periods (`s` its fixed length), and the
 * delta's period had ended by the flush (the gateway's time when it wrote, `flushed`): the row was reset
 * since. (One still running, its reset moved along its chain, is an admin's change of duration.)
 */
const onChain = (p: string, s: string) =>
  `(${s} > 0 and mod((extract(epoch from t.budget_reset_at - ${p}) * 1000)::numeric, ${s}::numeric) = 0)`;
/**
 * The period-aware spend update, shared by every table. A delta is `x` for the period ending at `p`,
 * worked out from the stored reset `b` (`'none'` when the row had none): a row of the deltas (`d.x`,
 * `d.p`, `d.b`), or in an upsert the row that was to be inserted (`excluded.spend`,
 * `excluded.budget_reset_at`, and no base); `now` is the gateway's time at the flush.
 *
 * A delta for the stored period adds to it. One for a later period, when the row still holds the
 * reset it was worked out from, starts that period: the stored one ended (its reset was not written
 * yet), or the row had none. So does one whose base is an earlier end of the stored reset's chain
 * (the stored reset is the base plus a multiple of the period's fixed length `s`, and has passed):
 * the delta was planned from a row read before other writes turned it, periods ago. So does one
 * planned from a row without a reset (base 'none') that a write has since given one, passed and on
 * the delta's chain (its period's end less a multiple of `s`): the row's first period was written
 * and this is a later one. One for a period that ended and was reset leaves the running spend alone
 * (it stays in spend_logs): ended before the latest spend of its batch, or, whenever its spend was
 * made, ended by the flush and reset to a later end of its chain (the scheduler's reset, written while
 * the batch waited). Any other was planned before an admin changed or removed the duration
 * mid-request: it adds to the stored period, which stays. Without a base (an upsert, or a batch saved
 * before bases were kept), a later period starts whenever the stored one has ended or there is none.
 */
const turned = (p: string, b: string | null, now: string, s: string) => b === null
  ? `(t.budget_reset_at is null or (t.budget_reset_at < ${p} and t.budget_reset_at <= ${now}))`
  : `(case when ${b} = 'legacy' then t.budget_reset_at is null or (t.budget_reset_at < ${p} and t.budget_reset_at <= ${now})
      when t.budget_reset_at is not distinct from nullif(${b}, 'none')::timestamptz then t.budget_reset_at is null or t.budget_reset_at < ${p}
      when ${s} is null or ${s} <= 0 then false
      when ${b} = 'none' then t.budget_reset_at < ${p} and t.budget_reset_at <= ${now}
        and mod((extract(epoch from ${p} - t.budget_reset_at) * 1000)::numeric, ${s}::numeric) = 0
      else t.budget_reset_at > ${b}::timestamptz and t.budget_reset_at < ${p} and t.budget_reset_at <= ${now}
        and mod((extract(epoch from t.budget_reset_at - ${b}::timestamptz) * 1000)::numeric, ${s}::numeric) = 0 end)`;
const SPEND = (x = "d.x", p = "d.p", b: string | null = "d.b", now = "$9::timestamptz", s: string | null = "d.s", flushed = "$13::timestamptz") => `case
    when ${p} is null or t.budget_reset_at is not distinct from ${p} then t.spend + ${x}
    when ${turned(p, b, now, s ?? "null")} then ${x}
    when ${p} < t.budget_reset_at and (${p} <= ${now}${s === null ? "" : ` or (${p} <= ${flushed} and ${onChain(p, s)})`}) then t.spend
    else t.spend + ${x} end`;
const RESET_AT = (p = "d.p", b: string | null = "d.b", now = "$9::timestamptz", s = "d.s") =>
  `case when ${p} is not null and ${turned(p, b, now, s)} then ${p} else t.budget_reset_at end`;
/**
 * A holder whose spend an admin set (keys, users, teams, customers: `spend_set_at`) after this batch's
 * write began ($14): every delta of the batch was made before the set, which replaces what was spent
 * then, so the row stays as set (spend_logs keeps the requests). A set that reached this instance
 * before the write began took its deltas out of the batch (`discard`); one made while the write was
 * under way or held up (a slow or briefly unreachable database) finds this write here.
 */
const unlessSetSince = (since: string, kept: string, value: string) => `case when t.spend_set_at > ${since} then ${kept} else ${value} end`;
const HOLDER_SPEND = unlessSetSince("$14::timestamptz", "t.spend", SPEND());
const HOLDER_RESET_AT = unlessSetSince("$14::timestamptz", "t.budget_reset_at", RESET_AT());
const UPSERT_SPEND = SPEND("excluded.spend", "excluded.budget_reset_at", null, undefined, null);
const UPSERT_RESET_AT = RESET_AT("excluded.budget_reset_at", null);

// Deltas travel as JSON documents: Postgres parses them in C far faster than parallel arrays (a flush
// can carry thousands of rows when traffic is spread over many keys). Sorted by id, so that concurrent
// flushes lock rows in the same order.
const deltas = (n: number) =>
  `(select id, x, p, b, s, g from json_to_recordset($${n}::text::json) as d(id text, x float8, p timestamptz, b text, s float8, g float8) order by id)`;
/**
 * The row the delta was planned from, not one deleted and made again under its id since (`g`, when the
 * row was made, in ms: the database keeps microseconds, a record read back milliseconds).
 */
const SAME_ROW = "(d.g is null or abs(extract(epoch from t.created_at)::float8 * 1000 - d.g) < 1)";
const FRESH = "exists (select 1 from fresh)";
const FIRST_OF = "split_part(d.id, chr(31), 1)";
const SECOND_OF = "substr(d.id, strpos(d.id, chr(31)) + 1)";

/**
 * The spend per model of one kind of owner (keys, customers, users, teams), three parts of the flush's statement:
 * `<p>d` its deltas split into owner and model; `<p>u` the rows that exist updated (not those of an owner
 * made again under its id since: `found` lists the owners the flush's update of them found, and a delta
 * without its owner's in the batch (`ownerDeltas`) belongs to no made-again row); `<p>` the others
 * inserted for the owners `owners` admits.
 */
const perModel = (p: string, table: string, owner: string, n: number, ownerDeltas: number, found: string, owners: string) => `${p}d as (
    select ${FIRST_OF} as ${owner}, ${SECOND_OF} as model, d.x, d.p, d.b, d.s, d.g from ${deltas(n)} d where ${FRESH}
  ), ${p}u as (
    update ${table} t set spend = ${SPEND()}, budget_reset_at = ${RESET_AT()}
    from ${p}d d where t.${owner} = d.${owner} and t.model = d.model
      and (d.g is null or d.${owner} in (${found}) or d.${owner} not in (select id from ${deltas(ownerDeltas)} d2))
    returning t.${owner}, t.model
  ), ${p} as (
    insert into ${table} as t (${owner}, model, spend, budget_reset_at)
    select d.${owner}, d.model, d.x, d.p from ${p}d d
    where ${owners}
      and not exists (select 1 from ${p}u where ${p}u.${owner} = d.${owner} and ${p}u.model = d.model)
    on conflict (${owner}, model) do update set spend = ${UPSERT_SPEND}, budget_reset_at = ${UPSERT_RESET_AT}
  )`;

/**
 * Every spend row of a flush in one statement: the batch id is recorded and, only if it was new, each
 * table gets its deltas. With the COPY of the log rows and the transaction around both, a flush is
 * four round trips whatever it carries (it was eleven, a statement per table, each costing a few
 * hundred µs of the event loop).
 *
 * Every key's spend per model is kept too, so a flush touches two rows per key (a customer's only for
 * the models its budget holds it to, inserted for the customers the flush wrote; a user's and a team's
 * likewise, inserted for the users and teams that exist: a team key's spend is not the user's own). The per-model rows
 * that exist are updated; only the others are inserted, and only for keys the flush found (a key
 * deleted meanwhile has no row to own them). Each row an upsert finds costs Postgres a row lock on
 * top of the update, and checking each key's existence another index lookup: a flush for 1,650 keys
 * took 47–53 ms that way against 36 ms now (1M keys, 10,000 of them with per-model rows).
 */
const APPLY = `with fresh as (
    insert into spend_batches (batch_id) values ($1) on conflict do nothing returning batch_id
  ), k as (
    update keys t set spend = ${HOLDER_SPEND}, budget_reset_at = ${HOLDER_RESET_AT}
    from ${deltas(2)} d where t.token = d.id and ${SAME_ROW} and ${FRESH}
    returning t.token
  ), u as (
    update users t set spend = ${HOLDER_SPEND}, budget_reset_at = ${HOLDER_RESET_AT}
    from ${deltas(3)} d where t.user_id = d.id and ${SAME_ROW} and ${FRESH}
    returning t.user_id
  ), tm as (
    update teams t set spend = ${HOLDER_SPEND}, budget_reset_at = ${HOLDER_RESET_AT}
    from ${deltas(4)} d where t.team_id = d.id and ${SAME_ROW} and ${FRESH}
    returning t.team_id
  ), m as (
    update team_memberships t set spend = ${SPEND()}, budget_reset_at = ${RESET_AT()}
    from ${deltas(5)} d where t.team_id = ${FIRST_OF} and t.user_id = ${SECOND_OF} and ${SAME_ROW} and ${FRESH}
  ), c as (
    update end_users t set spend = ${HOLDER_SPEND}, budget_reset_at = ${HOLDER_RESET_AT}, updated_at = now()
    from ${deltas(6)} d where t.user_id = d.id and ${SAME_ROW} and ${FRESH}
    returning t.user_id
  ), ci as (
    insert into end_users as t (user_id, spend, budget_reset_at)
    select d.id, d.x, d.p from ${deltas(6)} d where ${FRESH} and d.g is null and not exists (select 1 from c where c.user_id = d.id)
    on conflict (user_id) do update set spend = ${UPSERT_SPEND}, budget_reset_at = ${UPSERT_RESET_AT}, updated_at = now()
    returning t.user_id
  ), ${perModel("cm", "customer_model_spend", "user_id", 10, 6, "select user_id from c", "(d.user_id in (select user_id from c) or d.user_id in (select user_id from ci))")
  }, ${perModel("km", "key_model_spend", "token", 7, 2, "select token from k", "d.token in (select token from k)")
  }, ${perModel("um", "user_model_spend", "user_id", 11, 3, "select user_id from u", `exists (select 1 from users t where t.user_id = d.user_id and ${SAME_ROW})`)
  }, ${perModel("tmm", "team_model_spend", "team_id", 12, 4, "select team_id from tm", `exists (select 1 from teams t where t.team_id = d.team_id and ${SAME_ROW})`)
  }, g as (
    update gateway_spend t set spend = ${SPEND()}, budget_reset_at = ${RESET_AT()}
    from ${deltas(8)} d where t.id = 1 and ${FRESH}
  )
  select (select count(*)::int from fresh) as fresh, (select count(*)::int from k) as keys`;

/**
 * Spend settled under a key's old token and written after the key was regenerated: the keys the
 * flush did not find, followed to their new token (rare: only a flush that missed a key runs it).
 * One delta at a time, as two old tokens of one key must both count.
 */
const RENAMED = `select d.id, r.new_token from unnest($1::text[], $2::float8[]) d(id, g) join key_renames r on r.old_token = d.id
  where not exists (select 1 from keys t where t.token = d.id and ${SAME_ROW})`;
const APPLY_RENAMED_KEY = `update keys t
  set spend = ${unlessSetSince("$8::timestamptz", "t.spend", SPEND("d.x", "d.p", "d.b", "$4::timestamptz", "d.s", "$7::timestamptz"))},
    budget_reset_at = ${unlessSetSince("$8::timestamptz", "t.budget_reset_at", RESET_AT("d.p", "d.b", "$4::timestamptz"))}
  from (select $2::float8 as x, $3::timestamptz as p, $5::text as b, $6::float8 as s) d where t.token = $1`;
const APPLY_RENAMED_KEY_MODEL = `insert into key_model_spend as t (token, model, spend, budget_reset_at)
  select $1, $2, $3::float8, $4::timestamptz where exists (select 1 from keys where token = $1)
  on conflict (token, model) do update set spend = ${SPEND("excluded.spend", "excluded.budget_reset_at", null, "$5::timestamptz", null)},
    budget_reset_at = ${RESET_AT("excluded.budget_reset_at", null, "$5::timestamptz")}`;

/** A delta's base as the write reads it: a time, `none`, or `legacy` for a saved batch that kept none. */
const baseText = (base: number | null | undefined) => (base === undefined ? "legacy" : base === null ? "none" : new Date(base).toISOString());

/** When a delta's row was made, as the SQL reads it (a saved batch may hold anything there). */
const bornOf = (d: Delta) => (typeof d.born === "number" && Number.isFinite(d.born) ? d.born : null);

/** The deltas as the SQL reads them. A NUL (which Postgres text cannot hold) is dropped: one odd id never costs the batch. */
function deltaJson(deltas: Delta[]): string {
  return JSON.stringify(deltas.map((d) => ({
    id: d.id.replaceAll("\0", ""), x: d.amount, p: d.period === null ? null : new Date(d.period).toISOString(), b: baseText(d.base), s: d.step ?? null,
    g: bornOf(d),
  })));
}

/**
 * A batch that cannot be turned into the statement's parameters (a period that is not a date): no
 * retry can write it, as no retry can write one the database refuses for its content.
 */
export class UnencodableBatch extends Error {
  constructor(cause: unknown) {
    super(`spend batch cannot be encoded: ${String(cause)}`);
  }
}

function encode(batch: WritableBatch): unknown[] {
  try {
    return [
      batch.id,
      deltaJson(batch.keys.sorted()),
      deltaJson(batch.users.sorted()),
      deltaJson(batch.teams.sorted()),
      deltaJson(batch.members.sorted()),
      deltaJson(batch.customers.sorted()),
      deltaJson(batch.keyModels.sorted()),
      deltaJson(batch.gateway.sorted()),
      new Date(batch.latest).toISOString(),
      deltaJson(batch.customerModels.sorted()),
      deltaJson(batch.userModels.sorted()),
      deltaJson(batch.teamModels.sorted()),
    ];
  } catch (error) {
    throw new UnencodableBatch(error);
  }
}

/** Applies a batch exactly once: a batch id already recorded means a retry of a committed flush. */
export async function applyBatch(db: Sql, batch: WritableBatch, now = Date.now()): Promise<boolean> {
  const since = batch.writingSince ?? null;
  const params = [...encode(batch), new Date(now).toISOString(), since === null ? null : new Date(since).toISOString()];
  return db.transaction(async (tx) => {
    const [row] = await tx.query<{ fresh: number; keys: number }>(APPLY, params);
    if (row?.fresh !== 1) return false;
    if (row.keys < batch.keys.size) await applyRenamed(tx, batch, now, since);
    // The log rows in one COPY: the cheapest way into the table, and a row per request is the bulk of the write.
    if (batch.size > 0) await tx.copyFrom("spend_logs", LOG_COLUMNS, batch.logRows());
    return true;
  });
}

async function applyRenamed(tx: Sql, batch: WritableBatch, now: number, since: number | null): Promise<void> {
  const keys = batch.keys.sorted();
  const renamed = new Map((await tx.query<{ id: string; new_token: string }>(RENAMED, [keys.map((d) => d.id), keys.map(bornOf)])).map((r) => [r.id, r.new_token]));
  if (renamed.size === 0) return;
  const at = (period: number | null) => (period === null ? null : new Date(period).toISOString());
  for (const d of keys) {
    const token = renamed.get(d.id);
    if (token) await tx.query(APPLY_RENAMED_KEY, [token, d.amount, at(d.period), at(batch.latest), baseText(d.base), d.step ?? null, at(now), at(since)]);
  }
  for (const d of batch.keyModels.sorted()) {
    const cut = d.id.indexOf(SEP);
    const token = renamed.get(d.id.slice(0, cut));
    if (token) await tx.query(APPLY_RENAMED_KEY_MODEL, [token, d.id.slice(cut + 1), d.amount, at(d.period), at(batch.latest)]);
  }
}
