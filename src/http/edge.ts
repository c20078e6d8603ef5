import { Elysia } from "elysia";
import type { Logger } from "../log";
import { GatewayError, badRequest, errorResponse, notFound, unexpected } from "./errors";

/** Elysia's validation error names the failing field in `valueError.path` (`/max_budget`). */
function validationMessage(error: any): GatewayError {
  const first = error?.valueError ?? error?.all?.[0];
  const path = typeof first?.path === "string" ? first.path.replace(/^\//, "").replaceAll("/", ".") : "";
  const reason = first?.schema?.error ?? first?.message ?? "invalid value";
  return badRequest(path ? `${path}: ${reason}` : `Invalid request body: ${reason}`, path || null);
}

/** One error envelope for everything the app answers: domain errors, validation, unknown routes, crashes. */
export function httpEdge(log: Logger) {
  return new Elysia({ name: "http-edge" }).onError({ as: "global" }, ({ code, error, request }) => {
    if (error instanceof GatewayError) return errorResponse(error);
    switch (code) {
      case "VALIDATION":
        return errorResponse(validationMessage(error));
      case "PARSE":
        return errorResponse(badRequest("Request body is not valid JSON"));
      case "NOT_FOUND":
        return errorResponse(notFound(`Route not found: ${request.method} ${new URL(request.url).pathname}`));
      case "INVALID_COOKIE_SIGNATURE":
        return errorResponse(badRequest("Invalid cookie"));
    }
    log.error("unhandled error", { path: new URL(request.url).pathname, error: error instanceof Error ? error.stack : String(error) });
    return errorResponse(unexpected());
  });
}
