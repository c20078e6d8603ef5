import type { Auth } from "../auth";
import { mayUse } from "../governance";
import { notFound } from "../http/errors";
import type { Pricing } from "../pricing";
import type { Deployment } from "../providers/types";
import type { Runtime } from "./runtime";

/** `litellm_params` a client never sees: provider keys and other credentials (prices stay). */
const secret = (name: string) => /key|secret|password|credential/i.test(name) || (/token$/i.test(name) && !/per_token$/i.test(name));

/** One deployment as LiteLLM's /model/info shows it: its params without secrets, and its model_info with prices. */
function infoOf(d: Deployment, pricing: Pricing) {
  const params = Object.fromEntries(Object.entries(d.params).filter(([name]) => !secret(name)));
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
 * GET /model/info (and /v1/model/info): the deployments of every model the calling key may use, as
 * LiteLLM answers it; `?litellm_model_id=` picks one deployment by its id.
 */
export function modelInfo(auth: Auth, runtime: () => Runtime) {
  return async ({ request }: { request: Request }) => {
    const caller = await auth.authenticate(request.headers);
    const { router, pricing } = runtime();
    const id = new URL(request.url).searchParams.get("litellm_model_id");
    const data = router
      .names()
      .filter((name) => mayUse(caller, name, router.groups))
      .flatMap((name) => router.deploymentsOf(name))
      .filter((d) => id === null || d.id === id)
      .map((d) => infoOf(d, pricing));
    if (id !== null && data.length === 0) throw notFound(`No deployment with id '${id}' that this key may use`);
    return Response.json({ data });
  };
}
