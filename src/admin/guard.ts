import { Elysia } from "elysia";
import type { Auth, Caller } from "../auth";
import { authError, badRequest } from "../http/errors";
import { UNSTORABLE_MESSAGE, parseJsonBody, unstorablePath } from "../http/lenient-json";

/** Admin bodies as the LiteLLM documents write them (trailing commas, `#` comments) are accepted. */
export function adminBase(name: string) {
  return new Elysia({ name }).onParse(async ({ request }) => {
    const text = await request.text();
    if (text.trim() === "") return {};
    const parsed = parseJsonBody(text);
    if (!parsed.ok) throw badRequest(parsed.message);
    if (!parsed.value || typeof parsed.value !== "object" || Array.isArray(parsed.value)) throw badRequest("Request body must be a JSON object");
    const bad = unstorablePath(text, parsed.value);
    if (bad !== null) throw badRequest(`${bad || "Request body"}: ${UNSTORABLE_MESSAGE}`, bad || null);
    return parsed.value;
  });
}

/** Admin routes: the master key or a proxy_admin user's key; anyone else gets 401. */
export function adminOnly(auth: Auth) {
  return new Elysia({ name: "admin-guard" })
    .resolve({ as: "scoped" }, async ({ request }) => {
      const caller = await auth.authenticate(request.headers);
      if (caller.kind === "key" && !caller.admin) {
        throw authError(`Authentication Error, only admins may call ${new URL(request.url).pathname}. This key's user role is ${caller.principal.user?.user_role ?? "none"}.`);
      }
      return { caller: caller as Caller };
    });
}
