import { describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { commandOf, likelyPglite } from "../../src/early";
import { tempDir } from "../helpers/services";

/** The guess that starts the embedded database's thread before the program has loaded. */
describe("likelyPglite", () => {
  const dir = tempDir("early");
  const config = (name: string, text: string) => {
    const path = join(dir, name);
    writeFileSync(path, text);
    return path;
  };
  const embedded = config("embedded.yaml", "general_settings:\n  master_key: sk-1234\n  # database_url: postgres://commented/out\n");
  const postgres = config("postgres.yaml", "general_settings:\n  master_key: sk-1234\n  database_url: os.environ/DATABASE_URL\n");

  test("a config without database_url and no DATABASE_URL: the embedded database", () => {
    expect(likelyPglite(commandOf(["--config", embedded]), {})).toBe(true);
    expect(likelyPglite(commandOf(["migrate", "--config", embedded, "--port", "4001"]), {})).toBe(true);
  });

  test("database_url in the config or in the environment: Postgres", () => {
    expect(likelyPglite(commandOf(["--config", postgres]), {})).toBe(false);
    expect(likelyPglite(commandOf(["--config", embedded]), { DATABASE_URL: "postgres://localhost/litegate" })).toBe(false);
  });

  test("no start at all: help, version, a bad command line or an unreadable config", () => {
    expect(likelyPglite(commandOf(["--version"]), {})).toBe(false);
    expect(likelyPglite(commandOf(["--config", embedded, "--help"]), {})).toBe(false);
    expect(likelyPglite(commandOf(["--config"]), {})).toBe(false);
    expect(likelyPglite(commandOf([]), {})).toBe(false);
    expect(likelyPglite(commandOf(["--config", join(dir, "missing.yaml")]), {})).toBe(false);
  });
});
