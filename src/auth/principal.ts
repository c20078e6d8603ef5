/** Everything the gateway needs to know about a caller, loaded once and cached. */

export interface BudgetRecord {
  budget_id: string;
  max_budget: number | null;
  soft_budget: number | null;
  budget_duration: string | null;
  budget_reset_at: Date | null;
  tpm_limit: number | null;
  rpm_limit: number | null;
  max_parallel_requests: number | null;
  model_max_budget: Record<string, ModelBudget>;
}

export interface ModelBudget {
  /** Null for an entry holding only per-model limits. */
  budget_limit: number | null;
  time_period?: string | null;
  /** Per-model limits LiteLLM also reads from here (after the key's own, see governance/policy.ts). */
  rpm_limit?: number | null;
  tpm_limit?: number | null;
}

export interface KeyRecord {
  token: string;
  key_name: string;
  key_alias: string | null;
  spend: number;
  max_budget: number | null;
  budget_duration: string | null;
  budget_reset_at: Date | null;
  soft_budget: number | null;
  models: string[];
  tpm_limit: number | null;
  rpm_limit: number | null;
  max_parallel_requests: number | null;
  model_max_budget: Record<string, ModelBudget>;
  model_rpm_limit: Record<string, number>;
  model_tpm_limit: Record<string, number>;
  user_id: string | null;
  team_id: string | null;
  budget_id: string | null;
  expires: Date | null;
  blocked: boolean;
  metadata: Record<string, unknown>;
  created_at: Date;
  /** When its chain of budget periods began, if stored (see sql/0011_budget_anchor.sql). */
  budget_anchor_at?: Date | null;
}

/** What users and teams both carry: their own budget, limits and models. */
interface BudgetHolder {
  spend: number;
  max_budget: number | null;
  budget_duration: string | null;
  budget_reset_at: Date | null;
  models: string[];
  tpm_limit: number | null;
  rpm_limit: number | null;
  max_parallel_requests: number | null;
  created_at: Date;
  /** When its chain of budget periods began, if stored (see sql/0011_budget_anchor.sql). */
  budget_anchor_at?: Date | null;
  /** Budgets per model, held across all the holder's keys (as LiteLLM holds a user's and a team's). */
  model_max_budget: Record<string, ModelBudget>;
  /** Its spend per model, kept for the models its model_max_budget holds. */
  modelSpend: Record<string, ModelSpendRecord>;
}

export interface UserRecord extends BudgetHolder {
  user_id: string;
  user_role: string;
}

export interface TeamRecord extends BudgetHolder {
  team_id: string;
  team_alias: string | null;
  blocked: boolean;
  /** Free-form, but for the team's per-model limits (`model_rpm_limit`, `model_tpm_limit`), as LiteLLM keeps them. */
  metadata: Record<string, any> | null;
}

export interface MembershipRecord {
  team_id: string;
  user_id: string;
  spend: number;
  budget_reset_at: Date | null;
  budget: BudgetRecord | null;
  created_at: Date;
  /** When its chain of budget periods began, if stored (see sql/0011_budget_anchor.sql). */
  budget_anchor_at?: Date | null;
}

export interface ModelSpendRecord {
  spend: number;
  budget_reset_at: Date | null;
  /** When an admin change started its period, if one did (else its periods count from its holder's making). */
  budget_anchor_at?: Date | null;
}

export interface Principal {
  key: KeyRecord;
  /** The budget row named by the key's `budget_id`: its limits apply where the key sets none. */
  keyBudget: BudgetRecord | null;
  user: UserRecord | null;
  team: TeamRecord | null;
  membership: MembershipRecord | null;
  modelSpend: Record<string, ModelSpendRecord>;
  /**
   * What this instance has charged the key since the record was read: with `key.spend`, the spend a
   * key without a budget reports in `x-litellm-key-spend` (a budgeted key reports its counter), counted
   * in the key's period that ends at `spentHereEnd` (null: a key whose spend never resets).
   */
  spentHere: number;
  spentHereEnd?: number | null;
  /** What this instance had charged the key but not yet written when the record was read (see `keySpendHere`). */
  unwrittenAtLoad?: number;
}

export interface CustomerRecord {
  user_id: string;
  alias: string | null;
  spend: number;
  budget_reset_at: Date | null;
  blocked: boolean;
  budget: BudgetRecord | null;
  /** `budget` is max_end_user_budget_id's, not one of the customer's own: where it sets no max_budget, max_end_user_budget does. */
  defaultBudget?: boolean;
  created_at: Date;
  /** When its chain of budget periods began, if stored (see sql/0011_budget_anchor.sql). */
  budget_anchor_at?: Date | null;
  /** Made up while the database could not answer: no stored row is known, and its spend makes one. */
  unstored?: boolean;
  /** Its spend per model, kept for the models its budget's model_max_budget holds. */
  modelSpend: Record<string, ModelSpendRecord>;
}

/** Who is calling: the master key, or a virtual key with everything it belongs to. */
export type Caller = { kind: "master" } | { kind: "key"; principal: Principal; admin: boolean };

export function isProxyAdmin(principal: Principal): boolean {
  return principal.user?.user_role === "proxy_admin";
}

/** LiteLLM's read-only admin: views every key, user, team and spend, changes nothing. */
export function isProxyAdminViewer(caller: Caller): boolean {
  return caller.kind === "key" && caller.principal.user?.user_role === "proxy_admin_viewer";
}

/** Adds what this instance charged a key; spend charged in a period that has since ended is not the running period's. */
export function chargedHere(principal: Principal, cost: number, periodEnd: number | null): void {
  if ((principal.spentHereEnd ?? null) !== periodEnd) {
    principal.spentHere = 0;
    principal.spentHereEnd = periodEnd;
  }
  principal.spentHere += cost;
}

/** A key's spend in the period ending at `periodEnd` (null: no period) without a budget counter: stored, and charged here. */
export function keySpendHere({ key, spentHere, spentHereEnd, unwrittenAtLoad }: Principal, periodEnd: number | null): number {
  const stored = periodEnd === null || key.budget_reset_at?.getTime() === periodEnd ? key.spend + (unwrittenAtLoad ?? 0) : 0;
  return stored + ((spentHereEnd ?? null) === periodEnd ? spentHere : 0);
}
