import { type Caller, KeyRefused } from "../auth";
import type { SpendTargets } from "../governance/policy";
import { GatewayError, unexpected } from "../http/errors";
import type { Route, Usage } from "../providers/types";
import type { SpendWriter } from "../spend";

/** What admission learned of a request before it was refused: its log row names as much. */
export interface Known {
  caller?: Caller;
  /** The model group it asked for (an alias resolved). */
  model?: string;
  /** The customer it names (`user`). */
  customer?: string | null;
  /** Who its spend would have gone to, once planned. */
  targets?: SpendTargets;
}

/**
 * The usage of a request that used nothing: one refused before any provider, or one the provider failed
 * (sent, so it counts against rpm limits as LiteLLM counts it, and has its row, status "failure").
 */
export const NOTHING_USED: Usage = Object.freeze({ prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 });
/** The longest model name and message a refused request's row keeps: a body can make them as long as itself. */
const MAX_TEXT = 1000;
const clip = (text: string) => (text.length > MAX_TEXT ? text.slice(0, MAX_TEXT) : text);

/**
 * The spend log row of a request refused before any provider, status `failure` and nothing used, its
 * error in `metadata.error_information` as LiteLLM logs a failed request's (`error_code` the HTTP
 * status, `error_class` the envelope's type, `error_message`). Only a known key's (or the master
 * key's): a request with no key or an unknown one gets none, so random tokens cannot fill the table.
 */
export function logRefusal(spend: SpendWriter, known: Known, error: unknown, row: { requestId: string; route: Route; start: number; end: number }): void {
  const caller = known.caller ?? (error instanceof KeyRefused ? error.caller : undefined);
  if (!caller) return;
  const refusal = error instanceof GatewayError ? error : unexpected();
  spend.refused({
    ...row, targets: known.targets ?? targetsOf(caller, known.customer ?? null), model: clip(known.model ?? ""), deployment: null,
    usage: NOTHING_USED, cost: 0, status: "failure", metadata: errorInformation(refusal),
  });
}

/** A failed request's row metadata, as LiteLLM logs it: the error answered, its message cut to MAX_TEXT. */
export const errorInformation = (error: Pick<GatewayError, "status" | "type" | "message">) =>
  ({ error_information: { error_code: String(error.status), error_class: error.type, error_message: clip(error.message) } });

/** The row's key, user, team and customer before a plan named them (they fill no spend: the row holds no delta). */
function targetsOf(caller: Caller, customer: string | null): SpendTargets {
  const key = caller.kind === "key" ? caller.principal.key : null;
  return {
    token: key?.token ?? null, keyPeriod: null, user: null, team: key?.team_id ? { id: key.team_id, period: null } : null, member: null,
    customer: customer ? { id: customer, period: null } : null, keyModel: null, gatewayPeriod: null, keyUser: key?.user_id ?? null,
  };
}
