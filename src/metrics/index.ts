import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import type { RequestRecord } from "../proxy/inference";

/**
 * Prometheus metrics. Label values that come from users (key alias, team, customer) are capped:
 * past `maxLabelValues` distinct values a label reads "other", so a scrape stays small whatever
 * the number of keys.
 */
export interface MetricsSources {
  spendBacklog(): number;
  /** Statements sent to the database since start. */
  dbStatements?(): number;
  /** Commands sent to Redis since start. */
  redisCommands?(): number;
  redisSyncMs?(): number;
  redisFailures?(): number;
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

/** Children of a labelled metric, cached by their label values: no label hashing per request. */
function cached<T>(make: (values: string[]) => T) {
  const children = new Map<string, T>();
  return (...values: string[]): T => {
    const key = values.join("\u0001");
    let child = children.get(key);
    if (!child) {
      child = make(values);
      children.set(key, child);
    }
    return child;
  };
}

export type Metrics = ReturnType<typeof createMetrics>;

export function createMetrics(sources: MetricsSources, maxLabelValues = 200) {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: "litegate_process_" });
  const keys = new LabelCap(maxLabelValues);
  const teams = new LabelCap(maxLabelValues);
  const customers = new LabelCap(maxLabelValues);

  const requests = new Counter({ name: "litegate_requests_total", help: "Inference requests by model, route and status", labelNames: ["model", "route", "status"], registers: [registry] });
  const latency = new Histogram({
    name: "litegate_request_duration_seconds", help: "Inference request duration (to the last byte for streams)",
    labelNames: ["model", "route"], buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60], registers: [registry],
  });
  const tokens = new Counter({ name: "litegate_tokens_total", help: "Tokens by model, key alias, team and customer", labelNames: ["model", "key_alias", "team", "customer", "kind"], registers: [registry] });
  const spend = new Counter({ name: "litegate_spend_usd_total", help: "Spend in USD by model, key alias, team and customer", labelNames: ["model", "key_alias", "team", "customer"], registers: [registry] });
  const rejections = new Counter({ name: "litegate_rejections_total", help: "Requests refused before reaching a provider, by reason", labelNames: ["reason"], registers: [registry] });
  const upstreamErrors = new Counter({ name: "litegate_upstream_errors_total", help: "Provider errors by deployment and status", labelNames: ["deployment", "status"], registers: [registry] });
  const upstreamLatency = new Histogram({
    name: "litegate_upstream_duration_seconds", help: "Provider latency by deployment", labelNames: ["deployment"],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60], registers: [registry],
  });
  new Gauge({ name: "litegate_spend_backlog_requests", help: "Requests whose spend is not written to the database yet", registers: [registry], collect() { this.set(sources.spendBacklog()); } });
  new Gauge({ name: "litegate_redis_sync_seconds", help: "Duration of the last Redis counter sync", registers: [registry], collect() { this.set((sources.redisSyncMs?.() ?? 0) / 1000); } });
  new Gauge({ name: "litegate_db_statements", help: "Statements sent to the database since start", registers: [registry], collect() { this.set(sources.dbStatements?.() ?? 0); } });
  new Gauge({ name: "litegate_redis_commands", help: "Commands sent to Redis since start", registers: [registry], collect() { this.set(sources.redisCommands?.() ?? 0); } });
  new Gauge({ name: "litegate_redis_sync_failures", help: "Redis counter syncs that failed since start", registers: [registry], collect() { this.set(sources.redisFailures?.() ?? 0); } });

  const requestsOf = cached((v) => requests.labels(...v));
  const latencyOf = cached((v) => latency.labels(...v));
  const upstreamLatencyOf = cached((v) => upstreamLatency.labels(...v));
  const tokensOf = cached((v) => tokens.labels(...v));
  const spendOf = cached((v) => spend.labels(...v));

  return {
    registry,
    observe(record: RequestRecord): void {
      const seconds = record.durationMs / 1000;
      requestsOf(record.model, record.route, String(record.status)).inc();
      latencyOf(record.model, record.route).observe(seconds);
      if (record.deployment) upstreamLatencyOf(record.deployment).observe(seconds);
      if (record.status >= 400 && record.deployment) upstreamErrors.inc({ deployment: record.deployment, status: String(record.status) });
      if (!record.usage) return;
      const principal = record.caller.kind === "key" ? record.caller.principal : null;
      const key = keys.value(principal ? (principal.key.key_alias ?? principal.key.key_name) : "master");
      const team = teams.value(principal?.key.team_id);
      const customer = customers.value(record.customer);
      tokensOf(record.model, key, team, customer, "prompt").inc(record.usage.prompt_tokens);
      tokensOf(record.model, key, team, customer, "completion").inc(record.usage.completion_tokens);
      spendOf(record.model, key, team, customer).inc(record.cost);
    },
    /** A refusal: budget_exceeded, rate_limit_error, auth_error, key_model_access_denied, … */
    reject(reason: string): void {
      rejections.inc({ reason });
    },
    async render(): Promise<Response> {
      return new Response(await registry.metrics(), { headers: { "content-type": registry.contentType } });
    },
  };
}
export { metricsRoutes } from "./routes";
