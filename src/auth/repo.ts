import type { Sql } from "../db";
import type {
  BudgetRecord,
  CustomerRecord,
  KeyRecord,
  MembershipRecord,
  ModelSpendRecord,
  Principal,
  TeamRecord,
  UserRecord,
} from "./principal";

export type Json = Record<string, any>;

/**
 * row_to_json renders timestamps as text: turn them back into Dates. One the runtime cannot read (a
 * year past 9999, stored before such dates were refused) is none: an invalid Date would carry NaN into
 * the budget's period and from there into every spend write.
 */
export function date(value: unknown): Date | null {
  if (value == null) return null;
  const parsed = new Date(value as string);
  return Number.isFinite(parsed.getTime()) ? parsed : null;
}

export function budgetFrom(row: Json | null): BudgetRecord | null {
  if (!row) return null;
  return { ...row, budget_reset_at: date(row.budget_reset_at), model_max_budget: row.model_max_budget ?? {} } as BudgetRecord;
}

const PRINCIPAL_SQL = `
select k.token, row_to_json(k) as key, row_to_json(u) as "user", row_to_json(t) as team,
       row_to_json(m) as membership, row_to_json(mb) as membership_budget, row_to_json(kb) as key_budget,
       coalesce((select json_object_agg(s.model, json_build_object('spend', s.spend, 'budget_reset_at', s.budget_reset_at, 'budget_anchor_at', s.budget_anchor_at))
                 from key_model_spend s where s.token = k.token), '{}') as model_spend,
       coalesce((select json_object_agg(s.model, json_build_object('spend', s.spend, 'budget_reset_at', s.budget_reset_at, 'budget_anchor_at', s.budget_anchor_at))
                 from user_model_spend s where s.user_id = u.user_id), '{}') as user_model_spend,
       coalesce((select json_object_agg(s.model, json_build_object('spend', s.spend, 'budget_reset_at', s.budget_reset_at, 'budget_anchor_at', s.budget_anchor_at))
                 from team_model_spend s where s.team_id = t.team_id), '{}') as team_model_spend
from keys k
left join users u on u.user_id = k.user_id
left join teams t on t.team_id = k.team_id
left join team_memberships m on m.team_id = k.team_id and m.user_id = k.user_id
left join budgets mb on mb.budget_id = m.budget_id
left join budgets kb on kb.budget_id = k.budget_id
where k.token = any(array(select json_array_elements_text($1::text::json)))`;

/** One round trip: the key and everything it belongs to. */
export async function loadPrincipal(sql: Sql, token: string): Promise<Principal | null> {
  return (await loadPrincipals(sql, [token])).get(token) ?? null;
}

/** One round trip for many keys (the cache's reload of the stale ones in use); unknown tokens are absent. */
export async function loadPrincipals(sql: Sql, tokens: string[]): Promise<Map<string, Principal>> {
  return new Map((await loadPrincipalRows(sql, tokens)).map((row) => [row.token as string, principalFrom(row)]));
}

/** The rows `loadPrincipals` reads, as they come: plain JSON, kept across a restart (see ../warm.ts). */
export function loadPrincipalRows(sql: Sql, tokens: string[]): Promise<Json[]> {
  return sql.query(PRINCIPAL_SQL, [JSON.stringify(tokens)]);
}

export function principalFrom(row: Json): Principal {
  const k = row.key as Json;
  const key: KeyRecord = {
    ...(k as KeyRecord),
    budget_reset_at: date(k.budget_reset_at),
    expires: date(k.expires),
    created_at: date(k.created_at)!,
    budget_anchor_at: date(k.budget_anchor_at),
  };
  const u = row.user as Json | null;
  const user: UserRecord | null = u
    ? { ...(u as UserRecord), budget_reset_at: date(u.budget_reset_at), created_at: date(u.created_at)!, budget_anchor_at: date(u.budget_anchor_at),
        model_max_budget: u.model_max_budget ?? {}, modelSpend: modelSpendOf(row.user_model_spend) }
    : null;
  const t = row.team as Json | null;
  const team: TeamRecord | null = t
    ? { ...(t as TeamRecord), budget_reset_at: date(t.budget_reset_at), created_at: date(t.created_at)!, budget_anchor_at: date(t.budget_anchor_at),
        model_max_budget: t.model_max_budget ?? {}, modelSpend: modelSpendOf(row.team_model_spend) }
    : null;
  const m = row.membership as Json | null;
  const membership: MembershipRecord | null = m
    ? {
        team_id: m.team_id,
        user_id: m.user_id,
        spend: m.spend,
        budget_reset_at: date(m.budget_reset_at),
        budget: budgetFrom(row.membership_budget),
        created_at: date(m.created_at)!,
        budget_anchor_at: date(m.budget_anchor_at),
      }
    : null;
  return { key, keyBudget: budgetFrom(row.key_budget), user, team, membership, modelSpend: modelSpendOf(row.model_spend), spentHere: 0 };
}

/** Spend per model as the queries aggregate it (none in rows saved before it was read). */
function modelSpendOf(rows: Json | null | undefined): Record<string, ModelSpendRecord> {
  const modelSpend: Record<string, ModelSpendRecord> = {};
  for (const [model, value] of Object.entries(rows ?? {})) {
    modelSpend[model] = { spend: value.spend, budget_reset_at: date(value.budget_reset_at), budget_anchor_at: date(value.budget_anchor_at) };
  }
  return modelSpend;
}

/** An old secret of a regenerated key still within its grace period: the key's token now, and until when (ms). */
export interface Grace {
  token: string;
  until: number;
}

/** One round trip for many tokens: those that are old secrets still within their grace at `now` (the others are absent). */
export async function loadGraces(sql: Sql, tokens: string[], now: number): Promise<Map<string, Grace>> {
  const rows = await sql.query(
    "select old_token, new_token, revoke_at from key_renames where old_token = any($1::text[]) and revoke_at > $2", [tokens, new Date(now)]);
  return new Map(rows.map((row) => [row.old_token as string, { token: row.new_token as string, until: date(row.revoke_at)!.getTime() }]));
}

const CUSTOMER_SQL = `
select e.user_id, row_to_json(e) as customer, row_to_json(b) as budget,
       coalesce((select json_object_agg(s.model, json_build_object('spend', s.spend, 'budget_reset_at', s.budget_reset_at, 'budget_anchor_at', s.budget_anchor_at))
                 from customer_model_spend s where s.user_id = e.user_id), '{}') as model_spend
from end_users e left join budgets b on b.budget_id = e.budget_id
where e.user_id = any(array(select json_array_elements_text($1::text::json)))`;

/** The queries whose rows a restart may start from (see ../warm.ts): a change to them is a change of format. */
export const ROW_QUERIES: readonly string[] = [PRINCIPAL_SQL, CUSTOMER_SQL];

export function customerFrom(row: Json): CustomerRecord {
  const e = row.customer as Json;
  return {
    user_id: e.user_id,
    alias: e.alias,
    spend: e.spend,
    budget_reset_at: date(e.budget_reset_at),
    blocked: e.blocked,
    budget: budgetFrom(row.budget),
    created_at: date(e.created_at)!,
    budget_anchor_at: date(e.budget_anchor_at),
    modelSpend: modelSpendOf(row.model_spend),
  };
}

/** The customer named by a request's `user`, created on first sight (concurrent first sights are fine). */
export async function loadOrCreateCustomer(sql: Sql, userId: string): Promise<CustomerRecord> {
  const found = (await loadCustomers(sql, [userId])).get(userId);
  if (found) return found;
  await sql.query("insert into end_users (user_id) values ($1) on conflict (user_id) do nothing", [userId]);
  return (await loadCustomers(sql, [userId])).get(userId)!;
}

/** One round trip for many customers; unknown ids are absent. */
export async function loadCustomers(sql: Sql, ids: string[]): Promise<Map<string, CustomerRecord>> {
  return new Map((await loadCustomerRows(sql, ids)).map((row) => [row.user_id as string, customerFrom(row)]));
}

export function loadCustomerRows(sql: Sql, ids: string[]): Promise<Json[]> {
  return sql.query(CUSTOMER_SQL, [JSON.stringify(ids)]);
}
