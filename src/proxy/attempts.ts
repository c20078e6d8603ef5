import type { Deployment, UpstreamCall, UpstreamResult } from "../providers/types";
import type { ClientRouting } from "./body";
import type { Runtime } from "./runtime";
import type { Release, Taken } from "./slots";

export interface Attempted {
  result: UpstreamResult;
  /** The deployment that produced the result (the one that answered, or the last one tried). */
  deployment: Deployment;
  /** The model name that answered: the requested one or a fallback. */
  model: string;
  /** A stream's slot at its deployment (`max_parallel_requests`), to give back when the stream ends. */
  release?: Release;
  /** Calls before the last one at its model, and fallback models called, its own included (LiteLLM's attempted retries and fallbacks). */
  retries: number;
  fallbacks: number;
}

/** LiteLLM's headers naming the deployment that answered and what was tried before it. */
export function routingHeaders(headers: Record<string, string>, attempted: Attempted): void {
  headers["x-litellm-model-id"] = attempted.deployment.id;
  if (attempted.deployment.apiBase !== undefined) headers["x-litellm-model-api-base"] = attempted.deployment.apiBase;
  headers["x-litellm-attempted-retries"] = String(attempted.retries);
  headers["x-litellm-attempted-fallbacks"] = String(attempted.fallbacks);
}

/**
 * Errors worth another deployment: the provider was unreachable, refused the deployment's own key
 * (401: another deployment may hold a good one, as LiteLLM's router retries it), rate limited us, or failed.
 */
function retryable(result: UpstreamResult): boolean {
  return result.kind === "error" && (result.connectionError === true || result.status === 401 || result.status === 429 || result.status >= 500);
}

/** A provider's answer that the prompt is longer than the model takes, in the words providers use (as LiteLLM recognizes it). */
const CONTEXT_WINDOW = /context.length|context window|maximum context|prompt is too long|too many tokens/i;
const contextWindowExceeded = (result: UpstreamResult) => result.kind === "error" && result.status === 400 && CONTEXT_WINDOW.test(result.message);

/** A refused key is refused again: only another deployment is worth a retry. */
const refusedKey = (result: UpstreamResult) => result.kind === "error" && result.status === 401;

/** The request as every provider call of it goes (see `UpstreamCall`), and how to move it elsewhere. */
export interface AttemptInput extends Pick<UpstreamCall, "route" | "body" | "rawBody" | "stream" | "signal" | "onRead" | "betas"> {
  model: string;
  first: Deployment;
  /** The request's own router parameters (`fallbacks`, `num_retries`), in place of config.yaml's. */
  routing?: ClientRouting | null;
  /** Whether the caller may use a model: fallbacks it may not use are skipped, as if not configured. */
  mayUse: (model: string) => boolean;
  /**
   * Before another model (a fallback) or another deployment is tried: whether the request's budgets
   * and limits allow it there (that model's own, and a higher price). Refused ones are skipped.
   */
  moveTo: (model: string, deployment: Deployment) => Promise<boolean>;
}

/**
 * A request that waited for a slot at a deployment with `max_parallel_requests` and never got one: it
 * reached no provider, so it costs nothing.
 */
function noSlotInTime(deployment: Deployment, signal: AbortSignal): UpstreamResult {
  if ((signal.reason as { name?: string } | undefined)?.name === "TimeoutError") {
    return {
      kind: "error", status: 504, type: "timeout",
      message: `No slot came free in time at deployment ${deployment.id} of ${deployment.modelName} (max_parallel_requests: every one was in use until the request's timeout)`,
    };
  }
  return { kind: "error", status: 499, type: "cancelled", message: "Request cancelled by the client" };
}

/**
 * A slot at a deployment that has one free as far as this instance knows: at once, or, when the other
 * instances sharing Redis hold the rest, once one comes back (null if `signal` aborts first).
 */
async function slotAt(router: Runtime["router"], deployment: Deployment, signal: AbortSignal) {
  const now = router.take(deployment, signal);
  return now instanceof Promise ? slotWaited(now, deployment) : { deployment, release: now };
}

async function slotWaited(waiting: Promise<Taken | null>, deployment: Deployment) {
  const waited = await waiting;
  return waited && { deployment, release: waited.release };
}

/**
 * A slot for a request whose deployment has none free (it was chosen before the requests admitted with
 * it took theirs, or all were in use): at another of the model's deployments with a free one now (by
 * weight, as `pick` chooses), else the first to come free at any of those the request may go to, in its
 * turn among those waiting; null if its signal aborts first.
 */
async function slotAtAny(runtime: Runtime, input: AttemptInput, model: string, chosen: Deployment, tried: ReadonlySet<string>) {
  const { router } = runtime;
  const free = runtime.pick(model, input.route, tried);
  if (free && router.hasSlot(free) && (await input.moveTo(model, free)) && router.hasSlot(free)) return slotAt(router, free, input.signal);
  const others: Deployment[] = [];
  for (const other of runtime.alternatives(model, input.route, tried)) {
    if (await input.moveTo(model, other)) others.push(other);
  }
  const taken = router.take(chosen, input.signal, others);
  if (!(taken instanceof Promise)) return { deployment: chosen, release: taken };
  const slot = await taken;
  return slot && { deployment: slot.id === chosen.id ? chosen : others.find((d) => d.id === slot.id)!, release: slot.release };
}

/**
 * Calls the chosen deployment; on a retryable error retries the model (see `retriesOf`): at a
 * deployment not tried yet and not cooling down while there is one, else, with `num_retries` set and
 * the error not a refused key, again at one tried that is not cooling down (a model with one deployment
 * is retried there, as LiteLLM's router retries within the model group); then each fallback model the caller may use, in turn. Streams are only retried before
 * the client has anything of them: a provider's failure shows up as an error result until its first
 * event has come (an error as that first event included, see `startOf` in providers/http.ts).
 */
export async function callWithRetries(runtime: Runtime, input: AttemptInput): Promise<Attempted> {
  const { router } = runtime;
  const pick = (model: string, tried?: ReadonlySet<string>) => runtime.pick(model, input.route, tried);
  const { routing } = input;
  const fallbacks = routing?.fallbacks?.map((name) => runtime.aliasOf(name) ?? name).filter((name) => name !== input.model) ?? runtime.fallbacksOf(input.model);
  const models = [input.model, ...fallbacks.filter(input.mayUse)];
  let widened = false;
  let last: Attempted | null = null;
  let seconds = 0;
  let fallbacksCalled = 0;
  // A model whose every deployment is cooling down waits for the models after it (its fallbacks), as
  // LiteLLM's router skips it; it is called anyway only when none of them could be.
  const cooling: string[] = [];
  for (let at = 0, model = models[0]; model !== undefined; model = models[++at] ?? (last ? undefined : cooling.shift())) {
    const tried = new Set<string>();
    let calls = 0;
    const retries = routing?.retries === undefined ? runtime.retriesOf(model) : { times: routing.retries, again: true };
    let deployment: Deployment | null = model === input.model ? input.first : pick(model);
    if (deployment && at < models.length - 1 && router.cooledDown(deployment)) {
      cooling.push(model);
      continue;
    }
    for (let attempt = 0; deployment && attempt <= retries.times; attempt++) {
      tried.add(deployment.id);
      // Anywhere but where the request was admitted, it is governed there first.
      if ((last || deployment !== input.first) && !(await input.moveTo(model, deployment))) {
        // Refused there: its budgets would refuse it again, so only a deployment not tried yet is left.
        deployment = pick(model, tried);
        continue;
      }
      const body = model === input.model ? input.body : { ...input.body, model };
      const rawBody = model === input.model ? input.rawBody : JSON.stringify(body);
      let slot: Release;
      const now = router.hasSlot(deployment) ? router.take(deployment, input.signal) : null;
      if (typeof now === "function") slot = now;
      else {
        // None free here, or (with Redis) the other instances hold the rest: in turn, here or elsewhere.
        const taken = now ? await slotWaited(now, deployment) : await slotAtAny(runtime, input, model, deployment, tried);
        if (!taken) return { result: noSlotInTime(deployment, input.signal), deployment, model, retries: calls, fallbacks: fallbacksCalled };
        ({ deployment, release: slot } = taken);
        tried.add(deployment.id);
      }
      const started = performance.now();
      let result: UpstreamResult;
      router.sent(deployment);
      if (calls++ === 0 && model !== input.model) fallbacksCalled++;
      try {
        result = await runtime.providerFor(deployment).send({
          route: input.route, deployment, body, rawBody, stream: input.stream, signal: input.signal, onRead: input.onRead, betas: input.betas,
        });
      } catch (error) {
        slot();
        runtime.calls.failed(deployment, input.signal.aborted ? 499 : 502);
        runtime.calls.answered(deployment, (performance.now() - started) / 1000);
        throw error;
      }
      seconds = (performance.now() - started) / 1000;
      // A stream holds its slot until it ends; any other answer is over.
      const tries = { retries: calls - 1, fallbacks: fallbacksCalled };
      if (result.kind === "stream") last = { result, deployment, model, release: slot, ...tries };
      else {
        slot();
        last = { result, deployment, model, ...tries };
      }
      // Counted per call, by the deployment that failed: one whose failures are always retried away still shows.
      if (result.kind === "error") runtime.calls.failed(deployment, result.status);
      if (!retryable(result) || input.signal.aborted) {
        // A prompt too long for the model goes, once, to its context window fallbacks in place of the models left.
        const wider = !widened && !input.signal.aborted && contextWindowExceeded(result) ? runtime.contextWindowFallbacksOf(model).filter(input.mayUse) : [];
        if (wider.length === 0) {
          runtime.calls.answered(deployment, seconds);
          return last;
        }
        widened = true;
        models.splice(at + 1, Infinity, ...wider);
        break;
      }
      router.failed(deployment, result.kind === "error" ? result.retryAfter : undefined);
      deployment = pick(model, tried) ?? (retries.again && !refusedKey(result) ? runtime.pickAgain(model, input.route) : null);
    }
  }
  runtime.calls.answered(last!.deployment, seconds);
  return last!;
}
