import { describe, expect, test } from "bun:test";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type CounterCheck, LocalCounters, RATE_WINDOW_MS, counterKeys, rateWindow, scopes } from "../../src/governance";
import { WINDOWS_FILE } from "../../src/paths";
import { SAVED_WINDOWS_PER_KIND, dropRateWindows, readRateWindows, saveRateWindows } from "../../src/rate-windows";
import { carryOver } from "../../src/spend/reset";
import { tempDir } from "../helpers/services";

const NOW = Date.UTC(2026, 0, 15, 12, 0, 20);
const window = rateWindow(NOW);

const check = (key: string, limit: number, reserve: number, expiresAt = window.end): CounterCheck => ({ key, limit, reserve, initial: 0, expiresAt });
const rpm = (scope: string, start = window.start) => check(counterKeys.requests(scope, start), 3, 1, start + RATE_WINDOW_MS);
const tpm = (scope: string) => check(counterKeys.tokens(scope, window.start), 100, 20);

/** Admits and settles one request on `checks`, each with its reservation as the actual amount. */
function serve(counters: LocalCounters, ...checks: CounterCheck[]) {
  expect(counters.admit(checks)).toBe(-1);
  for (const c of checks) counters.settle(c, c.reserve);
}

describe("the rate windows local counters carry over a restart", () => {
  test("the running windows that counted something are given, rpm and tpm of every scope, and nothing else", () => {
    let now = NOW;
    const counters = new LocalCounters(() => now);
    const key = scopes.key("hash1");
    serve(counters, rpm(key), tpm(key), rpm(scopes.team("t1")), rpm(scopes.keyModel("hash1", "m")));
    serve(counters, rpm(key), check(counterKeys.budget(key, null), 10, 0.5, Infinity), check(counterKeys.parallel(key), 5, 0, Infinity));
    serve(counters, rpm(scopes.user("ended"), window.start - RATE_WINDOW_MS));
    counters.admit([tpm(scopes.user("nothing yet"))]); // reserves 20, settles on 0 below
    counters.settle(tpm(scopes.user("nothing yet")), 0);
    // In flight at the stop: what it holds counts.
    expect(counters.admit([rpm(scopes.customer("c1"))])).toBe(-1);
    expect(new Map(counters.windows(100))).toEqual(new Map([
      [rpm(key).key, 2], [tpm(key).key, 20], [rpm(scopes.team("t1")).key, 1], [rpm(scopes.keyModel("hash1", "m")).key, 1], [rpm(scopes.customer("c1")).key, 1],
    ]));
    now = window.end;
    expect(counters.windows(100)).toEqual([]);
    counters.close();
  });

  test("at most so many of each kind, those with the highest counts", () => {
    const counters = new LocalCounters(() => NOW);
    for (let i = 1; i <= 5; i++) for (let n = 0; n < i; n++) serve(counters, { ...rpm(scopes.key(`k${i}`)), limit: 100 });
    for (let i = 1; i <= 3; i++) serve(counters, check(counterKeys.tokens(scopes.key(`k${i}`), window.start), 1000, i * 10));
    expect(counters.windows(2)).toEqual([
      [rpm(scopes.key("k5")).key, 5], [rpm(scopes.key("k4")).key, 4],
      [counterKeys.tokens(scopes.key("k3"), window.start), 30], [counterKeys.tokens(scopes.key("k2"), window.start), 20],
    ]);
    counters.close();
  });

  test("seeded windows count on in their window and not after it; ended, future and malformed ones are left out", () => {
    let now = NOW;
    const counters = new LocalCounters(() => now);
    const key = scopes.key("hash1");
    counters.seed([
      [rpm(key).key, 3],
      [tpm(key).key, 100],
      [counterKeys.requests(scopes.user("u1"), window.start - RATE_WINDOW_MS), 3], // ended
      [counterKeys.requests(scopes.user("u2"), window.start + RATE_WINDOW_MS), 3], // not reached (the clock went back)
      [counterKeys.requests(scopes.user("u3"), window.start + 1), 3], // no window start
      [counterKeys.budget(key, null), 5], // not a window
      [counterKeys.parallel(key), 2],
      [rpm(scopes.team("t1")).key, Number.POSITIVE_INFINITY],
      [rpm(scopes.team("t2")).key, -1],
    ]);
    expect(counters.size).toBe(2);
    expect(counters.admit([rpm(key)])).toBe(0);
    expect(counters.admit([tpm(key)])).toBe(0);
    expect(counters.used(rpm(key))).toBe(3);
    now = window.end;
    const next = rpm(key, window.end);
    expect(counters.admit([next])).toBe(-1);
    counters.close();
  });
});

describe("the file the rate windows are saved in", () => {
  const warnings: string[] = [];
  const warn = (message: string) => void warnings.push(message);

  test("saved and read back; none saved, no file; a missing file, nothing and no warning", () => {
    const dataDir = join(tempDir("windows-unit"), "data"); // made when first saved (Postgres needs no data_dir until then)
    saveRateWindows(dataDir, []);
    expect(existsSync(join(dataDir, WINDOWS_FILE))).toBe(false);
    expect(readRateWindows(dataDir, warn)).toEqual([]);
    saveRateWindows(dataDir, [["r:k:a:60000", 3], ["t:k:a:60000", 40]]);
    expect(readRateWindows(dataDir, warn)).toEqual([["r:k:a:60000", 3], ["t:k:a:60000", 40]]);
    dropRateWindows(dataDir);
    expect(existsSync(join(dataDir, WINDOWS_FILE))).toBe(false);
    expect(warnings).toEqual([]);
  });

  test("a file cut, not JSON, or of another format: a warning, and nothing; entries of the wrong shape are skipped", () => {
    const dataDir = tempDir("windows-unit");
    for (const text of ['{"format":1,"windows":[["r:k:', "", "null", "[]", '{"format":2,"windows":[]}', '{"format":1,"windows":{}}']) {
      writeFileSync(join(dataDir, WINDOWS_FILE), text);
      warnings.length = 0;
      expect(readRateWindows(dataDir, warn)).toEqual([]);
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toContain("could not be read");
    }
    writeFileSync(join(dataDir, WINDOWS_FILE), JSON.stringify({ format: 1, windows: [["r:k:a:60000", 3], ["r:k:b:60000", "3"], [1, 2], ["r:k:c:60000", 0], "x", ["r:k:d:60000", 1, 2]] }));
    warnings.length = 0;
    expect(readRateWindows(dataDir, warn)).toEqual([["r:k:a:60000", 3]]);
    expect(warnings).toEqual([]);
  });

  test("a file holding more than is ever saved is read only up to that", () => {
    const dataDir = tempDir("windows-unit");
    const windows = Array.from({ length: 2 * SAVED_WINDOWS_PER_KIND + 10 }, (_, i) => [`r:k:${i}:60000`, 1]);
    writeFileSync(join(dataDir, WINDOWS_FILE), JSON.stringify({ format: 1, windows }));
    expect(readRateWindows(dataDir, warn)).toHaveLength(2 * SAVED_WINDOWS_PER_KIND);
  });
});

describe("a regenerated key's rate windows on local counters", () => {
  test("go on under the new token, added to those it counted already; requests in flight settle there, once", () => {
    const counters = new LocalCounters(() => NOW);
    const [from, to] = [scopes.key("old"), scopes.key("new")];
    const model = (token: string) => check(counterKeys.requests(scopes.keyModel(token, "m"), window.start), 3, 1);
    serve(counters, rpm(from), tpm(from), model("old"));
    const inFlight = [rpm(from), tpm(from)];
    expect(counters.admit(inFlight)).toBe(-1);
    // A request under the new secret before the change reached here.
    serve(counters, tpm(to));
    carryOver({ from: "old", to: "new" }, counters, false);
    expect(counters.holds(rpm(from))).toBe(false);
    expect([counters.used(rpm(to)), counters.held(rpm(to))]).toEqual([2, 1]);
    expect([counters.used(tpm(to)), counters.held(tpm(to))]).toEqual([60, 20]);
    expect(counters.used(model("new"))).toBe(1);
    counters.settle(inFlight[0]!, 1);
    counters.settle(inFlight[1]!, 25);
    expect([counters.used(rpm(to)), counters.held(rpm(to))]).toEqual([2, 0]);
    expect([counters.used(tpm(to)), counters.held(tpm(to))]).toEqual([65, 0]);
    expect(counters.holds(rpm(from))).toBe(false);
    // Two of its 3 requests counted: the new secret has one more.
    expect(counters.admit([rpm(to)])).toBe(-1);
    expect(counters.admit([rpm(to)])).toBe(0);
  });
});
