import { join } from "node:path";
import { type AdminDeps, defaultGrace } from "./admin";
import { createAdminApp, createApp } from "./app";
import { type Auth, type Invalidation, createAuth } from "./auth";
import { hashKey } from "./auth/keys";
import { type Clock, systemClock } from "./clock";
import { type Config, ConfigError, databaseUrlOf, deploymentsOf, redisUrlOf } from "./config";
import type { Database } from "./db";
import { watch, watched } from "./db/watched";
import { type Counters, LocalCounters, counterKeys, createGovernance, readStandings, scopes } from "./governance";
import { type Logger, createLogger } from "./log";
import { createMetrics, type Metrics } from "./metrics";
import { createPricing } from "./pricing";
import { createProviders } from "./providers";
import { DeploymentSlots, type DeploymentUsage, type GatewayState, type ProviderCalls, type RequestRecord, type Runtime, createInference, createRuntime, inferenceServerRoutes } from "./proxy";
import { createSpendWriter, type SpendWriter } from "./spend";
import { carryOver, dropSpend, handOver, restartBudgets } from "./spend/reset";
import { SAVED_WINDOWS_PER_KIND, type SavedWindow } from "./rate-windows";
import type { WarmState } from "./warm";
import { SPEND_PENDING_DIR } from "./paths";
import { loadGatewayState, startDefaultPeriods, startGatewayPeriod } from "./periods";

export const VERSION = "0.1.0";

export interface GatewayOptions {
  config: Config;
  db: Database;
  clock?: Clock;
  log?: Logger;
  /** Shared counters (Redis); local exact counters when absent. */
  counters?: Counters;
  /** Deployments' requests and tokens counted by every instance (Redis); this instance's alone when absent. */
  deploymentUsage?: DeploymentUsage;
  /** Publishes invalidations to other instances (Redis pub/sub). */
  broadcast?: (message: Invalidation) => void;
  redisStatus?: () => string;
  redisStats?: { syncMs(): number; failures(): number; commands(): number; counterSyncs(): number };
  spendIntervalMs?: number;
  observe?: (record: RequestRecord) => void;
  /** Reads the config again (the file it came from); reloads are refused without it. */
  configSource?: () => { config: Config; warnings: string[] };
  /** What the database is known to hold while it is still opening (see warm.ts). */
  warm?: WarmState | null;
  /** Rate windows the last stop saved (see rate-windows.ts): local counters count on from them. */
  rateWindows?: readonly SavedWindow[];
  /** The environment the config's Redis settings are read with (REDIS_URL, REDIS_HOST, …); process.env when absent. */
  env?: Env;
}

type Env = Record<string, string | undefined>;

export interface Gateway {
  app: ReturnType<typeof createApp>;
  /** Bun server routes for the inference hot path (the app serves everything else). */
  serverRoutes: ReturnType<typeof inferenceServerRoutes>;
  adminApp: ReturnType<typeof createAdminApp> | null;
  auth: Auth;
  counters: Counters;
  spend: SpendWriter;
  gatewayState: GatewayState;
  metrics: Metrics;
  runtime(): Runtime;
  /** Applies an admin write made on another instance. */
  invalidated(message: Invalidation): void;
  /** Swaps in a new config (models, prices, budgets) without dropping requests. */
  reload(config: Config): void;
  /** Reloads from `configSource`: swaps atomically, or keeps the running config and throws. */
  reloadFromSource(): Promise<{ models: number; warnings: string[] }>;
  /** Finishes, writes spend (saving what the database cannot take within `spendDeadlineMs`); returns the requests whose spend is lost. */
  close(spendDeadlineMs?: number): Promise<number>;
  /** The rate windows running, to save for the next start: none when the counters are shared (Redis holds them). */
  rateWindows(): SavedWindow[];
}

/** How long closing waits for admitted requests to record their spend (they take milliseconds once their connection is gone). */
const SETTLE_AT_CLOSE_MS = 5000;
/** litellm_settings whose change gives users or customers another budget (see `reloadOnce`). */
const DEFAULT_BUDGETS = ["max_internal_user_budget", "internal_user_budget_duration", "max_end_user_budget", "max_end_user_budget_id"] as const;
/** litellm_settings that set the default budget durations (see startDefaultPeriods). */
const DEFAULT_DURATIONS = ["internal_user_budget_duration", "max_end_user_budget_id"] as const;
/** How long records another instance's change made out of date wait for this instance's unwritten spend (ms). */
const WRITTEN_WAIT_MS = 1000;

/** A max_end_user_budget_id naming no budget holds no customer to anything (as LiteLLM): said at start and on reload. */
async function warnMissingEndUserBudget(db: Database, config: Config, log: Logger): Promise<void> {
  const id = config.litellm_settings.max_end_user_budget_id;
  if (id === undefined) return;
  const [row] = await db.query("select 1 from budgets where budget_id = $1", [id]);
  if (!row) log.warn(`config: litellm_settings.max_end_user_budget_id: budget "${id}" does not exist; customers without a budget of their own run without it until it is made (POST /budget/new)`);
}

function buildRuntime(config: Config, state: GatewayState, log: Logger, clock: Clock, calls: ProviderCalls, slots: DeploymentSlots, usage?: DeploymentUsage): Runtime {
  const deployments = deploymentsOf(config);
  const pricing = createPricing(deployments, (d) => log.warn("model served by a wildcard entry has no price: its requests cost 0",
    { model: d.modelName, deployment: d.id, upstream: `${d.provider}/${d.upstreamModel}`, reject: config.general_settings.reject_unpriced_models }));
  for (const d of pricing.unpriced()) {
    log.warn("model has no price: its requests cost 0", { model: d.modelName, deployment: d.id, reject: config.general_settings.reject_unpriced_models });
  }
  for (const d of deployments) {
    const missing = pricing.priceOf(d)?.missing;
    if (missing) log.warn(`model has no ${missing} and the price table does not know it: that side costs 0`, { model: d.modelName, deployment: d.id });
  }
  const providers = createProviders();
  const runtime = createRuntime(config, deployments, pricing, (d) => providers.forDeployment(d), state, () => clock.now(), calls, slots, usage);
  // Requests waiting for a deployment's slot go by the caps this config sets (none: they go at once).
  slots.recap((id) => runtime.router.capById(id));
  return runtime;
}

/** Settings a running gateway cannot change: a reload that changes them says so (the README lists them). */
const RESTART_ONLY = ["master_key", "database_url", "data_dir", "admin_port", "admin_api", "key_cache_size",
  "key_cache_ttl_seconds", "database_connection_pool_limit", "log_level", "log_format", "shutdown_grace_seconds"] as const;

/** Every setting that can name the Redis the gateway connects to (see redisUrlOf). */
const REDIS_SETTINGS: ReadonlyArray<[string, (c: Config) => unknown]> = [
  ["general_settings.redis_url", (c) => c.general_settings.redis_url],
  ["router_settings.redis_url", (c) => c.router_settings.redis_url],
  ["router_settings.redis_host", (c) => c.router_settings.redis_host],
  ["router_settings.redis_port", (c) => c.router_settings.redis_port],
  ["router_settings.redis_password", (c) => c.router_settings.redis_password],
  ["litellm_settings.cache", (c) => c.litellm_settings.cache],
  ["litellm_settings.cache_params", (c) => c.litellm_settings.cache_params],
];

const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

function restartOnly(running: Config, next: Config, env: Env): string[] {
  // The database in use, however it is named: database_url dropped for the DATABASE_URL it equals is no change.
  const changed = (name: (typeof RESTART_ONLY)[number]) => name === "database_url"
    ? databaseUrlOf(running, env) !== databaseUrlOf(next, env)
    : !same(running.general_settings[name], next.general_settings[name]);
  const warnings = RESTART_ONLY.filter(changed)
    .map((name) => `general_settings.${name} changed: it takes effect at the next restart, the running value is kept`);
  // The Redis in use, however it is named: cache_params turning it on is as much a change as redis_url.
  if (redisUrlOf(running, env) !== redisUrlOf(next, env)) {
    const named = REDIS_SETTINGS.filter(([, read]) => !same(read(running), read(next))).map(([path]) => path);
    warnings.push(`${named.join(", ") || "the Redis settings"} changed: the Redis it names takes effect at the next restart, the running one is kept`);
  }
  if (running.router_settings.redis_namespace !== next.router_settings.redis_namespace) {
    warnings.push("router_settings.redis_namespace changed: it takes effect at the next restart, the running value is kept");
  }
  return warnings;
}

/** One line per request: never the key itself, only its alias or display name. */
function logRequest(log: Logger, r: RequestRecord): void {
  if (!log.enabled("info")) return;
  const key = r.caller.kind === "master" ? "master" : (r.caller.principal.key.key_alias ?? r.caller.principal.key.key_name);
  log.info("request", {
    request_id: r.requestId, key, model: r.model, deployment: r.deployment, route: r.route, status: r.status,
    prompt_tokens: r.usage?.prompt_tokens, completion_tokens: r.usage?.completion_tokens, cost: r.cost,
    duration_ms: Math.round(r.durationMs), customer: r.customer ?? undefined, stream: r.streamEnd,
  });
}

/** Wires every part of the gateway together; main.ts and the tests both build it here. */
export async function buildGateway(options: GatewayOptions): Promise<Gateway> {
  const { config, db } = options;
  const clock = options.clock ?? systemClock;
  const log = options.log ?? createLogger({ level: config.general_settings.log_level, format: config.general_settings.log_format });
  const g = config.general_settings;

  // Postgres: small frequent batches keep each write short and bound what a kill -9 can lose to a
  // quarter of a second of spend. The embedded database runs on its own thread but shares the machine's
  // cores, and each batch costs it a transaction of planned statements: half-second batches halve its
  // CPU per request (measured: 45 → 26 µs under load) for half a second of spend at risk.
  const spend = createSpendWriter({
    db, clock, log, intervalMs: options.spendIntervalMs ?? (db.kind === "pglite" ? 500 : 250), quarantineDir: join(g.data_dir, "spend-set-aside"),
    pendingDir: join(g.data_dir, SPEND_PENDING_DIR),
    masterToken: g.master_key ? hashKey(g.master_key) : null,
  });
  // Spend a shutdown could not write (the database was down) is written before anything reads spend
  // or a request is served: budgets count it from the first request. (A warm start is not taken while
  // any waits, see warm.ts; should one be there anyway, it is written once the database is open.) A
  // database still down leaves the files for the next successful write.
  if (!options.warm) await spend.writeSaved();
  else void spend.writeSaved();
  const gatewayState = options.warm?.gateway ?? (await loadGatewayState(db));
  const periodStarted = startGatewayPeriod(db, gatewayState, config, clock.now());
  // Behind a warm start the database is still opening: the period is stored once it is open.
  if (!options.warm) await periodStarted;
  else periodStarted.catch((error) => log.warn("could not store the gateway budget's period", { error: String(error) }));
  void warnMissingEndUserBudget(db, config, log).catch(() => {});
  // Read at each call, once the metrics below exist.
  const calls: ProviderCalls = {
    failed: (deployment, status) => metrics.providerFailed(deployment.id, status),
    answered: (deployment, seconds) => metrics.providerAnswered(deployment.id, seconds),
  };
  // Read again at each reload: the config's environment_variables may set it.
  const readGrace = () => {
    const { grace, warning } = defaultGrace(options.env ?? process.env);
    if (warning) log.warn(`config: ${warning}`);
    return grace;
  };
  let keyGracePeriod = readGrace();
  // Requests in flight per deployment (`max_parallel_requests`): one set, whatever config is loaded,
  // counted with the other instances' when the counters are shared.
  const slots = new DeploymentSlots(options.counters?.shared ? options.counters : undefined);
  let runtime = buildRuntime(config, gatewayState, log, clock, calls, slots, options.deploymentUsage);
  // Idle budget counters are kept while spend cannot be written.
  const local = options.counters ? null : new LocalCounters(() => clock.now(), undefined, spend.failing);
  if (local && options.rateWindows) local.seed(options.rateWindows);
  const counters: Counters = options.counters ?? local!;
  counters.trackWrites(spend.progress);
  const governance = createGovernance(counters, () => clock.now());
  const auth = createAuth({
    db, clock, log, masterKey: g.master_key, cacheSize: g.key_cache_size, cacheTtlMs: g.key_cache_ttl_seconds * 1000,
    unwrittenKeySpend: spend.unwrittenKeySpend, endUserBudgetId: () => runtime.config.litellm_settings.max_end_user_budget_id,
    keyHeader: () => runtime.config.general_settings.litellm_key_header_name,
  });
  if (options.warm) auth.preload(options.warm.principals, options.warm.customers);
  const metrics = createMetrics({
    spendBacklog: () => spend.backlog(),
    spendSetAside: () => spend.setAside(),
    redisSyncMs: options.redisStats?.syncMs,
    redisFailures: options.redisStats?.failures,
    redisCommands: options.redisStats?.commands,
    redisCounterSyncs: options.redisStats?.counterSyncs,
    dbStatements: () => db.statements(),
    cachedKeys: auth.cachedPrincipals,
    cachedCustomers: auth.cachedCustomers,
    counters: () => governance.counters.size,
    deploymentSlots: () => runtime.router.caps().map(([id, cap]) => ({ id, cap, inFlight: slots.inFlight(id), waiting: slots.waiting(id) })),
    standings: () => readStandings(auth.heldPrincipals(), auth.heldCustomers(), counters, runtime.budgetDefaults(), clock.now(),
      runtime.config.general_settings.metrics_budget_gauges_limit),
  });
  const inference = createInference({
    clock, log, auth, governance, spend, runtime: () => runtime,
    observe(record) {
      metrics.observe(record);
      logRequest(log, record);
      options.observe?.(record);
    },
    reject(reason, requestId, status, message) {
      metrics.reject(reason);
      if (log.enabled("info")) log.info("request refused", { request_id: requestId, status, reason, message });
    },
  });

  /** Rows on a default duration given another length start a period of it (see startDefaultPeriods), on every instance. */
  const startDefaults = async (next: Config) => {
    const restart = await startDefaultPeriods(db, next, clock.now(), spend.flush);
    if (restart.length > 0) admin.invalidate({ kind: "all", restart });
  };

  /**
   * Reads the config again and swaps it in. The gateway's stored spend is read first (pending spend
   * written before it), so a gateway budget the new config turns on counts what was already spent.
   */
  const reloadOnce = async () => {
    if (!options.configSource) throw new Error("this gateway was not started from a config file");
    try {
      const next = options.configSource();
      // A file being rewritten, or an include left out, would otherwise switch every model off at once.
      const serving = runtime.config.model_list.length;
      if (next.config.model_list.length === 0 && serving > 0) {
        throw new ConfigError([`the new config serves no model (model_list is empty in the config and in every file it includes) while the running one serves ${serving}: a reload does not switch every model off (a restart does)`]);
      }
      const [before, after] = [runtime.config.litellm_settings, next.config.litellm_settings];
      // Against the config the gateway started with, not the last one loaded: a second reload still
      // runs on the old master key, and must still say so.
      const warnings = [...next.warnings, ...restartOnly(config, next.config, options.env ?? process.env)];
      // Turned on, or given another period: the counter is made again from the stored spend, brought up to date.
      if (after.max_budget !== undefined && (before.max_budget === undefined || before.budget_duration !== after.budget_duration)) {
        await spend.flush();
        Object.assign(gatewayState, await loadGatewayState(db));
        await startGatewayPeriod(db, gatewayState, next.config, clock.now());
        // A counter left from an earlier period with the budget on missed what was spent since.
        counters.forget(counterKeys.budgetPrefix(scopes.gateway()));
      }
      // Only a default duration changed here needs the database: a reload of models and prices is taken while it is down.
      if (DEFAULT_DURATIONS.some((name) => before[name] !== after[name])) await startDefaults(next.config);
      // A default budget for users or customers turned on or given another period: its counters are made
      // from the records' stored spend, which must be read again, after this instance's unwritten spend is
      // in it (a cached record holds the spend it had when read; a counter made from it would miss what
      // was spent since, for good).
      if (DEFAULT_BUDGETS.some((name) => before[name] !== after[name])) {
        await spend.flush();
        auth.invalidate({ kind: "all" });
        // Counters left from when a default was on before missed what was spent while it was off.
        const restart: string[] = [];
        if (before.max_internal_user_budget === undefined && after.max_internal_user_budget !== undefined) restart.push(counterKeys.budgetPrefix(scopes.users()));
        if ((before.max_end_user_budget === undefined && after.max_end_user_budget !== undefined) || before.max_end_user_budget_id !== after.max_end_user_budget_id) {
          restart.push(counterKeys.budgetPrefix(scopes.customers()));
        }
        if (restart.length > 0) admin.invalidate({ kind: "all", restart });
      }
      runtime = buildRuntime(next.config, gatewayState, log, clock, calls, slots, options.deploymentUsage);
      keyGracePeriod = readGrace();
      for (const warning of warnings) log.warn(`config: ${warning}`);
      if (before.max_end_user_budget_id !== after.max_end_user_budget_id) void warnMissingEndUserBudget(db, next.config, log).catch(() => {});
      log.info("config reloaded", { models: next.config.model_list.length });
      return { models: next.config.model_list.length, warnings };
    } catch (error) {
      log.error("config reload refused: keeping the running config", { error: error instanceof Error ? error.message : String(error) });
      throw error;
    }
  };
  // One reload at a time, each reading the file when its turn comes: the last one asked for is the one that stays.
  let reloading: Promise<unknown> = Promise.resolve();
  const reloadFromSource = () => {
    const next = reloading.then(reloadOnce, reloadOnce);
    reloading = next.catch(() => {});
    return next;
  };
  const admin: AdminDeps = {
    // A hung database answers admin calls 503 within seconds, their waits for the spend writer too.
    db: watched(db), spend: { ...spend, flush: () => watch(db, spend.flush()) },
    clock, log, auth, counters, runtime: () => runtime, reloadConfig: reloadFromSource, keyGracePeriod: () => keyGracePeriod,
    invalidate(message) {
      auth.invalidate(message);
      // Published before the shared counters are deleted, so the other instances drop theirs as soon as can be.
      options.broadcast?.(message);
      dropSpend(message.reset, counters, spend, true);
      handOver(message.reused, counters, spend, true);
      restartBudgets(message.restart, counters, true);
      inference.holdInFlight(message.restart ?? []);
      carryOver(message.regenerated, counters, true);
      void inference.takeUp(message.restart ?? [], message.regenerated);
    },
  };
  const defaultsStarted = startDefaults(config);
  // Behind a warm start the database is still opening: the periods start once it is open.
  if (!options.warm) await defaultsStarted;
  else defaultsStarted.catch((error) => log.warn("could not start the periods of the default budget durations", { error: String(error) }));
  const health = {
    database: () => db.ping(1000),
    databaseOpening: () => db.opening?.() ?? false,
    redis: options.redisStatus ?? (() => "not configured"),
    spendBacklog: () => spend.backlog(),
    version: VERSION,
  };
  const separateAdmin = g.admin_port !== undefined && g.admin_api !== "disabled";
  const appDeps = {
    log, inference, runtime: () => runtime, health, admin, version: VERSION, metrics,
    withAdmin: g.admin_api !== "disabled" && !separateAdmin,
    metricsPublic: () => runtime.config.general_settings.metrics_public,
  };

  return {
    app: createApp(appDeps),
    serverRoutes: inferenceServerRoutes(inference, log),
    adminApp: separateAdmin ? createAdminApp(appDeps) : null,
    auth,
    counters,
    spend,
    gatewayState,
    metrics,
    runtime: () => runtime,
    /** An admin write made on another instance. */
    invalidated(message) {
      dropSpend(message.reset, counters, spend, false);
      handOver(message.reused, counters, spend, false);
      restartBudgets(message.restart, counters, false);
      inference.holdInFlight(message.restart ?? []);
      carryOver(message.regenerated, counters, false);
      // Another instance changed a principal. A budget counter it added or started again is made from the
      // stored spend at the next request: what this instance has not written yet goes first, or the
      // counter would miss it for good. The records are forgotten now and read again after that write
      // (a flush takes milliseconds; a stuck one is not waited for past WRITTEN_WAIT_MS).
      auth.invalidate(message, spend.backlog() === 0 ? undefined : Promise.race([spend.flush().catch(() => {}), Bun.sleep(WRITTEN_WAIT_MS)]));
      void inference.takeUp(message.restart ?? [], message.regenerated);
    },
    reload(next) {
      runtime = buildRuntime(next, gatewayState, log, clock, calls, slots, options.deploymentUsage);
    },
    reloadFromSource,
    /** Returns the number of requests whose spend could be neither written nor saved. */
    async close(spendDeadlineMs) {
      // Requests whose connection is gone but whose spend is still being counted (a client that left
      // during the drain) are recorded before the last flush.
      await inference.settled(SETTLE_AT_CLOSE_MS);
      const lost = await spend.close(spendDeadlineMs);
      await counters.close();
      return lost;
    },
    rateWindows: () => local?.windows(SAVED_WINDOWS_PER_KIND) ?? [],
  };
}
