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
