export * from "./errors";
export { httpEdge } from "./edge";
export { healthRoutes, type HealthProbe } from "./health";
