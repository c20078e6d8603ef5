import { Elysia } from "elysia";
import type { Auth } from "../auth";
import { isProxyAdminViewer } from "../auth/principal";
import { authError } from "../http/errors";
import type { Metrics } from "./index";

/**
 * `GET /metrics`: Prometheus exposition; admins only (a proxy_admin_viewer too, who reads all spend)
 * unless `general_settings.metrics_public`.
 */
export function metricsRoutes(metrics: Metrics, auth: Auth, isPublic: () => boolean) {
  return new Elysia({ name: "metrics" }).get(
    "/metrics",
    async ({ request }) => {
      if (!isPublic()) {
        const caller = await auth.authenticate(request.headers);
        if (caller.kind === "key" && !caller.admin && !isProxyAdminViewer(caller)) throw authError("Authentication Error, only admins may read /metrics");
      }
      return metrics.render();
    },
    { detail: { tags: ["health"], summary: "Prometheus metrics" } },
  );
}
