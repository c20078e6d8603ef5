import { Elysia } from "elysia";

export interface HealthProbe {
  /** Database answers. */
  database(): Promise<boolean>;
  /** "connected", "degraded" (configured but unreachable) or "not configured". */
  redis(): string;
  /** Spend waiting to be written. */
  spendBacklog(): number;
}

/** Public liveness and readiness; readiness fails (503) when the database is unreachable. */
export function healthRoutes(probe: HealthProbe) {
  return new Elysia({ name: "health" })
    .get("/health/liveliness", () => new Response("I'm alive!"), { detail: { tags: ["health"] } })
    .get("/health/liveness", () => new Response("I'm alive!"), { detail: { tags: ["health"], hide: true } })
    .get(
      "/health/readiness",
      async () => {
        const db = await probe.database();
        const redis = probe.redis();
        const status = !db ? "unhealthy" : redis === "degraded" ? "degraded" : "healthy";
        return Response.json(
          { status, db: db ? "connected" : "unreachable", cache: redis, spend_backlog: probe.spendBacklog() },
          { status: db ? 200 : 503 },
        );
      },
      { detail: { tags: ["health"], summary: "Ready to serve: 503 while the database is unreachable" } },
    );
}
