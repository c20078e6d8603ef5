import { describe, expect, test } from "bun:test";
import { addDuration, currentPeriodEnd, fixedLength, parseDuration, sameDuration } from "../../src/governance/duration";

const at = (iso: string) => new Date(iso);
const month = parseDuration("1mo")!;

describe("parseDuration", () => {
  test("reads LiteLLM's short forms and its longer spellings", () => {
    expect(parseDuration("30s")).toEqual({ amount: 30, unit: "s", text: "30s" });
    expect(parseDuration("20m")?.text).toBe("20m");
    expect(parseDuration("1hr")?.text).toBe("1h");
    expect(parseDuration(" 7 days ")?.text).toBe("7d");
    expect(parseDuration("2weeks")?.text).toBe("2w");
    expect(parseDuration("1month")?.text).toBe("1mo");
    expect(parseDuration("3mo")?.text).toBe("3mo");
  });

  test("refuses what is not a duration, zero, and more than a century", () => {
    for (const bad of ["", "monthly", "1y", "-1d", "1.5h", "0s", "0mo", "1 d h", "1201mo", "36526d", "5300w", 30, null, undefined]) {
      expect(parseDuration(bad)).toBeNull();
    }
    expect(parseDuration("1200mo")?.text).toBe("1200mo");
    expect(parseDuration("36525d")?.text).toBe("36525d");
  });
});

describe("sameDuration and fixedLength", () => {
  test("fixed durations compare by length, months only as months", () => {
    expect(sameDuration(parseDuration("60m"), parseDuration("1h"))).toBe(true);
    expect(sameDuration(parseDuration("7d"), parseDuration("1w"))).toBe(true);
    expect(sameDuration(parseDuration("30d"), month)).toBe(false);
    expect(sameDuration(month, parseDuration("1months"))).toBe(true);
    expect(sameDuration(null, null)).toBe(true);
    expect(sameDuration(month, null)).toBe(false);
    expect(fixedLength(parseDuration("2h")!)).toBe(7_200_000);
    expect(fixedLength(month)).toBeNull();
  });
});

describe("calendar months (UTC)", () => {
  test("a month later is the same day and time of day", () => {
    expect(addDuration(at("2026-03-10T11:00:00.123Z"), month).toISOString()).toBe("2026-04-10T11:00:00.123Z");
    expect(addDuration(at("2026-12-15T23:30:00Z"), month).toISOString()).toBe("2027-01-15T23:30:00.000Z");
    expect(addDuration(at("2026-11-30T00:00:00Z"), parseDuration("3mo")!).toISOString()).toBe("2027-02-28T00:00:00.000Z");
  });

  test("a month without the day ends on its last day, and the periods after it keep that day", () => {
    expect(addDuration(at("2026-01-31T09:00:00Z"), month).toISOString()).toBe("2026-02-28T09:00:00.000Z");
    expect(addDuration(at("2028-01-31T09:00:00Z"), month).toISOString()).toBe("2028-02-29T09:00:00.000Z");
    expect(addDuration(at("2026-03-31T09:00:00Z"), month).toISOString()).toBe("2026-04-30T09:00:00.000Z");
    // Stepped from the reset alone: from the 31st to the 30th in April, then the 30th.
    expect(addDuration(at("2026-04-30T09:00:00Z"), month).toISOString()).toBe("2026-05-30T09:00:00.000Z");
    // Twelve months in one step keep the 31st; twelve steps of one do not.
    expect(addDuration(at("2026-01-31T09:00:00Z"), parseDuration("12mo")!).toISOString()).toBe("2027-01-31T09:00:00.000Z");
    let end = at("2026-01-31T09:00:00Z");
    for (let i = 0; i < 12; i++) end = addDuration(end, month);
    expect(end.toISOString()).toBe("2027-01-28T09:00:00.000Z");
  });
});

describe("currentPeriodEnd", () => {
  test("a reset still ahead is the end of the period running", () => {
    const resetAt = at("2026-03-10T12:00:00Z");
    expect(currentPeriodEnd(resetAt, parseDuration("1d")!, at("2026-03-10T11:59:59.999Z"))).toBe(resetAt);
  });

  test("missed fixed periods collapse into one step, always after now", () => {
    const resetAt = at("2026-03-10T12:00:00Z");
    const day = parseDuration("1d")!;
    expect(currentPeriodEnd(resetAt, day, resetAt).toISOString()).toBe("2026-03-11T12:00:00.000Z");
    expect(currentPeriodEnd(resetAt, day, at("2026-03-15T01:00:00Z")).toISOString()).toBe("2026-03-15T12:00:00.000Z");
    expect(currentPeriodEnd(resetAt, parseDuration("30s")!, at("2026-03-10T12:01:10Z")).toISOString()).toBe("2026-03-10T12:01:30.000Z");
  });

  test("missed months step on the calendar from the stored reset", () => {
    const resetAt = at("2026-01-15T00:00:00Z");
    expect(currentPeriodEnd(resetAt, month, at("2026-04-20T00:00:00Z")).toISOString()).toBe("2026-05-15T00:00:00.000Z");
    expect(currentPeriodEnd(resetAt, month, at("2026-04-15T00:00:00Z")).toISOString()).toBe("2026-05-15T00:00:00.000Z");
    expect(currentPeriodEnd(at("2026-01-31T00:00:00Z"), month, at("2026-03-30T00:00:00Z")).toISOString()).toBe("2026-04-28T00:00:00.000Z");
  });
});

describe("currentPeriodEnd from the origin of the periods", () => {
  const origin = at("2026-01-31T09:00:00.250Z");

  test("a chain begun on the 31st keeps the 31st where a month has it", () => {
    expect(currentPeriodEnd(at("2026-02-28T09:00:00.250Z"), month, at("2026-03-01T00:00:00Z"), origin).toISOString()).toBe("2026-03-31T09:00:00.250Z");
    expect(currentPeriodEnd(at("2026-04-30T09:00:00.250Z"), month, at("2026-04-30T09:00:00.250Z"), origin).toISOString()).toBe("2026-05-31T09:00:00.250Z");
    // Missed periods collapse into one step along the same chain.
    expect(currentPeriodEnd(at("2026-02-28T09:00:00.250Z"), month, at("2026-06-30T10:00:00Z"), origin).toISOString()).toBe("2026-07-31T09:00:00.250Z");
    expect(currentPeriodEnd(at("2026-02-28T09:00:00.250Z"), month, at("2026-06-30T08:00:00Z"), origin).toISOString()).toBe("2026-06-30T09:00:00.250Z");
    // Its first end, from the row's making (no reset stored yet), is on the chain too.
    expect(currentPeriodEnd(addDuration(origin, month), month, at("2026-02-28T09:00:00.250Z"), origin).toISOString()).toBe("2026-03-31T09:00:00.250Z");
  });

  test("chains of several months, and a reset an admin set (the origin itself)", () => {
    const quarter = parseDuration("3mo")!;
    const start = at("2026-08-31T00:00:00Z");
    expect(currentPeriodEnd(at("2026-11-30T00:00:00Z"), quarter, at("2026-12-01T00:00:00Z"), start).toISOString()).toBe("2027-02-28T00:00:00.000Z");
    expect(currentPeriodEnd(at("2027-02-28T00:00:00Z"), quarter, at("2027-03-01T00:00:00Z"), start).toISOString()).toBe("2027-05-31T00:00:00.000Z");
    expect(currentPeriodEnd(start, month, at("2026-09-30T12:00:00Z"), start).toISOString()).toBe("2026-10-31T00:00:00.000Z");
  });

  test("a reset not on the origin's chain counts from itself, as without one", () => {
    const resetAt = at("2026-02-28T09:00:00.251Z"); // a millisecond off: another chain
    expect(currentPeriodEnd(resetAt, month, at("2026-03-01T00:00:00Z"), origin).toISOString()).toBe("2026-03-28T09:00:00.251Z");
    // One month from a two-month chain's origin is not on it.
    expect(currentPeriodEnd(at("2026-02-28T09:00:00.250Z"), parseDuration("2mo")!, at("2026-03-01T00:00:00Z"), origin).toISOString()).toBe("2026-04-28T09:00:00.250Z");
    // An origin after the reset is not its origin.
    expect(currentPeriodEnd(at("2026-02-28T09:00:00.250Z"), month, at("2026-03-01T00:00:00Z"), at("2026-03-31T09:00:00.250Z")).toISOString()).toBe("2026-03-28T09:00:00.250Z");
    // Fixed durations need no origin: they count from the stored reset either way.
    expect(currentPeriodEnd(at("2026-02-28T09:00:00Z"), parseDuration("30d")!, at("2026-03-01T00:00:00Z"), origin).toISOString()).toBe("2026-03-30T09:00:00.000Z");
  });
});
