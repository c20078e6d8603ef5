import { Elysia } from "elysia";
import type { Auth } from "../auth";
import { authError } from "../http/errors";
import type { Metrics } from "./index";

/** `GET /metrics`: Prometheus exposition; admin-only unless `general_settings.metrics_public`. */
export function metricsRoutes(metrics: Metrics, auth: Auth, isPublic: () => boolean) {
  return new Elysia({ name: "metrics" }).get(
    "/metrics",
    async ({ request }) => {
      if (!isPublic()) {
        const caller = await auth.authenticate(request.headers);
        if (caller.kind === "key" && !caller.admin) throw authError("Authentication Error, only admins may read /metrics");
      }
      return metrics.render();
    },
    { detail: { tags: ["health"], summary: "Prometheus metrics" } },
  );
}
