/**
 * What runs before the rest of the program loads (main.ts imports it first). When the gateway is
 * going to run on the embedded database, the database's thread starts now and compiles its engine
 * while the other modules load. It is a guess from the command line and the config's text, made
 * without the config parser; main.ts ends the thread if the loaded config names a Postgres URL.
 */
import { readFileSync } from "node:fs";
import { parseArgs } from "./cli";
import { startPgliteEarly } from "./db/pglite";

export function likelyPglite(argv: readonly string[], env: Record<string, string | undefined>): boolean {
  if (env.DATABASE_URL) return false;
  try {
    const args = parseArgs(argv);
    if (args.command === "help" || args.command === "version" || !args.config) return false;
    return !/^\s*database_url\s*:/m.test(readFileSync(args.config, "utf8"));
  } catch {
    return false; // main reports a bad command line or an unreadable config
  }
}

if (likelyPglite(process.argv.slice(2), process.env)) startPgliteEarly();
