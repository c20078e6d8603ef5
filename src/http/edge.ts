import { Elysia } from "elysia";
import { isDatabaseUnavailable } from "../db/unavailable";
import { DatabaseUnanswered } from "../db/watched";
import type { Logger } from "../log";
import { GatewayError, badRequest, errorResponse, notFound, shownPath, unexpected } from "./errors";

/** What a schema expects, in words: "a number >= 0", "a duration such as 30s…". */
function expected(schema: any): string {
  if (!schema) return "a valid value";
  if (typeof schema.error === "string") return schema.error.replace(/^must be /, "");
  if (schema.const !== undefined) return JSON.stringify(schema.const);
  if (Array.isArray(schema.anyOf)) {
    const options = schema.anyOf.filter((option: any) => option.type !== "null" && !String(option.format ?? "").startsWith("numeric")).map(expected);
    return [...new Set(options)].join(" or ") + (schema.anyOf.some((o: any) => o.type === "null") ? " (or null)" : "");
  }
  const bounds = [schema.minimum !== undefined ? `>= ${schema.minimum}` : "", schema.maximum !== undefined ? `<= ${schema.maximum}` : ""].filter(Boolean).join(" and ");
  if (schema.type === "integer" || schema.multipleOf === 1) return `an integer${bounds ? ` ${bounds}` : ""}`;
  if (schema.type === "number") return `a number${bounds ? ` ${bounds}` : ""}`;
  if (schema.type === "string") {
    const most = schema.maxLength !== undefined ? ` of at most ${schema.maxLength} characters` : "";
    return schema.minLength ? `a non-empty string${most}` : `a string${most}`;
  }
  if (schema.type === "boolean") return "true or false";
  if (schema.type === "array") {
    const most = schema.maxItems !== undefined ? ` of at most ${schema.maxItems} items` : "";
    return schema.minItems ? `a non-empty array${most}` : `an array${most}`;
  }
  if (schema.type === "object") return "an object";
  return "a valid value";
}

/** A union's error stops at the union (`model_rpm_limit`): the variant that got furthest names the field inside it. */
function deepest(error: any): any {
  let best = error;
  for (const variant of Array.isArray(error?.errors) ? error.errors : []) {
    const first = typeof variant?.First === "function" ? variant.First() : undefined;
    if (!first) continue;
    const inner = deepest(first);
    if (String(inner.path ?? "").length > String(best.path ?? "").length) best = inner;
  }
  return best;
}

/** A JSON pointer (`/member/0/role`) as a field: `member[0].role`, an item of a list by its index. */
function fieldPath(pointer: string, root: unknown): string {
  let at = root;
  let path = "";
  for (const part of pointer.split("/").slice(1)) {
    const name = part.replaceAll("~1", "/").replaceAll("~0", "~");
    path += Array.isArray(at) ? `[${name}]` : path ? `.${name}` : name;
    at = at !== null && typeof at === "object" ? (at as Record<string, unknown>)[name] : undefined;
  }
  return path;
}

/** Elysia's validation error names the failing field in `valueError.path` (`/max_budget`). */
function validationMessage(error: any): GatewayError {
  const first = deepest(error?.valueError ?? error?.all?.[0]);
  const where = typeof first?.path === "string" ? fieldPath(first.path, error?.value) : "";
  // A query parameter's error has no path: its schema carries the name (see admin/fields.ts `numeric`).
  const path = where || (typeof first?.schema?.title === "string" ? first.schema.title : "");
  if (first && first.value === undefined) return badRequest(`${path}: required`, path || null);
  const value = typeof first?.value === "number" && !Number.isFinite(first.value) ? String(first.value) : JSON.stringify(first?.value)?.slice(0, 100);
  const got = first ? ` (got ${value})` : "";
  const reason = `must be ${expected(first?.schema)}${got}`;
  return badRequest(path ? `${path}: ${reason}` : `Invalid request: ${reason}`, path || null);
}

/** One error envelope for everything the app answers: domain errors, validation, unknown routes, crashes. */
export function httpEdge(log: Logger) {
  return new Elysia({ name: "http-edge" }).onError({ as: "global" }, ({ code, error, request }) => {
    if (error instanceof GatewayError) return errorResponse(error);
    switch (code) {
      case "VALIDATION":
        return errorResponse(validationMessage(error));
      case "PARSE":
        // A body hook's own refusal (lenient JSON, text that cannot be stored) arrives wrapped as the cause.
        if ((error as Error).cause instanceof GatewayError) return errorResponse((error as Error).cause as GatewayError);
        return errorResponse(badRequest("Request body is not valid JSON"));
      case "NOT_FOUND":
        return errorResponse(notFound(`Route not found: ${request.method} ${shownPath(request.url)}`));
      case "INVALID_COOKIE_SIGNATURE":
        return errorResponse(badRequest("Invalid cookie"));
    }
    if (isDatabaseUnavailable(error)) {
      log.warn("database unavailable", { path: shownPath(request.url), error: String(error) });
      const unanswered = error instanceof DatabaseUnanswered ? " (it stopped answering: a change sent may still apply when it resumes; read it back before sending it again)" : "";
      return errorResponse(new GatewayError(503, "service_unavailable", `The database is unavailable${unanswered}; retry shortly`));
    }
    // Text Postgres cannot store (a NUL, as in a query parameter): the request's fault, not the gateway's.
    const dbCode = (error as { code?: unknown } | null)?.code;
    if (dbCode === "22021" || dbCode === "22P05") {
      return errorResponse(badRequest("The request holds text the database cannot take: the NUL character (\\u0000) or an invalid byte sequence"));
    }
    log.error("unhandled error", { path: shownPath(request.url), error: error instanceof Error ? error.stack : String(error) });
    return errorResponse(unexpected());
  });
}
