import type { Auth, Invalidation } from "../auth";
import type { Clock } from "../clock";
import type { Database } from "../db";
import type { Counters } from "../governance";
import type { Logger } from "../log";
import type { Runtime } from "../proxy/runtime";
import type { SpendWriter } from "../spend";

/** What the admin API needs; passed in by createApp. */
export interface AdminDeps {
  db: Database;
  clock: Clock;
  log: Logger;
  auth: Auth;
  counters: Counters;
  spend: SpendWriter;
  runtime: () => Runtime;
  /** A regenerated key's old secret's grace when the request gives none (see admin/key-grace.ts `defaultGrace`), or null. */
  keyGracePeriod(): string | null;
  /** Forget cached principals/customers on this instance and, with Redis, on every other one. */
  invalidate(message: Invalidation): void;
  /** Re-reads config.yaml and swaps it in; throws (keeping the old one) when it is invalid. */
  reloadConfig(): Promise<{ models: number; warnings: string[] }>;
}
