import type { GeneralSettings } from "../config";
import { badRequest } from "../http/errors";
import { type InferenceBody, checkCustomerId } from "./body";

/** Headers LiteLLM always reads the customer from, before any the config names. */
const STANDARD_CUSTOMER_HEADERS = ["x-litellm-customer-id", "x-litellm-end-user-id"];
const customerHeadersOf = new WeakMap<object, string[]>();

/**
 * The headers that may name the customer, in the order they are read: the standard ones, then those
 * `user_header_mappings` gives the role `customer`, or else the one `user_header_name` names.
 */
function customerHeaders(g: GeneralSettings): string[] {
  let names = customerHeadersOf.get(g);
  if (names) return names;
  const mappings = g.user_header_mappings === undefined ? [] : [g.user_header_mappings].flat();
  const mapped = mappings.filter((m) => m.litellm_user_role.toLowerCase() === "customer").map((m) => m.header_name.toLowerCase());
  names = [...STANDARD_CUSTOMER_HEADERS, ...(mapped.length > 0 ? mapped : g.user_header_name ? [g.user_header_name.toLowerCase()] : [])];
  customerHeadersOf.set(g, names);
  return names;
}

/**
 * The customer a request names, where LiteLLM reads it, first found: the headers (`customerHeaders`),
 * the `user` field, `litellm_metadata.user`, `metadata.user_id`. Each is checked as `user` is (else a
 * 400), so none is a way around a customer's budget. With `enforce_user_param`, a request naming none is refused.
 */
export function customerOf(request: Request, parsed: InferenceBody, g: GeneralSettings): string | null {
  for (const name of customerHeaders(g)) {
    const id = request.headers.get(name);
    if (id === null || id.trim() === "") continue;
    checkCustomerId(id, `header ${name}`);
    return id;
  }
  const id = parsed.user ?? customerInBody(parsed.body);
  if (!id && g.enforce_user_param) {
    throw badRequest(`A customer is required: send 'user' or a header naming it (${customerHeaders(g).join(", ")}) (general_settings.enforce_user_param is true)`, "user");
  }
  return id;
}

/**
 * The customer a body names where Anthropic-style clients put it, read when `user` names none (as
 * LiteLLM reads them, in this order): `litellm_metadata.user`, then `metadata.user_id`. Either
 * object may come as JSON text (a form field, `extra_body`): it is read then too, or a client could
 * leave its customer's budget by sending it so.
 */
function customerInBody(body: Record<string, unknown>): string | null {
  return idIn(body, "litellm_metadata", "user") ?? idIn(body, "metadata", "user_id");
}

function idIn(body: Record<string, unknown>, field: string, member: string): string | null {
  let holder = body[field];
  if (typeof holder === "string") {
    try {
      holder = JSON.parse(holder);
    } catch {
      return null;
    }
  }
  if (typeof holder !== "object" || holder === null || Array.isArray(holder)) return null;
  const id = (holder as Record<string, unknown>)[member];
  if (id === undefined || id === null || id === "") return null;
  if (typeof id !== "string") throw badRequest(`${field}.${member}: must be a string`, "user");
  checkCustomerId(id, `${field}.${member}`);
  return id;
}
