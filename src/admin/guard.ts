import type { TSchema } from "@sinclair/typebox";
import { TypeCompiler } from "@sinclair/typebox/compiler";
import { Elysia, ValidationError } from "elysia";
import type { Auth, Caller } from "../auth";
import { isProxyAdminViewer } from "../auth/principal";
import { authError, badRequest, shownPath } from "../http/errors";
import { readBodyText } from "../proxy/body";
import type { Runtime } from "../proxy/runtime";
import { MAX_DEPTH, UNSTORABLE_MESSAGE, nestingDepth, parseJsonBody, unstorablePath } from "../http/lenient-json";

/**
 * The shapes of nested admin fields, checked on the body as sent. The framework reshapes a value of the
 * wrong shape into the one its schema wants before checking it: text or a list into a mapping (`"ab"` →
 * {0: "a", 1: "b"}), text into a list (`"qr"` → ["q", "r"], `""` → []), a model's budget of `1` into one
 * with no budget at all. Each would be taken as something never sent.
 */
type Shape = (value: unknown, path: string) => void;
const wrongShape = (path: string, what: string, value: unknown) =>
  badRequest(`${path}: must be ${what} (got ${JSON.stringify(value)?.slice(0, 100)})`, path);
const isObject = (value: unknown): value is Record<string, unknown> => typeof value === "object" && value !== null && !Array.isArray(value);
const object: Shape = (value, path) => {
  if (!isObject(value)) throw wrongShape(path, "an object", value);
};
const list: Shape = (value, path) => {
  if (!Array.isArray(value)) throw wrongShape(path, "an array", value);
};
/** A mapping whose every entry has the shape `each`, named `field.entry` in errors. */
const entries = (each: Shape): Shape => (value, path) => {
  object(value, path);
  for (const [name, entry] of Object.entries(value as object)) each(entry, `${path}.${name}`);
};
/** A list whose every item has the shape `each`, named `field[0]` in errors. */
const items = (each: Shape): Shape => (value, path) => {
  list(value, path);
  (value as unknown[]).forEach((item, i) => each(item, `${path}[${i}]`));
};

/**
 * Metadata is free-form, but the per-model limits LiteLLM reads from it (`model_rpm_limit`,
 * `model_tpm_limit`) are mappings of models: a number or list there would be reshaped into one holding no limit.
 */
const metadata: Shape = (value, path) => {
  object(value, path);
  for (const name of ["model_rpm_limit", "model_tpm_limit"]) {
    const limits = (value as Record<string, unknown>)[name];
    if (limits !== undefined && limits !== null) object(limits, `${path}.${name}`);
  }
};

/** Fields that may be left out or null; when sent, they have these shapes. */
const SHAPES: Record<string, Shape> = {
  metadata, model_rpm_limit: object, model_tpm_limit: object, aliases: object, config: object, permissions: object,
  tag_rpm_limit: object, budget_fallbacks: object,
  // Each model's budget is an object, `{}` included (LiteLLM takes one without a budget or limit set).
  model_max_budget: entries(object),
  teams: list, members_with_roles: items(object),
  // One member or a list of them, as LiteLLM takes it.
  member: (value, path) => {
    if (Array.isArray(value)) items(object)(value, path);
    else if (!isObject(value)) throw wrongShape(path, "an object or an array of objects", value);
  },
};

/**
 * Free-form JSON the admin API stores as sent: metadata, and what a model's budget carries beside its
 * budget and limits. A number past what a double holds (`1e400`) parses as Infinity, which JSON cannot
 * hold: it would be stored as null, unlike the number sent.
 */
const FREE_FORM = ["metadata", "model_max_budget"];

/** The path of the first number in `value` that is not finite (`metadata.x[1]`), or null. */
function nonFinitePath(value: unknown, path: string): string | null {
  if (typeof value === "number") return Number.isFinite(value) ? null : path;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const found = nonFinitePath(value[i], `${path}[${i}]`);
      if (found !== null) return found;
    }
  } else if (isObject(value)) {
    for (const [key, item] of Object.entries(value)) {
      const found = nonFinitePath(item, `${path}.${key}`);
      if (found !== null) return found;
    }
  }
  return null;
}

/**
 * A route's body checked as sent, before the framework's own check (use as the route's `transform`):
 * where a value fits no variant of a union, the framework reshapes it into the first variant and checks
 * that (a list of members, one of them wrong, becomes one member holding the list, and passes).
 */
export function checkedAsSent(schema: TSchema) {
  const check = TypeCompiler.Compile(schema);
  return ({ body }: { body: unknown }) => {
    if (!check.Check(body)) throw new ValidationError("body", check, body);
  };
}

/** Admin bodies as the LiteLLM documents write them (trailing commas, `#` comments) are accepted. */
async function parseAdminBody(request: Request, limits: Limits): Promise<unknown> {
  const { maxBodyBytes, config } = limits.runtime();
  // The same size limit as inference requests (`max_request_size_mb`), and text that is valid UTF-8.
  const text = await readBodyText(request, maxBodyBytes, config.general_settings.max_request_size_mb);
  if (text.trim() === "") return {};
  // Nothing an admin stores is deeper; far deeper would exhaust a parser's or the database's stack.
  if (nestingDepth(text) > MAX_DEPTH) throw badRequest(`Request body nested too deeply (at most ${MAX_DEPTH} levels)`);
  const parsed = parseJsonBody(text);
  if (!parsed.ok) throw badRequest(parsed.message);
  if (!parsed.value || typeof parsed.value !== "object" || Array.isArray(parsed.value)) throw badRequest("Request body must be a JSON object");
  for (const [field, shape] of Object.entries(SHAPES)) {
    const value = (parsed.value as Record<string, unknown>)[field];
    if (value !== undefined && value !== null) shape(value, field);
  }
  for (const field of FREE_FORM) {
    const path = nonFinitePath((parsed.value as Record<string, unknown>)[field], field);
    if (path !== null) throw badRequest(`${path}: must be a number within ±1.8e308 (one beyond it cannot be stored)`, path);
  }
  const bad = unstorablePath(text, parsed.value);
  if (bad !== null) throw badRequest(`${bad || "Request body"}: ${UNSTORABLE_MESSAGE}`, bad || null);
  return parsed.value;
}

/**
 * A GET's query holds only the parameters the route takes: a filter litegate does not know would be
 * ignored and answer everything (all spend logs, every team), which a script acting on what it is
 * given must never get. An unknown one is a 400 naming it.
 */
export function onlyParams(request: Request, names: readonly string[]): void {
  const url = new URL(request.url);
  for (const name of url.searchParams.keys()) {
    if (names.includes(name)) continue;
    throw badRequest(`${name}: ${shownPath(request.url)} has no such parameter; ${names.length > 0 ? `it takes ${names.join(", ")}` : "it takes none"}`, name);
  }
}

type Limits = { runtime: () => Pick<Runtime, "maxBodyBytes" | "config"> };

const admitted = new WeakMap<Request, Caller>();

/** LiteLLM's admin routes that read with a POST body. */
const READ_POSTS = new Set(["/budget/info"]);
const isRead = (request: Request) => request.method === "GET" || (request.method === "POST" && READ_POSTS.has(new URL(request.url).pathname));

/** The master key or a proxy_admin user's key; anyone else gets 401. */
async function admitAdmin(auth: Auth, request: Request): Promise<Caller> {
  const known = admitted.get(request);
  if (known) return known;
  const caller = await auth.authenticate(request.headers);
  // A proxy_admin_viewer reads (every admin GET, and the reads LiteLLM serves as POSTs) and changes nothing, as in LiteLLM.
  if (caller.kind === "key" && !caller.admin && !(isRead(request) && isProxyAdminViewer(caller))) {
    throw authError(`Authentication Error, only admins may call ${shownPath(request.url)}. This key's user role is ${caller.principal.user?.user_role ?? "none"}.`);
  }
  admitted.set(request, caller);
  return caller;
}

/** The caller an admin route admitted: the master key, or a proxy_admin user's key. */
export function admittedCaller(request: Request): Caller | undefined {
  return admitted.get(request);
}

/**
 * Admin routes: the caller is checked before anything of the request is read, so a caller without
 * the right gets 401 whatever it sent (the body is parsed before the framework's transform step, and
 * a GET has no body: both steps check, the second finding the first's answer).
 */
export function adminOnlyRoutes(name: string, deps: Limits & { auth: Auth }) {
  return new Elysia({ name })
    .onParse(async ({ request }) => {
      await admitAdmin(deps.auth, request);
      return parseAdminBody(request, deps);
    })
    .onTransform(async ({ request }) => {
      await admitAdmin(deps.auth, request);
    });
}
