import { describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { VERSION } from "../../src/gateway";
import { migratedAtStop, readWarmState } from "../../src/warm";
import { tempDir } from "../helpers/services";

describe("what a start knows of the embedded database before opening it", () => {
  test("a new directory: nothing, with the gateway's budget periods anchored now", () => {
    const dataDir = join(tempDir("warm-unit"), "data");
    const before = Date.now();
    const state = readWarmState(dataDir, VERSION)!;
    expect(state.principals).toEqual([]);
    expect(state.customers).toEqual([]);
    expect(state.gateway.spend).toBe(0);
    expect(state.gateway.budgetResetAt).toBeNull();
    expect(state.gateway.createdAt!.getTime()).toBeGreaterThanOrEqual(before);
  });

  test("an existing directory without a saved state, or with one from another build: nothing known", () => {
    const dataDir = tempDir("warm-unit");
    writeFileSync(join(dataDir, "PG_VERSION"), "17\n");
    expect(readWarmState(dataDir, VERSION)).toBeNull();
    mkdirSync(join(dataDir, "global"));
    writeFileSync(join(dataDir, "global", "pg_control"), "control");
    const saved = join(dataDir, "litegate-warm.json");
    writeFileSync(saved, JSON.stringify({ build: "0.0.0/1/1", fingerprint: "x", gateway: {}, principals: [], customers: [] }));
    expect(migratedAtStop(dataDir, VERSION)).toBe(false);
    expect(readWarmState(dataDir, VERSION)).toBeNull();
    expect(existsSync(saved)).toBe(false); // taken even when unusable
    writeFileSync(saved, "{ not json");
    expect(readWarmState(dataDir, VERSION)).toBeNull();
  });
});

describe("spend a shutdown saved to spend-pending", () => {
  test("makes the start open the database first (which writes it), and the saved state goes", () => {
    const dataDir = join(tempDir("warm-unit"), "data");
    mkdirSync(join(dataDir, "spend-pending"), { recursive: true });
    writeFileSync(join(dataDir, "spend-pending", "spend-b1.json"), "{}");
    writeFileSync(join(dataDir, "litegate-warm.json"), "{}");
    expect(readWarmState(dataDir, VERSION)).toBeNull(); // a new directory would otherwise be known empty
    expect(existsSync(join(dataDir, "litegate-warm.json"))).toBe(false);
  });
});
