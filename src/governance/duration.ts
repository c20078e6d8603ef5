/**
 * Budget and key durations as LiteLLM writes them: `30s`, `20m`, `1h`, `7d`, `2w`, `1mo`.
 * Months are calendar months (UTC), everything else a fixed number of milliseconds.
 */

export interface Duration {
  amount: number;
  unit: "s" | "m" | "h" | "d" | "w" | "mo";
  /** The text it was parsed from, normalised (`"30d"`). */
  text: string;
}

const UNIT_MS = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 } as const;
const PATTERN = /^\s*(\d{1,6})\s*(mo|s|m|h|d|w|sec|secs|seconds?|min|mins|minutes?|hr|hrs|hours?|days?|weeks?|months?)\s*$/;
/** Longer spellings LiteLLM reads by their first letters (`1hr` is an hour, its own docs write it). */
const SPELLED: Record<string, Duration["unit"]> = {
  sec: "s", secs: "s", second: "s", seconds: "s", min: "m", mins: "m", minute: "m", minutes: "m",
  hr: "h", hrs: "h", hour: "h", hours: "h", day: "d", days: "d", week: "w", weeks: "w", month: "mo", months: "mo",
};

/** The longest duration taken: a century (dates past the year 9999 are not storable). */
const MAX_MONTHS = 1_200;
const MAX_MS = 100 * 365.25 * UNIT_MS.d;

/** Parses a duration, or returns null when the text is not one. Zero-length durations and ones over a century are refused. */
export function parseDuration(text: unknown): Duration | null {
  if (typeof text !== "string") return null;
  const match = PATTERN.exec(text);
  if (!match) return null;
  const amount = Number(match[1]);
  if (!Number.isSafeInteger(amount) || amount <= 0) return null;
  const unit = SPELLED[match[2]!] ?? (match[2] as Duration["unit"]);
  if (unit === "mo" ? amount > MAX_MONTHS : amount * UNIT_MS[unit] > MAX_MS) return null;
  return { amount, unit, text: `${amount}${unit}` };
}

/** Whether two durations are the same length (`60m` and `1h`; months only as months). */
export function sameDuration(a: Duration | null, b: Duration | null): boolean {
  if (!a || !b) return a === b;
  if (a.unit === "mo" || b.unit === "mo") return a.unit === b.unit && a.amount === b.amount;
  return a.amount * UNIT_MS[a.unit] === b.amount * UNIT_MS[b.unit];
}

/** A duration's length in ms, or null for months (their length varies). */
export function fixedLength(duration: Duration): number | null {
  return duration.unit === "mo" ? null : duration.amount * UNIT_MS[duration.unit];
}

/** `from` moved forward by one duration. */
export function addDuration(from: Date, duration: Duration): Date {
  if (duration.unit === "mo") {
    const next = new Date(from.getTime());
    const day = next.getUTCDate();
    next.setUTCDate(1);
    next.setUTCMonth(next.getUTCMonth() + duration.amount);
    const lastDay = new Date(Date.UTC(next.getUTCFullYear(), next.getUTCMonth() + 1, 0)).getUTCDate();
    next.setUTCDate(Math.min(day, lastDay));
    return next;
  }
  return new Date(from.getTime() + duration.amount * UNIT_MS[duration.unit]);
}

/** Whole months from `from` to `to` by the calendar (UTC), ignoring days and times. */
const monthsBetween = (from: Date, to: Date) =>
  (to.getUTCFullYear() - from.getUTCFullYear()) * 12 + to.getUTCMonth() - from.getUTCMonth();

/**
 * How many steps of `duration` (months) take `origin` to `resetAt` exactly (none when it is the origin:
 * a reset an admin set), or null when `resetAt` is not on that chain. Each end of the chain is counted
 * from the origin, not from the end before it, so a chain begun on the 31st ends on the 30th in April
 * and on the 31st again in May.
 */
function stepsFrom(origin: Date, resetAt: Date, duration: Duration): number | null {
  const months = monthsBetween(origin, resetAt);
  if (months < 0 || months % duration.amount !== 0) return null;
  const steps = months / duration.amount;
  return addMonths(origin, steps * duration.amount).getTime() === resetAt.getTime() ? steps : null;
}

function addMonths(from: Date, months: number): Date {
  return addDuration(from, { amount: months, unit: "mo", text: `${months}mo` });
}

/**
 * The end of the budget period that contains `now`, given a period that ended (or ends) at `resetAt`.
 * Several missed periods collapse into one step: the result is always after `now`.
 *
 * Months: when `resetAt` lies on the chain of periods begun at `origin` (the row was made with its
 * duration, so its first period began then), the next ends are counted from the origin and keep its day
 * of the month; otherwise from `resetAt`, whose day they keep (a month without it ends on its last day).
 */
export function currentPeriodEnd(resetAt: Date, duration: Duration, now: Date, origin: Date | null = null): Date {
  if (resetAt.getTime() > now.getTime()) return resetAt;
  if (duration.unit !== "mo") {
    const step = duration.amount * UNIT_MS[duration.unit];
    const missed = Math.floor((now.getTime() - resetAt.getTime()) / step) + 1;
    return new Date(resetAt.getTime() + missed * step);
  }
  const steps = origin ? stepsFrom(origin, resetAt, duration) : null;
  if (origin && steps !== null) {
    let next = steps + Math.max(1, Math.floor(monthsBetween(resetAt, now) / duration.amount));
    while (addMonths(origin, next * duration.amount).getTime() <= now.getTime()) next++;
    return addMonths(origin, next * duration.amount);
  }
  let end = resetAt;
  while (end.getTime() <= now.getTime()) end = addDuration(end, duration);
  return end;
}
