import { GatewayError } from "../http/errors";
import { ConfigError } from "../config";
import { isDatabaseUnavailable } from "../db/unavailable";
import { DatabaseUnanswered, watch } from "../db/watched";
import type { AdminDeps } from "./deps";
import { adminOnlyRoutes } from "./guard";

/** `POST /config/reload`: re-reads config.yaml; an invalid file is refused and the running config kept. */
export function configRoutes(deps: AdminDeps) {
  return adminOnlyRoutes("admin-config", deps).post("/config/reload", async () => {
    try {
      // A hung server holds a reload that needs it: answered 503 within seconds, as other admin calls are.
      return { status: "reloaded", ...(await watch(deps.db, deps.reloadConfig())) };
    } catch (error) {
      if (error instanceof DatabaseUnanswered) {
        throw new GatewayError(503, "service_unavailable", "config not reloaded yet: the database stopped answering; the running config is kept for now, and this reload may still apply when it answers");
      }
      const message = error instanceof ConfigError ? error.problems.join("; ") : error instanceof Error ? error.message : String(error);
      // The file may be fine: what it changes needs the database (a default budget's period), which is down.
      if (!(error instanceof ConfigError) && isDatabaseUnavailable(error)) {
        throw new GatewayError(503, "service_unavailable", `config not reloaded, the running config is kept: the database is unavailable (${message}); retry shortly`);
      }
      throw new GatewayError(400, "invalid_config", `config not reloaded, the running config is kept: ${message}`);
    }
  }, { detail: { tags: ["health"], summary: "Reload config.yaml (models, prices, budgets, limits) without a restart" } });
}
