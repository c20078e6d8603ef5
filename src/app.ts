import { swagger } from "@elysiajs/swagger";
import { Elysia } from "elysia";
import { type AdminDeps, adminRoutes } from "./admin";
import { type HealthProbe, healthRoutes, httpEdge } from "./http";
import type { Logger } from "./log";
import { type Metrics, metricsRoutes } from "./metrics";
import { type Inference, type Runtime, inferenceRoutes } from "./proxy";

export interface AppDeps {
  log: Logger;
  inference: Inference;
  runtime: () => Runtime;
  health: HealthProbe;
  admin: AdminDeps;
  version: string;
  /** Serve the admin API on this app (false when it is disabled or has a port of its own). */
  withAdmin: boolean;
  metrics: Metrics;
  metricsPublic: () => boolean;
}

/** Mounts the plugins in pipeline order. No I/O here: everything it needs is passed in. */
export function createApp(deps: AppDeps) {
  const app = new Elysia({ name: "litegate" })
    .use(httpEdge(deps.log))
    .use(
      swagger({
        path: "/",
        specPath: "/openapi.json",
        provider: "swagger-ui",
        exclude: ["/", "/openapi.json"],
        documentation: {
          info: { title: "litegate", version: deps.version, description: "OpenAI-compatible LLM gateway: virtual keys, budgets and rate limits." },
          tags: [
            { name: "inference", description: "OpenAI-compatible inference" },
            { name: "key management" },
            { name: "user management" },
            { name: "team management" },
            { name: "budget management" },
            { name: "customer management" },
            { name: "spend" },
            { name: "health" },
          ],
        },
      }),
    )
    .use(healthRoutes(deps.health))
    .use(metricsRoutes(deps.metrics, deps.admin.auth, deps.metricsPublic))
    .use(inferenceRoutes(deps.inference, deps.admin.auth, deps.runtime, deps.log));
  return deps.withAdmin ? app.use(adminRoutes(deps.admin)) : app;
}

/** The admin API alone, for `general_settings.admin_port`. */
export function createAdminApp(deps: AppDeps) {
  return new Elysia({ name: "litegate-admin" }).use(httpEdge(deps.log)).use(healthRoutes(deps.health)).use(adminRoutes(deps.admin));
}
