export * from "./errors";
export { httpEdge } from "./edge";
export { healthRoutes, livenessServerRoutes, type HealthProbe } from "./health";
export { allowOrigin, preflight, withCors, withRoutableHost } from "./cors";
