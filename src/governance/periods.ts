import { addDuration, currentPeriodEnd, fixedLength, parseDuration } from "./duration";

/** Where an entity's spend stands now: which period it is in, and the stored spend that counts. */
export interface Period {
  /** End of the current budget period (ms), or null for a budget that never resets. */
  end: number | null;
  /** Stored spend that belongs to the current period (0 when the stored period has ended). */
  spend: number;
  /**
   * The period's length (ms) when it is fixed, null for calendar months or none: every period end of
   * the row's chain is its stored reset plus a multiple of it, which lets a write tell periods that
   * turned from a reset an admin moved (see spend/repo.ts).
   */
  step: number | null;
}

/**
 * A budget whose `budget_reset_at` has passed counts as already reset, whatever the scheduler has
 * done: enforcement never waits for a reset to be written. With no reset stored, the first period
 * began at `createdAt`; calendar months count their ends from `origin` (see currentPeriodEnd), by
 * default `createdAt`.
 */
export function periodOf(
  spend: number,
  duration: string | null | undefined,
  resetAt: Date | null,
  createdAt: Date | null,
  now: number,
  origin: Date | null = createdAt,
): Period {
  const parsed = parseDuration(duration ?? undefined);
  if (!parsed) return { end: null, spend, step: null };
  const nowDate = new Date(now);
  const anchor = resetAt ?? addDuration(createdAt ?? nowDate, parsed);
  const end = currentPeriodEnd(anchor, parsed, nowDate, resetAt ? origin : createdAt).getTime();
  return { end, spend: resetAt && resetAt.getTime() === end ? spend : 0, step: fixedLength(parsed) };
}

/** Where a row's calendar-month periods count from: when its chain of periods began, else when it was made. */
export const anchorOf = (row: { budget_anchor_at?: Date | null; created_at?: Date | null }): Date | null =>
  row.budget_anchor_at ?? row.created_at ?? null;

export const RATE_WINDOW_MS = 60_000;

export function rateWindow(now: number): { start: number; end: number } {
  const start = Math.floor(now / RATE_WINDOW_MS) * RATE_WINDOW_MS;
  return { start, end: start + RATE_WINDOW_MS };
}
