import type { Clock } from "../clock";
import { bounded } from "./bounded";
import type { Sql } from "../db";
import type { BudgetRecord, CustomerRecord } from "./principal";
import { budgetFrom } from "./repo";

/**
 * The budget `litellm_settings.max_end_user_budget_id` names, which customers without a budget of their
 * own are held to, as LiteLLM holds them (its max_budget, budget_duration, limits and model_max_budget).
 * Read from the database and kept `ttlMs`, or until an admin change forgets it (`forget`). A budget that
 * does not exist gives none: those customers run as if the setting were unset.
 */
export function createEndUserBudget(db: Sql, clock: Clock, ttlMs: number, idOf: () => string | undefined) {
  let held: { id: string; budget: BudgetRecord | null; at: number } | null = null;
  let loading: { id: string; read: Promise<BudgetRecord | null> } | null = null;
  /** Bumped by `forget`: a read that started before must not be kept. */
  let epoch = 0;
  /** Customers with the budget applied: one object per record and budget, as plans are kept per customer object. */
  const applied = new WeakMap<CustomerRecord, CustomerRecord>();

  async function read(id: string): Promise<BudgetRecord | null> {
    const started = epoch;
    try {
      const [row] = await db.query("select * from budgets where budget_id = $1", [id]);
      const budget = budgetFrom(row ?? null);
      if (started === epoch) held = { id, budget, at: clock.now() };
      return budget;
    } catch (error) {
      // The database unreachable: the budget last read still holds.
      if (held?.id === id) return held.budget;
      throw error;
    } finally {
      if (loading?.id === id) loading = null;
    }
  }

  async function current(): Promise<BudgetRecord | null> {
    const id = idOf();
    if (!id) return null;
    if (held?.id === id && clock.now() - held.at < ttlMs) return held.budget;
    if (loading?.id !== id) loading = { id, read: read(id) };
    return bounded(loading.read);
  }

  function withDefault(customer: CustomerRecord, budget: BudgetRecord | null): CustomerRecord {
    if (!budget) return customer;
    let withBudget = applied.get(customer);
    if (!withBudget || withBudget.budget !== budget) applied.set(customer, (withBudget = { ...customer, budget, defaultBudget: true }));
    return withBudget;
  }

  return {
    /** The customer as it is held to budgets: with the default budget when it has none of its own. */
    async apply(customer: CustomerRecord): Promise<CustomerRecord> {
      if (customer.budget) return customer;
      return withDefault(customer, await current());
    },
    /** As `apply`, with the budget held now, reading nothing (for /metrics): none while it is not read yet. */
    peek(customer: CustomerRecord): CustomerRecord {
      if (customer.budget || !held || held.id !== idOf()) return customer;
      return withDefault(customer, held.budget);
    },
    forget(): void {
      epoch++;
      held = null;
      loading = null;
    },
    /** Read again at the next use; the budget held meanwhile still holds while the database cannot answer. */
    expire(): void {
      epoch++;
      loading = null;
      if (held) held = { ...held, at: -Infinity };
    },
  };
}
