import { GatewayError, errorResponse, unexpected } from "../http/errors";
import type { Logger } from "../log";
import type { Route } from "../providers/types";
import type { Inference } from "./inference";

const PATHS: ReadonlyArray<[string, Route]> = [
  ["/chat/completions", "chat"],
  ["/completions", "completions"],
  ["/embeddings", "embeddings"],
];

/**
 * The inference routes as Bun server routes: the hot path skips the framework's per-request work
 * and goes straight to the orchestrator (the same one the Elysia routes call, with the same envelope).
 */
export function inferenceServerRoutes(inference: Inference, log: Logger) {
  const routes: Record<string, { POST: (request: Request) => Promise<Response> }> = {};
  for (const [path, route] of PATHS) {
    const POST = async (request: Request) => {
      try {
        return await inference(route, request);
      } catch (error) {
        if (error instanceof GatewayError) return errorResponse(error);
        log.error("unhandled error", { path, error: error instanceof Error ? error.stack : String(error) });
        return errorResponse(unexpected());
      }
    };
    routes[path] = { POST };
    routes[`/v1${path}`] = { POST };
  }
  return routes;
}
