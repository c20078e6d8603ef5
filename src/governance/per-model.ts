import type { ModelBudget, ModelSpendRecord } from "../auth/principal";
import { type Period, periodOf } from "./periods";

/**
 * A model name as part of a header name, which only takes letters, digits and ``!#$%&'*+-.^_`|~``:
 * anything else (`/`, `:`, spaces, accents) becomes `-`, so `org/llama3:8b` is `org-llama3-8b`.
 */
export const headerToken = (name: string) => name.replace(/[^A-Za-z0-9!#$%&'*+.^_`|~-]/g, "-");

/** A limit stored in JSON (a key's metadata, a model's budget), or null when it holds none (the admin API refuses anything else). */
export function limitOf(holder: unknown, name: string): number | null {
  const value = typeof holder === "object" && holder !== null ? (holder as Record<string, unknown>)[name] : undefined;
  return typeof value === "number" && value >= 0 ? value : null;
}

/**
 * The names a per-model key budget or limit may be keyed by, in the order LiteLLM looks: the name the
 * request asked for, the group serving it (an alias's target), and the asked name without its
 * `provider/` prefix (`openai/gpt-4o` finds an entry keyed `gpt-4o`).
 */
export function modelNames(requested: string, model: string): string[] {
  const names = [requested];
  if (model !== requested) names.push(model);
  const slash = requested.lastIndexOf("/");
  const bare = slash < 0 ? requested : requested.slice(slash + 1);
  if (!names.includes(bare)) names.push(bare);
  return names;
}

/** Whether a model_max_budget holds any entry (without making a list of them). */
export function holdsAny(budgets: Record<string, unknown> | null | undefined): boolean {
  if (!budgets) return false;
  for (const _ in budgets) return true;
  return false;
}

/** Who holds budgets per model beside keys: a customer (through its budget), a user, a team. */
export interface ModelBudgetHolder {
  budgets: Record<string, ModelBudget> | null | undefined;
  /** Its spend per model, kept for the models it budgets. */
  spend: Record<string, ModelSpendRecord>;
  /** When it was made: the first period of an entry without a stored reset starts there. */
  createdAt: Date;
}

/** A holder's budget for one model: the name it is keyed by, its limit, and the period its spend counts in. */
export interface HeldModelBudget {
  name: string;
  limit: number;
  period: Period;
  /** The stored reset the period was worked out from. */
  resetAt: Date | null;
}

/**
 * The holder's budget under the first of `names` with a budget_limit (an entry may hold limits alone):
 * its spend per model is kept only for the models it budgets, so the spend is recorded under that name.
 */
export function heldModelBudget(holder: ModelBudgetHolder, names: readonly string[], now: number): HeldModelBudget | null {
  for (const name of names) {
    const entry = holder.budgets?.[name];
    if (!entry || typeof entry.budget_limit !== "number") continue;
    const stored = holder.spend[name];
    const resetAt = stored?.budget_reset_at ?? null;
    const origin = stored?.budget_anchor_at ?? holder.createdAt;
    return { name, limit: entry.budget_limit, period: periodOf(stored?.spend ?? 0, entry.time_period, resetAt, holder.createdAt, now, origin), resetAt };
  }
  return null;
}
