import { allowOrigin, preflight } from "../http/cors";
import { GatewayError, errorResponse, unexpected } from "../http/errors";
import type { Logger } from "../log";
import type { Route } from "../providers/types";
import type { Inference } from "./inference";
import { isStreamed } from "./tap";

/**
 * The inference paths: the OpenAI routes with and without `/v1`, as LiteLLM serves them, and
 * Anthropic's Messages API at `/v1/messages` only (LiteLLM has no `/messages`).
 */
export const INFERENCE_PATHS: ReadonlyArray<[string, Route]> = [
  ["/v1/chat/completions", "chat"],
  ["/chat/completions", "chat"],
  ["/v1/completions", "completions"],
  ["/completions", "completions"],
  ["/v1/embeddings", "embeddings"],
  ["/embeddings", "embeddings"],
  ["/v1/messages", "messages"],
];

/** What the server's idle timer needs of the server: its per-request setting. */
export interface Server {
  timeout(request: Request, seconds: number): void;
}

/**
 * A stream answered to a client is not cut by the server's idle timer (255 s at most) while the
 * provider is silent: its silences are bounded by the request's own deadlines (`stream_timeout`,
 * `request_timeout`, 600 s by default). The connection's timer comes back once the answer ends.
 */
export function untimed(response: Response, request: Request, server: Server | null | undefined): Response {
  if (server && isStreamed(response)) server.timeout(request, 0);
  return response;
}


/**
 * The inference routes as Bun server routes: the hot path skips the framework's per-request work
 * and goes straight to the orchestrator (the same one the Elysia routes call, with the same envelope).
 */
export function inferenceServerRoutes(inference: Inference, log: Logger) {
  const routes: Record<string, { POST: (request: Request, server: Server) => Promise<Response>; OPTIONS: (request: Request) => Response }> = {};
  for (const [path, route] of INFERENCE_PATHS) {
    const POST = async (request: Request, server: Server) => {
      try {
        return allowOrigin(request, untimed(await inference(route, request), request, server));
      } catch (error) {
        if (error instanceof GatewayError) return allowOrigin(request, errorResponse(error));
        log.error("unhandled error", { path, error: error instanceof Error ? error.stack : String(error) });
        return allowOrigin(request, errorResponse(unexpected()));
      }
    };
    routes[path] = { POST, OPTIONS: preflight };
  }
  return routes;
}
