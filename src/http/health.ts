import { Elysia } from "elysia";

export interface HealthProbe {
  /** Database answers. */
  database(): Promise<boolean>;
  /** The database is still being opened (the gateway serves what it already knows meanwhile). */
  databaseOpening(): boolean;
  /** "connected", "degraded" (configured but unreachable) or "not configured". */
  redis(): string;
  /** Spend waiting to be written. */
  spendBacklog(): number;
  /** The gateway's version, answered as LiteLLM's `litellm_version`. */
  version: string;
}

/**
 * Liveness as static server routes: answered by the server without running any of the program's code,
 * so a probe costs nothing and answers as soon as the gateway listens (the framework's routes below
 * stay for the API's documentation and for other methods).
 */
export const livenessServerRoutes = {
  "/health/liveliness": { GET: alive() },
  "/health/liveness": { GET: alive() },
};

/** The JSON string LiteLLM answers (clients parse it as JSON). */
function alive(): Response {
  return Response.json("I'm alive!");
}

/** Public liveness and readiness; readiness fails (503) while the database is unreachable or still opening. */
export function healthRoutes(probe: HealthProbe) {
  return new Elysia({ name: "health" })
    .get("/health/liveliness", alive, { detail: { tags: ["health"] } })
    .get("/health/liveness", alive, { detail: { tags: ["health"], hide: true } })
    .get(
      "/health/readiness",
      async () => {
        const opening = probe.databaseOpening();
        const db = !opening && (await probe.database());
        const redis = probe.redis();
        const status = opening ? "starting" : !db ? "unhealthy" : redis === "degraded" ? "degraded" : "healthy";
        return Response.json(
          {
            status, db: db ? "connected" : opening ? "opening" : "unreachable", cache: redis, litellm_version: probe.version,
            success_callbacks: [], spend_backlog: probe.spendBacklog(),
          },
          { status: db ? 200 : 503 },
        );
      },
      { detail: { tags: ["health"], summary: "Ready to serve: 503 while the database is unreachable or still opening" } },
    );
}
