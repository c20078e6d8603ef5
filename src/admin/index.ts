import { Elysia } from "elysia";
import type { AdminDeps } from "./deps";

export type { AdminDeps } from "./deps";

/** Key, user, team, member, budget, customer and spend management. */
export function adminRoutes(deps: AdminDeps) {
  return new Elysia({ name: "admin" });
}
