import { hangupWhileStarting, reportHangupsTo } from "./early"; // first: the allocator setting, and the embedded database's thread started while the rest loads
import { lookup } from "node:dns/promises";
import { isIP } from "node:net";
import { type CliArgs, CliError, USAGE, parseArgs } from "./cli";
import { ConfigError, type Config, databaseUrlOf, loadConfig, redisUrlOf } from "./config";
import { type Database, DataDirInUse, MigrationError, deferredDatabase, discardEarlyPglite, lockDataDir, migrate, openDatabase } from "./db";
import { VERSION, buildGateway } from "./gateway";
import { loadGatewayState } from "./periods";
import { livenessServerRoutes, withCors, withRoutableHost } from "./http";
import { createLogger, type Logger } from "./log";
import { connectRedis, type RedisLink, redisOptionsOf } from "./redis";
import { startBudgetScheduler } from "./scheduler";
import { WARM_KEYS, closeAndSaveWarmState, dropWarmState, migratedAtStop, readWarmState } from "./warm";
import { hasPendingSpend } from "./paths";
import { dropRateWindows, readRateWindows, saveRateWindows } from "./rate-windows";

/** Set once the log format is known: with JSON logs, the error that stops the process is a JSON line too. */
let jsonLogs = false;

/** A line on stderr before the logger exists, in the format it will have. */
const earlyLine = (level: "error" | "warn", message: string) =>
  void process.stderr.write(jsonLogs ? `${JSON.stringify({ time: new Date().toISOString(), level, msg: message })}\n` : `litegate: ${message}\n`);

function fail(message: string, code = 1): never {
  earlyLine("error", message);
  process.exit(code);
}

/** The database, open and migrated, and how many migrations that took. */
async function openAndMigrate(config: Config, log: Logger): Promise<{ db: Database; applied: number }> {
  const url = databaseUrlOf(config, process.env);
  if (url) discardEarlyPglite();
  // The URL itself is never shown: it holds the password.
  const name = config.general_settings.database_url ? "general_settings.database_url" : "DATABASE_URL";
  const db = await openDatabase({ url, dataDir: config.general_settings.data_dir, maxConnections: config.general_settings.database_connection_pool_limit }).catch((error) => {
    if (!(error instanceof URIError) && (error as { code?: string }).code !== "ERR_INVALID_URL") throw error;
    throw new Error(`${name} is not a valid URL (expected postgresql://user:password@host:5432/database)`);
  });
  if (url) await answersInTime(db, name);
  const applied = await migrate(db);
  for (const name of applied) log.info("migration applied", { migration: name });
  return { db, applied: applied.length };
}

/** postgres.js's own connect timeout (10 s), and room for the first query once connected. */
const FIRST_ANSWER_MS = 15_000;

/**
 * The server's first answer, or an error saying there was none. A server that answers something else
 * (an HTTP port) and closes has the driver connect again at once, for ever, its connect timeout
 * starting again each time: without this the start would hang.
 */
async function answersInTime(db: Database, name: string): Promise<void> {
  let timer: Timer | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(
    `${name}: no answer from a Postgres server there within ${FIRST_ANSWER_MS / 1000} s (is it the address of a Postgres server?)`)), FIRST_ANSWER_MS)));
  try {
    await Promise.race([db.query("select 1"), late]);
  } finally {
    clearTimeout(timer);
  }
}

function cannotOpen(error: unknown): never {
  if (error instanceof MigrationError) fail(error.message);
  fail(`cannot open the database: ${error instanceof Error ? error.message : String(error)}`);
}

/**
 * The database, open and migrated; or, on the embedded database when what it holds is known (see
 * warm.ts), a handle that waits for it and what is known, the database opening when `openBehind` is
 * called once the gateway listens. The embedded database's directory is held until `unlock`, at a
 * clean stop. Null for `migrate` on a database left migrated: nothing to do.
 */
async function databaseFor(command: CliArgs["command"], config: Config, log: Logger) {
  const g = config.general_settings;
  const embedded = !databaseUrlOf(config, process.env);
  let unlock = () => {};
  if (embedded) {
    try {
      unlock = lockDataDir(g.data_dir, (message) => log.warn(message));
    } catch (error) {
      if (error instanceof DataDirInUse) fail(error.message);
      return cannotOpen(error);
    }
  }
  // Left migrated by this build's clean stop and not opened since: opening it would only cost the next start.
  if (command === "migrate" && embedded && migratedAtStop(g.data_dir, VERSION)) {
    unlock();
    return null;
  }
  const warm = command === "serve" && embedded ? readWarmState(g.data_dir, VERSION) : null;
  if (!warm) {
    try {
      return { ...(await openAndMigrate(config, log)), warm, openBehind: () => {}, failedBehind: null, unlock };
    } catch (error) {
      return cannotOpen(error);
    }
  }
  const opening = Promise.withResolvers<Database>();
  opening.promise.then(() => log.info("database open"), () => {}); // a failure is the gateway's to handle (see `failedBehind`)
  return {
    db: deferredDatabase(opening.promise, "pglite"),
    applied: 0,
    warm,
    failedBehind: opening.promise.then(() => null, (error: unknown) => error),
    // Once listening: the engine's compile would slow the start it no longer shortens.
    openBehind: () => void openAndMigrate(config, log).then(({ db }) => opening.resolve(db), opening.reject),
    unlock,
  };
}

/**
 * A stop (SIGTERM, SIGINT) asked for before the gateway listens. A start that opens the database first
 * takes a second or more (longer after a crash): stopping it there would leave the directory locked and
 * the database to recover. The stop is taken when the step under way ends: what is open by then is
 * closed, the directory released, and the process exits 0, as a stop after the start does.
 */
function stopsWhileStarting(log: Logger) {
  let asked: string | null = null;
  const ask = (signal: string) => {
    if (asked === null) log.info("shutting down: stopping the start once its current step ends", { signal });
    asked ??= signal;
  };
  const onTerm = () => ask("SIGTERM");
  const onInt = () => ask("SIGINT");
  process.on("SIGTERM", onTerm);
  process.on("SIGINT", onInt);
  return {
    /** Stops here if asked: closes what is open so far (`db` only if it was opened: a warm start's is not yet). */
    async checkpoint(open: { db?: Database | null; redis?: RedisLink | null; unlock?: () => void }): Promise<void> {
      if (asked === null) return;
      await open.redis?.close();
      await open.db?.close();
      open.unlock?.();
      log.info("stopped while starting", { signal: asked });
      process.exit(0);
    },
    /** The gateway's own shutdown takes over. */
    done() {
      process.off("SIGTERM", onTerm);
      process.off("SIGINT", onInt);
    },
  };
}

async function main(): Promise<void> {
  const args = (() => {
    try {
      return parseArgs(process.argv.slice(2), process.env);
    } catch (error) {
      fail(error instanceof CliError ? error.message : String(error), 2);
    }
  })();
  jsonLogs = args.logFormat === "json";
  reportHangupsTo((message) => earlyLine("warn", message));
  if (args.command === "help") return void process.stdout.write(USAGE);
  if (args.command === "version") return void process.stdout.write(`litegate ${VERSION}\n`);

  let config: Config;
  let warnings: string[];
  try {
    ({ config, warnings } = loadConfig(args.config!, process.env));
  } catch (error) {
    if (error instanceof ConfigError) {
      fail(error.problems.length === 1 ? `invalid config: ${error.problems[0]}` : `invalid config ${args.config}:\n  ${error.problems.join("\n  ")}`);
    }
    throw error;
  }
  const g = config.general_settings;
  jsonLogs = (args.logFormat ?? g.log_format) === "json";
  const log = createLogger({ level: args.logLevel ?? g.log_level, format: args.logFormat ?? g.log_format });
  reportHangupsTo((message) => log.warn(message));
  for (const warning of warnings) log.warn(`config: ${warning}`);
  const starting = stopsWhileStarting(log);
  log.debug("config read", { path: args.config, models: config.model_list.length });
  if (args.numWorkers !== undefined && args.numWorkers > 1) {
    log.warn(`--num_workers ${args.numWorkers}: litegate runs as one process (one event loop serves every connection); for more, run instances sharing Redis`);
  }
  if (args.command === "serve" && !g.master_key && g.admin_api !== "disabled") {
    log.warn("no master key (general_settings.master_key or LITELLM_MASTER_KEY): the admin API refuses every caller but proxy_admin users' keys already in the database, so no key can be made");
  }
  // A malformed Redis URL stops the start before anything is opened.
  let redisUrl: string | undefined;
  try {
    redisUrl = redisUrlOf(config, process.env);
  } catch (error) {
    fail(`invalid config: ${error instanceof ConfigError ? error.problems.join("; ") : String(error)}`);
  }
  if (redisUrl) {
    try {
      redisOptionsOf(redisUrl);
    } catch (error) {
      fail(error instanceof Error ? error.message : String(error));
    }
  }

  const opened = await databaseFor(args.command, config, log);
  await starting.checkpoint({ db: opened?.warm ? null : opened?.db, unlock: opened?.unlock });
  if (!opened || args.command === "migrate") {
    await opened?.db.close();
    opened?.unlock();
    const applied = opened?.applied ?? 0;
    process.stdout.write(applied === 0 ? "migrations up to date\n" : `applied ${applied} migration${applied === 1 ? "" : "s"}\n`);
    return;
  }
  const { db, warm, openBehind, failedBehind, unlock } = opened;

  const openedSoFar = () => ({ db: warm ? null : db, redis, unlock });
  const redis: RedisLink | null = redisUrl ? await connectRedis(redisUrl, log, Date.now, config.router_settings.redis_namespace) : null;
  await starting.checkpoint(openedSoFar());
  const gateway = await buildGateway({
    // Without Redis, the windows only the last run counted (with it, Redis holds them).
    rateWindows: redis ? undefined : readRateWindows(g.data_dir, (message) => log.warn(message)),
    config, db, log,
    counters: redis?.counters,
    deploymentUsage: redis?.deploymentUsage,
    broadcast: redis ? (message) => redis.publish(message) : undefined,
    redisStatus: redis ? () => redis.status() : undefined,
    redisStats: redis ? { syncMs: () => redis.counters.lastSyncMs, failures: () => redis.counters.failures, commands: () => redis.commands(), counterSyncs: () => redis.counters.counterSyncs } : undefined,
    configSource: () => loadConfig(args.config!, process.env, { reload: true }),
    warm,
  });
  await starting.checkpoint(openedSoFar());
  redis?.subscribe((message) => gateway.invalidated(message));
  const scheduler = startBudgetScheduler({ db, log, config, gateway });

  const port = args.port ?? 4000;
  const hostname = args.host ?? "0.0.0.0";
  // A name that does not resolve fails the listen with whatever code the runtime picks ("the port is in
  // use", "no such file"): asked first, so that the message can say what is wrong.
  const resolves = isIP(hostname) !== 0 || (await lookup(hostname).then(() => true, () => false));
  const serve = (app: typeof gateway.app | NonNullable<typeof gateway.adminApp>, p: number, routes = {}) => {
    try {
      return Bun.serve({ port: p, hostname, routes: { ...livenessServerRoutes, ...routes }, fetch: withCors((request) => app.handle(withRoutableHost(request))), idleTimeout: args.idleTimeout ?? 255,
        // Bodies are held to max_request_size_mb by the gateway itself (refused before they are read, with
        // the error envelope): the server's own limit, which answers a bare 413, is set out of the way.
        maxRequestBodySize: Number.MAX_SAFE_INTEGER });
    } catch (error) {
      unlock();
      // The runtime says a port is in use whenever it cannot listen, a bad --host included.
      const code = (error as { code?: string }).code;
      const reason = /^[\d.]+$/.test(hostname) && isIP(hostname) === 0 ? `${hostname} is not an IP address (--host)`
        : !resolves ? `${hostname} could not be resolved to an address (--host)`
        : code === "EADDRINUSE" ? "the port is in use"
        : code === "EINVAL" || code === "EADDRNOTAVAIL" ? `${hostname} is not an address of this machine (--host)`
        : String(error).split("\n")[0];
      return fail(`cannot listen on ${hostname}:${p}: ${reason}`);
    }
  };
  if (gateway.adminApp && g.admin_port === port && port !== 0) {
    unlock();
    fail(`general_settings.admin_port ${port} is the port the gateway serves on (--port, PORT or 4000): give the admin API a port of its own`);
  }
  const server = serve(gateway.app, port, gateway.serverRoutes);
  const adminServer = gateway.adminApp && g.admin_port !== undefined ? serve(gateway.adminApp, g.admin_port) : null;
  log.info(`litegate ${VERSION} listening`, { url: `http://${hostname}:${server.port}`, database: warm ? "pglite (opening)" : db.kind, redis: redis ? "on" : "off", admin_port: adminServer?.port });
  if (warm) dropWarmState(g.data_dir);
  dropRateWindows(g.data_dir);
  openBehind();

  let stopping = false;
  /** Stops the gateway; with `failure` (the database could not be opened behind it), exits 1 saying so. */
  const shutdown = async (signal: string, failure?: unknown) => {
    if (stopping) return;
    stopping = true;
    if (failure === undefined) log.info("shutting down: finishing in-flight requests", { signal });
    else log.error("the database could not be opened: stopping, finishing in-flight requests", { error: failure instanceof Error ? failure.message : String(failure) });
    const grace = Bun.sleep(g.shutdown_grace_seconds * 1000).then(() => "timeout" as const);
    const drained = Promise.all([server.stop(false), adminServer?.stop(false)]).then(() => "drained" as const);
    if ((await Promise.race([drained, grace])) === "timeout") {
      log.warn("grace period over: closing remaining connections");
      server.stop(true);
      adminServer?.stop(true);
    }
    scheduler.stop();
    // A stop while the database opens behind the gateway waits for the open (a second or so): if it
    // fails, that is said, and what was served is saved to spend-pending at once, since it takes nothing.
    if (failure === undefined) failure = (await failedBehind) ?? undefined;
    const lost = await gateway.close(failure === undefined ? undefined : 0);
    await redis?.close();
    // After the requests in flight have ended, so that their tokens count.
    try {
      saveRateWindows(g.data_dir, gateway.rateWindows());
    } catch (error) {
      log.warn("could not save the rate windows for the next start", { error: String(error) });
    }
    if (failure !== undefined) {
      await db.close();
      unlock();
      if (lost > 0) log.error("stopped", { spend_lost_requests: lost });
      cannotOpen(failure);
    }
    if (db.kind === "pglite" && gateway.spend.backlog() === 0 && !hasPendingSpend(g.data_dir)) {
      // What the next start serves with while the database opens; saved only when all spend is written
      // (not merely saved to spend-pending, which that start must write first).
      await closeAndSaveWarmState(db, g.data_dir, VERSION, gateway.auth.known(WARM_KEYS), loadGatewayState)
        .catch((error) => log.warn("could not save the state for the next start", { error: String(error) }));
    } else await db.close();
    unlock();
    log.info("stopped", lost > 0 ? { spend_lost_requests: lost } : {});
    process.exit(lost > 0 ? 1 : 0);
  };
  // A library failing inside a callback (a dropped database connection, say) must not take the
  // gateway down with requests in flight: log it and keep serving.
  process.on("uncaughtException", (error) => log.error("uncaught exception", { error: error.stack ?? String(error) }));
  process.on("unhandledRejection", (error) => log.error("unhandled rejection", { error: error instanceof Error ? error.stack : String(error) }));
  process.on("SIGHUP", () => {
    // A refusal is logged by reloadFromSource; the running config stays.
    gateway.reloadFromSource().catch(() => {});
  });
  // Only now that the reload listens: with no listener at all the signal's default (the end) would apply for a moment.
  process.off("SIGHUP", hangupWhileStarting);
  starting.done();
  process.on("SIGTERM", () => void shutdown("SIGTERM"));
  process.on("SIGINT", () => void shutdown("SIGINT"));
  // The database failing to open behind a gateway that served (a warm start): what it served is saved to
  // spend-pending, which the next start writes before it serves, as at a shutdown the database cannot take.
  void failedBehind?.then((error) => {
    if (error !== null) void shutdown("database", error);
  });
}

main().catch((error) => fail(error instanceof Error ? (error.stack ?? error.message) : String(error)));
