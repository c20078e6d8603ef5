import type { Config } from "../config";
import type { Database } from "../db";
import type { Gateway } from "../gateway";
import type { Logger } from "../log";
import { resetDueBudgets } from "./resets";

export { resetDueBudgets } from "./resets";

export interface SchedulerOptions {
  db: Database;
  log: Logger;
  config: Config;
  gateway: Gateway;
}

const MIN_PASS_INTERVAL_MS = 1000;
/** The longest delay a timer holds: past it (about 24.8 days) the runtime fires at once, every millisecond. */
const LONGEST_TIMER_MS = 2 ** 31 - 1;

/**
 * Runs resets every random(proxy_budget_rescheduler_min_time, _max_time) seconds, so instances
 * started together do not all hit the database at once.
 */
export function startBudgetScheduler(options: SchedulerOptions) {
  const { db, log, gateway } = options;
  let timer: Timer | null = null;
  let stopped = false;

  // At most a pass a second: settings of 0 (tests written for LiteLLM use them) would otherwise query
  // the database back to back.
  const delayMs = () => {
    const g = gateway.runtime().config.general_settings;
    const min = g.proxy_budget_rescheduler_min_time;
    const max = Math.max(min, g.proxy_budget_rescheduler_max_time);
    return Math.min(LONGEST_TIMER_MS, Math.max(MIN_PASS_INTERVAL_MS, (min + Math.random() * (max - min)) * 1000));
  };

  const tick = async () => {
    try {
      const l = gateway.runtime().config.litellm_settings;
      const counts = await resetDueBudgets(db, new Date(), {
        internalUserBudgetDuration: l.internal_user_budget_duration ?? undefined,
        gatewayBudgetDuration: l.budget_duration ?? undefined,
        endUserBudgetId: l.max_end_user_budget_id ?? undefined,
      });
      if (Object.keys(counts).length > 0) log.info("budgets reset", counts);
      // Batch ids only guard retries of recent flushes; a day is plenty.
      await db.query("delete from spend_batches where applied_at < now() - interval '1 day'");
      const [row] = await db.query("select spend, budget_reset_at, budget_anchor_at from gateway_spend where id = 1");
      if (row) {
        gateway.gatewayState.spend = row.spend;
        gateway.gatewayState.budgetResetAt = row.budget_reset_at;
        gateway.gatewayState.anchorAt = row.budget_anchor_at;
      }
    } catch (error) {
      log.warn("budget reset pass failed; will retry", { error: String(error) });
    } finally {
      if (!stopped) timer = setTimeout(tick, delayMs());
    }
  };
  timer = setTimeout(tick, delayMs());

  return {
    stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
    },
  };
}
