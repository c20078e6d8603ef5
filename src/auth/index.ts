import type { Clock } from "../clock";
import type { Sql } from "../db";
import { COUNTER_IDLE_MS } from "../governance/counters";
import { GatewayError, authError, forbidden } from "../http/errors";
import type { Logger } from "../log";
import { bounded } from "./bounded";
import { TtlCache } from "./cache";
import { batchedLookup } from "./lookups";
import { createEndUserBudget } from "./end-user-budget";
import { hashKey, readKey, sameToken } from "./keys";
import type { Caller, CustomerRecord, Principal } from "./principal";
import { isProxyAdmin } from "./principal";
import { type Grace, type Json, customerFrom, loadCustomers, loadGraces, loadOrCreateCustomer, loadPrincipals, principalFrom } from "./repo";
import type { SpendRow } from "../spend/batch";
import type { Regenerated, ReusedToken } from "../spend/reset";

export * from "./keys";
export * from "./principal";
export { loadPrincipal, loadPrincipals, loadOrCreateCustomer, loadPrincipalRows, loadCustomerRows, ROW_QUERIES, type Json, date } from "./repo";
export { TtlCache } from "./cache";

export interface AuthOptions {
  db: Sql;
  clock: Clock;
  log: Logger;
  masterKey?: string;
  cacheSize: number;
  cacheTtlMs: number;
  /** What this instance has charged a key and not yet written (a record read now does not hold it). */
  unwrittenKeySpend?: (token: string) => number;
  /** `litellm_settings.max_end_user_budget_id` as the running config has it. */
  endUserBudgetId?: () => string | undefined;
  /** `general_settings.litellm_key_header_name` as the running config has it (a reload may change it). */
  keyHeader?: () => string | undefined;
}

/**
 * What an admin write tells every instance to forget: cached records, the spend of rows it reset,
 * what an earlier key left under the token of a key just made (see `handOver`), the budget
 * counters that start again (their prefixes, see `restartBudgets`), and a regenerated key's tokens
 * (see `carryOver`).
 */
export type Invalidation = (
  | { kind: "key"; token: string }
  | { kind: "customer"; id: string }
  | { kind: "all"; recheck?: boolean }
) & { reset?: SpendRow[]; reused?: ReusedToken; restart?: string[]; regenerated?: Regenerated };

/** A record held, and whether a request would use it as it is (`current`) or read it again first. */
export interface Held<T> {
  value: T;
  current: boolean;
}

const dbUnavailable = () =>
  new GatewayError(503, "service_unavailable", "The database is unavailable and this key is not cached yet; retry shortly");

export type Auth = ReturnType<typeof createAuth>;

/**
 * A known key refused by `authenticate` (blocked, expired, of a blocked team): its request is still
 * that key's, and gets its spend log row.
 */
export class KeyRefused extends GatewayError {
  constructor(refusal: GatewayError, readonly caller: Caller) {
    super(refusal.status, refusal.type, refusal.message, refusal.param, refusal.headers);
  }
}

/** How long a key the database does not know is answered 401 without asking it again. */
const UNKNOWN_TTL_MS = 1000;

/** key → principal: cache first, then one database round trip. */
export function createAuth(options: AuthOptions) {
  const { db, clock, log, masterKey } = options;
  // The master key is compared by its hash, which every key is hashed to anyway: one hash per request.
  const masterToken = masterKey ? hashKey(masterKey) : null;
  /** Logged once while the database is unreachable and cached keys are served (reload or first load). */
  const servingCached = (error: unknown) =>
    log.once("warn", "auth-db-down", "database unreachable: serving cached keys", { error: String(error) });
  // Stale entries are served while a batched reload refreshes them (the database down: until it is back).
  // Unknown keys are held apart, briefly: a flood of bad keys neither pushes known keys out of the cache
  // nor reaches the database once per request (misses are looked up together, one query at a time).
  /** Keys as the database has them, with what this instance charged them and has not written yet (taken before the read). */
  const load = async (tokens: string[]) => {
    const unwritten = options.unwrittenKeySpend;
    const pending = unwritten ? tokens.map(unwritten) : [];
    const loaded = await loadPrincipals(db, tokens);
    tokens.forEach((token, i) => {
      const principal = pending[i] ? loaded.get(token) : undefined;
      if (principal) principal.unwrittenAtLoad = pending[i];
    });
    return loaded;
  };
  const principals = new TtlCache<Principal | null>(options.cacheSize, options.cacheTtlMs, clock, {
    reloadMany: load, onReloadError: servingCached, keep: (principal) => principal !== null,
  });
  const unknown = new TtlCache<true>(options.cacheSize, UNKNOWN_TTL_MS, clock);
  const lookUp = batchedLookup(load);
  // Old secrets of regenerated keys within their grace period, looked up only where no key has the token.
  const graces = new TtlCache<Grace>(options.cacheSize, options.cacheTtlMs, clock);
  const lookUpGrace = batchedLookup((tokens) => loadGraces(db, tokens, clock.now()));
  const customers = new TtlCache<CustomerRecord>(options.cacheSize, options.cacheTtlMs, clock, {
    reloadMany: (ids) => loadCustomers(db, ids), onReloadError: servingCached,
  });
  const endUserBudget = createEndUserBudget(db, clock, options.cacheTtlMs, options.endUserBudgetId ?? (() => undefined));

  /**
   * A record is read again, waiting for it, once it is older than this: a budget counter dropped after
   * COUNTER_IDLE_MS unused is made again from the stored spend of the record it is planned from, which
   * must then include what was spent (and written) before the counter went idle. Only a key or customer
   * unused that long pays for the round trip.
   */
  const RELOAD_AFTER_MS = COUNTER_IDLE_MS - 60_000;

  /**
   * Set while what this instance had not written when another instance's change came is being written
   * (see `invalidate`): the records that change made it forget are read after it.
   */
  let writing: Promise<void> | null = null;
  const afterWriting = <T>(read: () => Promise<T>) => (writing ? writing.then(read) : read());

  /**
   * The key a token is, or (`viaGrace`) the key whose old secret it is, within its grace: one step only,
   * a key regenerated again keeps only the secret that call gave a grace.
   */
  async function principalFor(token: string, viaGrace = true): Promise<Principal | null> {
    const cached = principals.peek(token);
    if (cached && cached.age < RELOAD_AFTER_MS && (cached.fresh || principals.serveStale(token))) return cached.value;
    if (!cached) {
      const grace = viaGrace ? graces.peek(token) : undefined;
      // Past its grace, refused at once, whatever was cached.
      if (grace?.fresh) return grace.value.until > clock.now() ? graceKey(token, grace.value) : null;
      if (unknown.peek(token)?.fresh) return null;
    }
    try {
      const generation = principals.generation;
      const principal = await bounded(principals.load(token, () => afterWriting(() => lookUp(token))));
      const grace = principal === null && viaGrace ? await bounded(lookUpGrace(token)) : null;
      if (grace) {
        if (principals.generation === generation) graces.set(token, grace);
        return graceKey(token, grace);
      }
      // Not held as unknown if the key was written meanwhile (a key made just now is known at once), nor
      // when read as a grace's key (the token may be an old secret in its own grace).
      if (principal === null && viaGrace && principals.generation === generation) unknown.set(token, true);
      return principal;
    } catch (error) {
      if (cached && cached.value) {
        servingCached(error);
        return cached.value;
      }
      throw dbUnavailable();
    }
  }

  /** The key an old secret within its grace stands for; none once that key is gone or regenerated again. */
  async function graceKey(token: string, grace: Grace): Promise<Principal | null> {
    const principal = await principalFor(grace.token, false);
    if (!principal) graces.delete(token);
    return principal;
  }

  async function customerFor(id: string): Promise<CustomerRecord> {
    const cached = customers.peek(id);
    if (cached && cached.age < RELOAD_AFTER_MS && (cached.fresh || customers.serveStale(id))) return cached.value;
    try {
      return await bounded(customers.load(id, () => afterWriting(() => loadOrCreateCustomer(db, id))));
    } catch (error) {
      if (cached) return cached.value;
      log.once("warn", "customer-db-down", "database unreachable: customer served with default budget", { error: String(error) });
      return { user_id: id, alias: null, spend: 0, budget_reset_at: null, blocked: false, budget: null, created_at: new Date(clock.now()), unstored: true, modelSpend: {} };
    }
  }

  /** Why a known key may not be used now; null when it may. */
  function refusalOf(principal: Principal): GatewayError | null {
    const { key, team } = principal;
    if (key.blocked) return forbidden(`Key ${key.key_name} is blocked`);
    if (key.expires && key.expires.getTime() <= clock.now()) {
      return new GatewayError(401, "expired_key", `Authentication Error - Expired Key. Key Expiry time ${key.expires.toISOString()}`);
    }
    if (team?.blocked) return forbidden(`Team ${team.team_id} is blocked`);
    return null;
  }

  return {
    /** Resolves the caller of a request, or throws 401/403. */
    async authenticate(headers: Headers): Promise<Caller> {
      const keyHeader = options.keyHeader?.();
      const raw = readKey(headers, keyHeader);
      const where = keyHeader ? `the ${keyHeader} header (Bearer)` : "the Authorization header (Bearer), x-api-key or api-key";
      if (!raw) throw authError(`Authentication Error, No api key passed in. Pass a key in ${where}.`);
      const token = hashKey(raw);
      if (masterToken && sameToken(token, masterToken)) return { kind: "master" };
      const principal = await principalFor(token);
      if (principal === null) throw authError(`Authentication Error, Invalid proxy server token passed. Pass a valid key in ${where}.`);
      const caller: Caller = { kind: "key", principal, admin: isProxyAdmin(principal) };
      const refusal = refusalOf(principal);
      if (refusal) throw new KeyRefused(refusal, caller);
      return caller;
    },

    /** A key's record as the database has it now (after this instance's unwritten spend, see `invalidate`); null if gone. */
    principal: (token: string): Promise<Principal | null> => principalFor(token),

    /** The customer a request names, held to the default budget (`max_end_user_budget_id`) when it has none of its own. */
    async customer(id: string): Promise<CustomerRecord> {
      const customer = await customerFor(id);
      try {
        // Bounded where it reads (see end-user-budget.ts): a budget held answers at once, with no timer.
        return await endUserBudget.apply(customer);
      } catch (error) {
        log.once("warn", "end-user-budget-db-down", "database unreachable: max_end_user_budget_id's budget not read yet, customers without a budget run without it", { error: String(error) });
        return customer;
      }
    },

    /** Whether a raw key is the master key (a virtual key may not take its value). */
    isMasterKey: (raw: string): boolean => masterToken !== null && sameToken(hashKey(raw), masterToken),

    /**
     * Forgets what an admin change made out of date. `written`: the change was made on another instance
     * while this one had spend not written yet; the records are read again only once it is (or it took
     * too long). Until then their requests wait rather than being served as before the change (a key
     * blocked there), and no budget counter the change started again is made from a record read before
     * this instance's spend was in it (it would miss that spend for good).
     */
    invalidate(message: Invalidation, written?: Promise<void>): void {
      if (written) {
        const gate: Promise<void> = written.then(() => {
          if (writing === gate) writing = null;
        });
        writing = gate;
      }
      if (message.kind === "key") {
        principals.delete(message.token);
        unknown.delete(message.token);
        graces.delete(message.token);
      } else if (message.kind === "customer") customers.delete(message.id);
      else if (message.recheck) {
        // Something may have changed (Redis was away): read again, but what is held is still served while
        // the database cannot answer, as in any database outage, rather than refusing every key.
        principals.expireAll();
        unknown.clear();
        graces.clear();
        customers.expireAll();
        endUserBudget.expire();
      } else {
        principals.clear();
        unknown.clear();
        graces.clear();
        customers.clear();
        endUserBudget.forget();
      }
    },

    /** Keys held and customers held: each at most `cacheSize` (unknown keys are held apart). */
    cachedPrincipals: () => principals.size,
    cachedCustomers: () => customers.size,

    /** The keys and customers held (customers as held to the default budget, when it is read), for /metrics: nothing is read. */
    *heldPrincipals(): Generator<Held<Principal>> {
      const now = clock.now();
      for (const entry of principals.values()) if (entry.value) yield { value: entry.value, current: now - entry.loadedAt < RELOAD_AFTER_MS };
    },
    *heldCustomers(): Generator<Held<CustomerRecord>> {
      const now = clock.now();
      for (const entry of customers.values()) yield { value: endUserBudget.peek(entry.value), current: now - entry.loadedAt < RELOAD_AFTER_MS };
    },

    /** The keys (hashed) and customers held, the most recently loaded `max` of each, for the next start (see ../warm.ts). */
    known: (max: number) => ({ tokens: principals.knownIds(max), customers: customers.knownIds(max) }),

    /** Begins with rows read from the database (as `loadPrincipalRows` and `loadCustomerRows` return them). */
    preload(principalRows: readonly Json[], customerRows: readonly Json[]): void {
      for (const row of principalRows) principals.set(row.token, principalFrom(row));
      for (const row of customerRows) customers.set(row.user_id, customerFrom(row));
    },
  };
}
