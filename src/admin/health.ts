import { t } from "elysia";
import { notFound } from "../http/errors";
import type { Deployment, Route } from "../providers/types";
import type { Runtime } from "../proxy/runtime";
import type { AdminDeps } from "./deps";
import { adminOnlyRoutes, onlyParams } from "./guard";

/**
 * How long one deployment's check may take, unless its `model_info.health_check_timeout` says otherwise
 * (its own `timeout`, and the gateway's request_timeout, if shorter, apply too).
 */
const CHECK_TIMEOUT_MS = 30_000;

/** The smallest request a deployment of each kind answers: one token, or one embedding. */
function probeOf(deployment: Deployment): { route: Route; body: Record<string, unknown> } {
  const model = deployment.modelName;
  const mode = deployment.modelInfo.mode;
  if (mode === "embedding") return { route: "embeddings", body: { model, input: "ping" } };
  if (mode === "completion") return { route: "completions", body: { model, prompt: "ping", max_tokens: 1 } };
  return { route: "chat", body: { model, messages: [{ role: "user", content: "ping" }], max_tokens: 1 } };
}

/** What an endpoint is called in the answer, as LiteLLM shows it: its `model` and `api_base`, never a key. */
function endpointOf(deployment: Deployment): Record<string, unknown> {
  const endpoint: Record<string, unknown> = {
    model: deployment.params.model ?? `${deployment.provider}/${deployment.upstreamModel}`, model_name: deployment.modelName, id: deployment.id, model_id: deployment.id,
  };
  // As /model/info shows it: a password or a token in it stays out of the answer.
  const base = deployment.apiBase;
  if (base !== undefined) endpoint.api_base = base;
  return endpoint;
}

const NO_HEALTH_CHECK_MODEL = "a wildcard entry names no model to call: set model_info.health_check_model (e.g. openai/gpt-4o-mini)";

/**
 * The deployment a check calls: a wildcard entry's pattern (`*`) is no model a provider knows, so it is
 * called with its `model_info.health_check_model` (its provider prefix dropped), as LiteLLM does; null
 * for a wildcard entry without one.
 */
function checkedAs(deployment: Deployment): Deployment | null {
  if (!deployment.upstreamModel.includes("*")) return deployment;
  const model = deployment.modelInfo.health_check_model;
  if (typeof model !== "string") return null;
  const prefix = `${deployment.provider}/`;
  return { ...deployment, upstreamModel: model.startsWith(prefix) ? model.slice(prefix.length) : model };
}

/**
 * One deployment's check, through its accounting as traffic goes (LiteLLM's checks go around its router):
 * it waits its turn for one of the deployment's `max_parallel_requests` slots, as a request would, for a
 * deployment sized for that many calls at once is not to get one more from a check; and its request and
 * tokens count towards the deployment's `rpm` and `tpm`, as the provider counts them, so traffic routed
 * after it sees that room gone. The error text, or null when the deployment answered.
 */
async function check(runtime: Runtime, entry: Deployment, deployment: Deployment, signal: AbortSignal): Promise<string | null> {
  const { router } = runtime;
  const taken = router.take(entry, signal);
  const release = taken instanceof Promise ? (await taken)?.release : taken;
  if (!release) return `no free slot in time: all ${router.capById(entry.id)} of its max_parallel_requests stayed in use`;
  try {
    const { route, body } = probeOf(deployment);
    router.sent(entry);
    const result = await runtime.providerFor(deployment).send({ route, deployment, body, rawBody: JSON.stringify(body), stream: false, signal });
    if (result.kind === "error") return `${result.status}: ${result.message}`;
    if (result.kind === "json" && result.usage) router.used(entry, result.usage.total_tokens);
    return null;
  } finally {
    release();
  }
}

/**
 * `GET /health` (admin): sends each deployment the smallest request of its kind, all at once (each in
 * its turn for its deployment's slots, see `check`), and lists the endpoints that answered and the ones
 * that did not, with the provider's error. Like LiteLLM's, it calls the providers: each check costs a
 * token or an embedding, not charged to any key.
 */
export function healthCheckRoutes(deps: AdminDeps) {
  return adminOnlyRoutes("admin-health", deps).get("/health", async ({ query, request }) => {
    onlyParams(request, ["model", "model_id"]);
    const runtime = deps.runtime();
    // `?model_id=` (a deployment's id, as /model/info shows it) wins over `?model=`, as in LiteLLM.
    const names = query.model && !query.model_id ? [query.model] : runtime.router.names();
    let deployments = names.flatMap((name) => runtime.router.deploymentsOf(name));
    if (query.model_id) deployments = deployments.filter((d) => d.id === query.model_id);
    if (query.model_id && deployments.length === 0) throw notFound(`No deployment with the id ${query.model_id} in the config`);
    if (query.model && deployments.length === 0) throw notFound(`No model named ${query.model} in the config`);
    const results = await Promise.all(deployments.map(async (entry) => {
      const deployment = checkedAs(entry);
      if (!deployment) return { ...endpointOf(entry), error: NO_HEALTH_CHECK_MODEL };
      const own = entry.modelInfo.health_check_timeout;
      const signal = AbortSignal.timeout(Math.min(typeof own === "number" ? own * 1000 : CHECK_TIMEOUT_MS, runtime.requestTimeoutMs));
      try {
        const error = await check(runtime, entry, deployment, signal);
        return error === null ? endpointOf(deployment) : { ...endpointOf(deployment), error };
      } catch (error) {
        return { ...endpointOf(deployment), error: error instanceof Error ? error.message : String(error) };
      }
    }));
    const healthy = results.filter((r) => !("error" in r));
    const unhealthy = results.filter((r) => "error" in r);
    return { healthy_endpoints: healthy, unhealthy_endpoints: unhealthy, healthy_count: healthy.length, unhealthy_count: unhealthy.length };
  }, {
    query: t.Object({ model: t.Optional(t.String({ minLength: 1 })), model_id: t.Optional(t.String({ minLength: 1 })) }),
    detail: { tags: ["health"], summary: "Call every deployment (or those of ?model=) with a one-token request; healthy and unhealthy endpoints" },
  });
}
