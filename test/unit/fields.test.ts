import { afterAll, expect, test } from "bun:test";
import { timestampOf } from "../../src/admin/fields";

const zone = process.env.TZ;
afterAll(() => {
  process.env.TZ = zone;
});

test("dates in admin queries: a time without a zone is UTC, whatever the server's zone; zones given are kept", () => {
  process.env.TZ = "Asia/Tokyo";
  expect(new Date(2026, 0, 2, 10).getUTCHours()).toBe(1); // the runtime does read local times in Tokyo here
  const iso = (text: string, endOfDay = false) => timestampOf(text, endOfDay)?.toISOString();
  expect(iso("2026-01-02T10:00")).toBe("2026-01-02T10:00:00.000Z");
  expect(iso("2026-01-02 10:00:05")).toBe("2026-01-02T10:00:05.000Z");
  expect(iso("2026-01-02T10:00:00+02:00")).toBe("2026-01-02T08:00:00.000Z");
  expect(iso("2026-01-02T10:00:00.5-0130")).toBe("2026-01-02T11:30:00.500Z");
  expect(iso("2026-01-02")).toBe("2026-01-02T00:00:00.000Z");
  expect(iso("2026-01-02", true)).toBe("2026-01-02T23:59:59.999Z");
  expect(iso("2026-02-30")).toBeUndefined();
});

test("dates in admin bodies and queries: the instant must fall in the years 1 to 9999 in UTC, whatever the zone written", () => {
  const iso = (text: string) => timestampOf(text)?.toISOString();
  expect(iso("9999-12-31T23:59:59-12:00")).toBeUndefined(); // 10000-01-01T11:59:59Z
  expect(iso("0001-01-01T00:00:00+01:00")).toBeUndefined(); // the year 0
  expect(iso("0000-06-01")).toBeUndefined();
  expect(iso("9999-12-31T23:59:59+12:00")).toBe("9999-12-31T11:59:59.000Z");
  expect(iso("9999-12-31T23:59:59Z")).toBe("9999-12-31T23:59:59.000Z");
  expect(iso("0001-01-01T00:00:00-01:00")).toBe("0001-01-01T01:00:00.000Z");
});
