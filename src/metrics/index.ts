import { Counter, Gauge, Registry } from "prom-client";
import type { RequestRecord } from "../proxy/inference";
import type { Standings } from "../governance/gauges";
import { renderStandings } from "./budgets";
import { CounterSeries, HistogramSeries } from "./series";

/**
 * Prometheus metrics. Label values that come from users (model, key alias, team, customer) are capped:
 * past `maxLabelValues` distinct values a label reads "other", so a scrape stays small whatever
 * the number of keys.
 */
export interface MetricsSources {
  spendBacklog(): number;
  /** Requests whose spend the database refused for its content, saved aside since start. */
  spendSetAside?(): number;
  /** Statements sent to the database since start. */
  dbStatements?(): number;
  /** Commands sent to Redis since start. */
  redisCommands?(): number;
  redisCounterSyncs?(): number;
  redisSyncMs?(): number;
  redisFailures?(): number;
  cachedKeys?(): number;
  cachedCustomers?(): number;
  counters?(): number;
  /** Deployments with a `max_parallel_requests`: the cap, and this instance's requests in flight there and waiting for a slot. */
  deploymentSlots?(): Array<{ id: string; cap: number; inFlight: number; waiting: number }>;
  /** Where the budgets and limits of the keys, teams, users and customers held stand (read when scraped). */
  standings?(): Promise<Standings>;
}

class LabelCap {
  private readonly seen = new Set<string>();
  constructor(private readonly max: number) {}
  value(raw: string | null | undefined): string {
    const value = raw || "none";
    if (this.seen.has(value)) return value;
    if (this.seen.size >= this.max) return "other";
    this.seen.add(value);
    return value;
  }
}

/** The status of a request whose client left before its answer ended (requests_total shows it). */
const CLIENT_LEFT = 499;

/** Status codes as label values, without building a string per request. */
const statusTexts = new Map<number, string>();
function statusText(status: number): string {
  let text = statusTexts.get(status);
  if (!text) statusTexts.set(status, (text = String(status)));
  return text;
}

export type Metrics = ReturnType<typeof createMetrics>;

/**
 * Process metrics read from counters the runtime keeps anyway. (prom-client's default set walks the
 * whole JavaScript heap for its per-space sizes: with a large key cache a scrape then stalls every
 * request in flight for a tenth of a second or more.)
 */
function processMetrics(registry: Registry): void {
  const startSeconds = Math.round(Date.now() / 1000 - process.uptime());
  const gauge = (name: string, help: string, read: () => number) =>
    new Gauge({ name: `litegate_process_${name}`, help, registers: [registry], collect() { this.set(read()); } });
  gauge("resident_memory_bytes", "Resident memory of the process", () => process.memoryUsage.rss());
  // The runtime's "heap total" is not an upper bound of what is used (it reads lower): only the used size is exported.
  gauge("heap_used_bytes", "JavaScript heap in use", () => process.memoryUsage().heapUsed);
  let cpuSeen = 0;
  new Counter({
    name: "litegate_process_cpu_seconds_total", help: "CPU time used by the process (user + system)", registers: [registry],
    collect() {
      const { user, system } = process.cpuUsage();
      const now = (user + system) / 1e6;
      if (now > cpuSeen) this.inc(now - cpuSeen);
      cpuSeen = Math.max(cpuSeen, now);
    },
  });
  gauge("start_time_seconds", "When the process started, in seconds since the epoch", () => startSeconds);
}

export function createMetrics(sources: MetricsSources, maxLabelValues = 200) {
  const registry = new Registry();
  processMetrics(registry);
  // A wildcard entry serves whatever names clients make up: the model label is capped too.
  const models = new LabelCap(maxLabelValues);
  const keys = new LabelCap(maxLabelValues);
  const teams = new LabelCap(maxLabelValues);
  const customers = new LabelCap(maxLabelValues);

  const buckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
  const requests = new CounterSeries("litegate_requests_total", "Inference requests by model, route and status", ["model", "route", "status"]);
  const latency = new HistogramSeries("litegate_request_duration_seconds", "Inference request duration (to the last byte for streams)", ["model", "route"], buckets);
  const upstreamLatency = new HistogramSeries("litegate_upstream_duration_seconds",
    "Duration of the provider call that answered, by deployment (to the whole answer; for streams, to the stream's start); calls retried elsewhere are not included", ["deployment"], buckets);
  const tokens = new CounterSeries("litegate_tokens_total", "Tokens by model, key alias, team and customer", ["model", "key_alias", "team", "customer", "kind"]);
  const spend = new CounterSeries("litegate_spend_usd_total", "Spend in USD by model, key alias, team and customer", ["model", "key_alias", "team", "customer"]);
  const series = [requests, latency, upstreamLatency, tokens, spend];
  const rejections = new Counter({ name: "litegate_rejections_total", help: "Requests refused before reaching a provider, by reason", labelNames: ["reason"], registers: [registry] });
  const upstreamErrors = new Counter({
    name: "litegate_upstream_errors_total", help: "Failed provider calls by deployment and status, retried ones included; streams that ended badly", labelNames: ["deployment", "status"], registers: [registry],
  });
  new Gauge({ name: "litegate_spend_backlog_requests", help: "Requests whose spend is not written to the database yet", registers: [registry], collect() { this.set(sources.spendBacklog()); } });
  new Gauge({ name: "litegate_spend_set_aside_requests", help: "Requests whose spend the database refused and that were saved to a file instead, since start", registers: [registry], collect() { this.set(sources.spendSetAside?.() ?? 0); } });
  new Gauge({ name: "litegate_redis_sync_seconds", help: "Duration of the last Redis counter sync", registers: [registry], collect() { this.set((sources.redisSyncMs?.() ?? 0) / 1000); } });
  new Gauge({ name: "litegate_db_statements", help: "Statements sent to the database since start", registers: [registry], collect() { this.set(sources.dbStatements?.() ?? 0); } });
  new Gauge({ name: "litegate_redis_commands", help: "Commands sent to Redis since start", registers: [registry], collect() { this.set(sources.redisCommands?.() ?? 0); } });
  new Gauge({ name: "litegate_redis_counter_syncs", help: "Counters synced with Redis since start (a round trip syncs many)", registers: [registry], collect() { this.set(sources.redisCounterSyncs?.() ?? 0); } });
  new Gauge({ name: "litegate_cached_keys", help: "Keys held in the key cache (at most general_settings.key_cache_size; unknown keys are held apart)", registers: [registry], collect() { this.set(sources.cachedKeys?.() ?? 0); } });
  new Gauge({ name: "litegate_cached_customers", help: "Customers held in the customer cache (at most general_settings.key_cache_size)", registers: [registry], collect() { this.set(sources.cachedCustomers?.() ?? 0); } });
  new Gauge({ name: "litegate_counters", help: "Budget and rate-limit counters held in memory (idle ones are dropped)", registers: [registry], collect() { this.set(sources.counters?.() ?? 0); } });
  const slotGauge = (name: string, help: string, read: (slots: { cap: number; inFlight: number; waiting: number }) => number) => new Gauge({
    name, help, labelNames: ["deployment"], registers: [registry],
    collect() {
      this.reset();
      for (const slots of sources.deploymentSlots?.() ?? []) this.set({ deployment: slots.id }, read(slots));
    },
  });
  slotGauge("litegate_deployment_max_parallel_requests", "A deployment's max_parallel_requests (or router_settings.default_max_parallel_requests)", (s) => s.cap);
  slotGauge("litegate_deployment_requests_in_flight", "Requests this instance has in flight at a deployment with max_parallel_requests (its slots)", (s) => s.inFlight);
  slotGauge("litegate_deployment_requests_waiting", "Requests on this instance waiting for a slot at a deployment (max_parallel_requests)", (s) => s.waiting);
  new Gauge({ name: "litegate_redis_sync_failures", help: "Redis counter syncs that failed since start", registers: [registry], collect() { this.set(sources.redisFailures?.() ?? 0); } });

  return {
    registry,
    observe(record: RequestRecord): void {
      const seconds = record.durationMs / 1000;
      const model = models.value(record.model);
      requests.add([model, record.route, statusText(record.status)]);
      latency.observe([model, record.route], seconds);
      // A failed call is counted when it fails (providerFailed); a stream fails after its call answered.
      // A client that left (499) is no failure of the provider's.
      if (record.streamEnd !== undefined && record.status >= 400 && record.status !== CLIENT_LEFT && record.deployment) {
        upstreamErrors.inc({ deployment: record.deployment, status: statusText(record.status) });
      }
      if (!record.usage) return;
      const principal = record.caller.kind === "key" ? record.caller.principal : null;
      const key = keys.value(principal ? (principal.key.key_alias ?? principal.key.key_name) : "master");
      const team = teams.value(principal?.key.team_id);
      const customer = customers.value(record.customer);
      tokens.add([model, key, team, customer, "prompt"], record.usage.prompt_tokens);
      tokens.add([model, key, team, customer, "completion"], record.usage.completion_tokens);
      spend.add([model, key, team, customer], record.cost);
    },
    /** A provider call that failed, whether or not another deployment then answered; not one the client left. */
    providerFailed(deployment: string, status: number): void {
      if (status !== CLIENT_LEFT) upstreamErrors.inc({ deployment, status: statusText(status) });
    },
    /** The provider call whose result went to the client. */
    providerAnswered(deployment: string, seconds: number): void {
      upstreamLatency.observe([deployment], seconds);
    },
    /** A refusal: budget_exceeded, rate_limit_error, auth_error, key_model_access_denied, … */
    reject(reason: string): void {
      rejections.inc({ reason });
    },
    async render(): Promise<Response> {
      const standings = await sources.standings?.();
      const text = (await registry.metrics()) + series.map((s) => s.render()).join("") + (standings ? renderStandings(standings) : "");
      return new Response(text, { headers: { "content-type": registry.contentType } });
    },
  };
}
export { metricsRoutes } from "./routes";
