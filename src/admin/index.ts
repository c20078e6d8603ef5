import { type AnyElysia, Elysia } from "elysia";
import { activityRoutes } from "./activity";
import { budgetRoutes } from "./budgets";
import { configRoutes } from "./config";
import { customerRoutes } from "./customers";
import { healthCheckRoutes } from "./health";
import type { AdminDeps } from "./deps";
import { keyRoutes } from "./keys";
import { memberRoutes } from "./members";
import { reportRoutes } from "./reports";
import { spendRoutes } from "./spend";
import { teamRoutes } from "./teams";
import { userRoutes } from "./users";

export type { AdminDeps } from "./deps";
export { defaultGrace } from "./key-grace";

/**
 * Key, user, team, member, budget, customer and spend management. Its type names no routes: nothing
 * calls them through it, and the type of every admin route together is past what the checker compares.
 */
export function adminRoutes(deps: AdminDeps): AnyElysia {
  return new Elysia({ name: "admin" })
    .use(keyRoutes(deps))
    .use(userRoutes(deps))
    .use(teamRoutes(deps))
    .use(memberRoutes(deps))
    .use(budgetRoutes(deps))
    .use(customerRoutes(deps))
    .use(customerRoutes(deps, "/end_user"))
    .use(spendRoutes(deps))
    .use(reportRoutes(deps))
    .use(activityRoutes(deps))
    .use(configRoutes(deps))
    .use(healthCheckRoutes(deps));
}
