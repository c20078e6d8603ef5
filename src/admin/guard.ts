import { Elysia } from "elysia";
import type { Auth, Caller } from "../auth";
import { authError, badRequest } from "../http/errors";
import { readBodyText } from "../proxy/body";
import type { Runtime } from "../proxy/runtime";
import { MAX_DEPTH, UNSTORABLE_MESSAGE, nestingDepth, parseJsonBody, unstorablePath } from "../http/lenient-json";

/** Fields that hold a mapping: the framework would turn text or a list there into one (`"ab"` → {0: "a", 1: "b"}). */
const MAPPINGS = ["metadata", "model_max_budget", "model_rpm_limit", "model_tpm_limit", "aliases", "config", "permissions"];

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
  for (const field of MAPPINGS) {
    const value = (parsed.value as Record<string, unknown>)[field];
    if (value !== undefined && value !== null && (typeof value !== "object" || Array.isArray(value))) {
      throw badRequest(`${field}: must be an object (got ${JSON.stringify(value)?.slice(0, 100)})`, field);
    }
  }
  const bad = unstorablePath(text, parsed.value);
  if (bad !== null) throw badRequest(`${bad || "Request body"}: ${UNSTORABLE_MESSAGE}`, bad || null);
  return parsed.value;
}

type Limits = { runtime: () => Pick<Runtime, "maxBodyBytes" | "config"> };

const admitted = new WeakMap<Request, Caller>();

/** The master key or a proxy_admin user's key; anyone else gets 401. */
async function admitAdmin(auth: Auth, request: Request): Promise<Caller> {
  const known = admitted.get(request);
  if (known) return known;
  const caller = await auth.authenticate(request.headers);
  if (caller.kind === "key" && !caller.admin) {
    throw authError(`Authentication Error, only admins may call ${new URL(request.url).pathname}. This key's user role is ${caller.principal.user?.user_role ?? "none"}.`);
  }
  admitted.set(request, caller);
  return caller;
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
