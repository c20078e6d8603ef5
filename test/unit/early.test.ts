import { describe, expect, test } from "bun:test";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { commandOf, dataDirOf, likelyPglite, likelyOpenedLater } from "../../src/early";
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

/** The guess that leaves the database's thread until the gateway listens, when it will serve first. */
describe("likelyOpenedLater", () => {
  test("the data directory as the config's text names it", () => {
    expect(dataDirOf("general_settings:\n  master_key: sk-1\n")).toBe("./litegate-data");
    expect(dataDirOf("general_settings:\n  data_dir: /var/lib/litegate   # the database\n")).toBe("/var/lib/litegate");
    expect(dataDirOf("general_settings:\n  data_dir: \"/srv/lg data\"\n")).toBe("/srv/lg data");
    expect(dataDirOf("general_settings:\n  data_dir: os.environ/LITEGATE_DATA\n")).toBeNull();
  });

  test("a new directory or a saved state: served first; a directory without one: the database first", () => {
    const dir = tempDir("served-first");
    const configFor = (dataDir: string) => {
      const path = join(dir, `${crypto.randomUUID()}.yaml`);
      writeFileSync(path, `general_settings:\n  data_dir: ${dataDir}\n`);
      return path;
    };
    const data = join(dir, "data");
    expect(likelyOpenedLater(commandOf(["--config", configFor(data)]))).toBe(true); // nothing there yet
    mkdirSync(data);
    writeFileSync(join(data, "PG_VERSION"), "17\n");
    expect(likelyOpenedLater(commandOf(["--config", configFor(data)]))).toBe(false);
    expect(likelyOpenedLater(commandOf(["migrate", "--config", configFor(data)]))).toBe(false);
    writeFileSync(join(data, "litegate-warm.json"), "{}");
    expect(likelyOpenedLater(commandOf(["--config", configFor(data)]))).toBe(true);
    expect(likelyOpenedLater(commandOf(["migrate", "--config", configFor(data)]))).toBe(true); // nothing to migrate
    expect(likelyOpenedLater(commandOf(["--config", configFor("os.environ/X")]))).toBe(false);
  });
});
