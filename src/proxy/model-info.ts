import type { Auth } from "../auth";
import type { Caller } from "../auth/principal";
import { mayUse, namedModels } from "../governance";
import { notFound } from "../http/errors";
import type { Pricing } from "../pricing";
import type { Deployment } from "../providers/types";
import type { ModelRouter } from "./router";
import type { Runtime } from "./runtime";

/**
 * The `litellm_params` a client may see, by name: anything else (provider keys, `extra_headers`,
 * `api_base_auth`, whatever else an operator wrote) may hold a credential and is left out.
 */
const SHOWN = new Set(["model", "api_version", "organization", "region_name", "rpm", "tpm", "weight", "timeout", "stream_timeout",
  "max_retries", "max_parallel_requests", "mock_response", "mock_delay_ms", "custom_llm_provider", "base_model"]);
const shown = (name: string) => SHOWN.has(name) || /_cost_per_|_token_cost$/.test(name);

/** One deployment as LiteLLM's /model/info shows it: its params without secrets, and its model_info with prices. */
function infoOf(d: Deployment, pricing: Pricing) {
  const params: Record<string, unknown> = Object.fromEntries(Object.entries(d.params).filter(([name, value]) => shown(name) && typeof value !== "object"));
  if (d.apiBase !== undefined) params.api_base = d.apiBase;
  const price = pricing.priceOf(d);
  return {
    model_name: d.modelName,
    litellm_params: params,
    model_info: {
      id: d.id,
      db_model: false,
      key: d.upstreamModel,
      litellm_provider: d.provider,
      input_cost_per_token: price?.input ?? null,
      output_cost_per_token: price?.output ?? null,
      ...d.modelInfo,
    },
  };
}

/**
 * The models a caller may use: the config's names, and the names its key (or team or user) lists
 * that a wildcard entry (`openai/*`) serves. An access group or `all-proxy-models` in a list is no
 * model; a wildcard's own name is a pattern no request may ask for: listed only `withPatterns`
 * (/model/info shows the entry, /v1/models the models).
 */
export function modelsFor(caller: Caller, router: ModelRouter, withPatterns = false): string[] {
  const names = new Set(router.names().filter((name) => withPatterns || !name.includes("*")));
  for (const name of namedModels(caller)) if (router.has(name) && !router.isGroup(name)) names.add(name);
  return [...names].filter((name) => mayUse(caller, name, router.groups));
}

/** Aliases (`router_settings.model_group_alias`, not hidden) a caller may use: by their own name or the group's. */
export function aliasesFor(caller: Caller, runtime: Runtime): string[] {
  const { router } = runtime;
  return runtime.listedAliases
    .filter(([alias, model]) => router.has(model) && mayUse(caller, model, router.groups, alias))
    .map(([alias]) => alias);
}

/**
 * GET /model/info (and /v1/model/info): the deployments of every model the calling key may use, as
 * LiteLLM answers it; `?litellm_model_id=` picks one deployment by its id.
 */
export function modelInfo(auth: Auth, runtime: () => Runtime) {
  return async ({ request }: { request: Request }) => {
    const caller = await auth.authenticate(request.headers);
    const { router, pricing } = runtime();
    const id = new URL(request.url).searchParams.get("litellm_model_id");
    const data = modelsFor(caller, router, true)
      .flatMap((name) => router.deploymentsOf(name))
      .filter((d) => id === null || d.id === id)
      .map((d) => infoOf(d, pricing));
    if (id !== null && data.length === 0) throw notFound(`No deployment with id '${id}' that this key may use`);
    return Response.json({ data });
  };
}
