import { GatewayError } from "../http/errors";
import { ConfigError } from "../config";
import { isDatabaseUnavailable } from "../db/unavailable";
import type { AdminDeps } from "./deps";
import { adminOnlyRoutes } from "./guard";

/** `POST /config/reload`: re-reads config.yaml; an invalid file is refused and the running config kept. */
export function configRoutes(deps: AdminDeps) {
  return adminOnlyRoutes("admin-config", deps).post("/config/reload", async () => {
    try {
      return { status: "reloaded", ...(await deps.reloadConfig()) };
    } catch (error) {
      const message = error instanceof ConfigError ? error.problems.join("; ") : error instanceof Error ? error.message : String(error);
      // The file may be fine: what it changes needs the database (a default budget's period), which is down.
      if (!(error instanceof ConfigError) && isDatabaseUnavailable(error)) {
        throw new GatewayError(503, "service_unavailable", `config not reloaded, the running config is kept: the database is unavailable (${message}); retry shortly`);
      }
      throw new GatewayError(400, "invalid_config", `config not reloaded, the running config is kept: ${message}`);
    }
  }, { detail: { tags: ["health"], summary: "Reload config.yaml (models, prices, budgets, limits) without a restart" } });
}
