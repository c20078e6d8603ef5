import { allowOrigin, preflight } from "../http/cors";
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
  const routes: Record<string, { POST: (request: Request) => Promise<Response>; OPTIONS: (request: Request) => Response }> = {};
  for (const [path, route] of PATHS) {
    const POST = async (request: Request) => {
      try {
        return allowOrigin(request, await inference(route, request));
      } catch (error) {
        if (error instanceof GatewayError) return allowOrigin(request, errorResponse(error));
        log.error("unhandled error", { path, error: error instanceof Error ? error.stack : String(error) });
        return allowOrigin(request, errorResponse(unexpected()));
      }
    };
    routes[path] = { POST, OPTIONS: preflight };
    routes[`/v1${path}`] = { POST, OPTIONS: preflight };
  }
  return routes;
}
