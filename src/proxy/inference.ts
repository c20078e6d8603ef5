import type { Auth } from "../auth";
import { type Caller, type CustomerRecord, chargedHere, keySpendHere } from "../auth/principal";
import type { Clock } from "../clock";
import { type Governance, type Plan, type Ticket, checkModelAccess, createPlanner, mayUse } from "../governance";
import { GatewayError, badRequest, forbidden } from "../http/errors";
import type { Logger } from "../log";
import type { Deployment, Route, Usage, UpstreamResult } from "../providers/types";
import type { SpendWriter } from "../spend";
import type { Regenerated } from "../spend/reset";
import { countTextTokens } from "../tokens";
import { type ClientRouting, clientWantsUsage, parseInferenceBody, promptTokensOf, readBodyText, streamedChoices } from "./body";
import { customerOf } from "./customer";
import { type Known, NOTHING_USED, errorInformation, logRefusal } from "./refusals";
import { type Sizing, reservationAt } from "./reservation";
import type { Runtime } from "./runtime";
import type { Release } from "./slots";
import { type Attempted, callWithRetries, routingHeaders } from "./attempts";
import { type Deadline, Deadlines } from "./deadlines";
import { inFlightChanges } from "./in-flight";
import { completionTextOf } from "./sse-events";
import { type StreamOutcome, failedByProvider, streamed, tapStream } from "./tap";

/** What one finished request looked like, for logs and metrics. */
export interface RequestRecord {
  requestId: string;
  route: Route;
  model: string;
  deployment: string | null;
  caller: Caller;
  customer: string | null;
  status: number;
  usage: Usage | null;
  cost: number;
  durationMs: number;
  streamEnd?: StreamOutcome["end"];
}

export interface InferenceDeps {
  clock: Clock;
  log: Logger;
  auth: Auth;
  governance: Governance;
  spend: SpendWriter;
  runtime: () => Runtime;
  /** Called once per finished request (success or failure after authentication). */
  observe?: (record: RequestRecord) => void;
  /** Called when a request is refused before reaching a provider. */
  reject?: (reason: string, requestId: string, status: number, message: string) => void;
}

interface Context {
  requestId: string;
  route: Route;
  /** When the request arrived (its duration counts from here). */
  start: number;
  /**
   * The instant its budget periods and rate windows were read at: its spend_logs `start_time`, so a
   * request counts in the period its logged start falls in, even when a period turns over while it
   * is authenticated.
   */
  admittedAt: number;
  runtime: Runtime;
  caller: Caller;
  customer: CustomerRecord | null;
  model: string;
  /** The name `model` was asked for by (an alias of it, or itself): per-model key limits keyed by it apply. */
  requested: string;
  deployment: Deployment;
  body: Record<string, unknown>;
  ticket: Ticket;
  /** What the request asks for, to price its reservation at another deployment (see `reservationAt`). */
  sizing: Sizing;
  /** The cost its ticket holds on budgets. */
  reserved: number;
  /** Its spend is recorded, or it ended without any: it no longer holds a shutdown up. */
  closed: boolean;
  /** A stream's slot at its deployment (`max_parallel_requests`), given back when the request closes. */
  slot?: Release;
  /** The body's own `fallbacks` and `num_retries` (see ClientRouting). */
  routing: ClientRouting | null;
  /** What answered, once something did: for LiteLLM's routing headers. */
  attempted?: Attempted;
}

/** The most one request is charged (USD), as much as any budget may be. */
const MAX_REQUEST_COST = 1e15;
/** A row's metadata when there is nothing to say: one object for every request. */
const NO_METADATA: Record<string, unknown> = Object.freeze({});

/**
 * A cost as charged: prices absurd enough to give more than MAX_REQUEST_COST, or no number at all,
 * charge that maximum (the spend stays storable, and the key is stopped rather than let through).
 */
const chargeable = (cost: number) => (cost >= 0 && cost <= MAX_REQUEST_COST ? cost : MAX_REQUEST_COST);

/** check → reserve → call → stream tap → settle: the one path every inference request takes. */
export function createInference(deps: InferenceDeps) {
  const { clock, auth, governance, spend } = deps;
  const deadlines = new Deadlines();
  /** Requests admitted whose spend is not recorded yet, and who waits for there to be none. */
  let open = 0;
  const whenNoneOpen: (() => void)[] = [];

  function closeOut(ctx: Context): void {
    if (ctx.closed) return;
    ctx.closed = true;
    ctx.slot?.();
    open--;
    if (open === 0 && whenNoneOpen.length > 0) for (const done of whenNoneOpen.splice(0)) done();
  }

  /** The usage of a request counted by litegate: its prompt, and the text of its answer. */
  function countedUsage(ctx: Context, completionText: string): Usage {
    const prompt = promptTokensOf(ctx.route, ctx.body, true);
    const completion = completionText ? countTextTokens(completionText) : 0;
    return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
  }

  /**
   * The usage of a stream cut short (or ended without a usage chunk): what the provider had reported of
   * it (its prompt as it bills it, images and cache included), with at least the tokens counted of the
   * prompt and of the text passed on.
   */
  function cutShort(ctx: Context, reported: Usage | null, text: string): Usage {
    const counted = countedUsage(ctx, text);
    if (!reported) return counted;
    // The prompt the provider reported is what it bills (an image as it scaled it); the count, which
    // guesses images and audio high, stands in only when it reported none.
    const prompt = reported.prompt_tokens > 0 ? reported.prompt_tokens : counted.prompt_tokens;
    const completion = Math.max(reported.completion_tokens, counted.completion_tokens);
    return { ...reported, prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
  }

  /**
   * A provider's usage that gives no output (completion_tokens missing, or 0 when it came before the
   * text, as some providers send it on a stream's first chunk) for an answer that has text: charged at
   * least the tokens of that text. Only then is the text counted: usage that covers it is taken as is.
   */
  function withOutput(ctx: Context, reported: Usage, text: () => string): Usage {
    if (reported.completion_tokens > 0 || ctx.route === "embeddings") return reported;
    const answer = text();
    if (!answer) return reported;
    const completion = countTextTokens(answer);
    return { ...reported, completion_tokens: completion, total_tokens: reported.total_tokens + completion };
  }

  /** Turns the reservation into the real cost and hands the spend to the writer. Returns the cost. */
  function settle(ctx: Context, usage: Usage, status: string, metadata: Record<string, unknown> = NO_METADATA): number {
    const cost = chargeable(ctx.runtime.pricing.cost(ctx.deployment, ctx.route, usage));
    ctx.runtime.router.used(ctx.deployment, usage.total_tokens);
    ctx.ticket.settle(cost, usage.total_tokens);
    if (ctx.caller.kind === "key") chargedHere(ctx.caller.principal, cost, ctx.ticket.plan.targets.keyPeriod);
    const end = clock.now();
    if (!ctx.ticket.awaitsPlan()) record(ctx, usage, cost, end, status, metadata);
    else {
      // An admin change's plan for it is being made (see `takeUp`): recorded where it says; the slot goes back now.
      ctx.slot?.();
      ctx.ticket.whenPlanned(() => record(ctx, usage, cost, end, status, metadata));
    }
    return cost;
  }

  function record(ctx: Context, usage: Usage, cost: number, end: number, status: string, metadata: Record<string, unknown>): void {
    spend.record({
      requestId: ctx.requestId, targets: ctx.ticket.plan.targets, model: ctx.model, deployment: ctx.deployment.id, route: ctx.route,
      usage, cost, start: ctx.admittedAt, end, status, metadata,
    });
    closeOut(ctx);
  }

  function observe(ctx: Context, status: number, usage: Usage | null, cost: number, streamEnd?: StreamOutcome["end"]) {
    deps.observe?.({
      requestId: ctx.requestId, route: ctx.route, model: ctx.model, deployment: ctx.deployment.id, caller: ctx.caller,
      customer: ctx.customer?.user_id ?? null, status, usage, cost, durationMs: clock.now() - ctx.start, streamEnd,
    });
  }

  /** The answer's headers (rate limits, spend, call id) in one fresh object, for the Response to take as is. */
  function spendHeaders(ctx: Context, contentType: string): Record<string, string> {
    const headers = ctx.ticket.headers();
    headers["content-type"] = contentType;
    headers["x-litellm-call-id"] = ctx.requestId;
    if (ctx.attempted) routingHeaders(headers, ctx.attempted);
    if (ctx.caller.kind === "key") {
      const keyCheck = ctx.ticket.plan.checks.find((c) => c.kind === "budget" && c.scope === "key");
      const key = ctx.caller.principal.key;
      headers["x-litellm-key-spend"] = String(keyCheck ? governance.counters.spent(keyCheck) : keySpendHere(ctx.caller.principal, ctx.ticket.plan.targets.keyPeriod));
      const max = keyCheck?.budget ?? key.max_budget;
      if (max !== null && max !== undefined) headers["x-litellm-key-max-budget"] = String(max);
    }
    return headers;
  }

  function upstreamError(result: Extract<UpstreamResult, { kind: "error" }>): GatewayError {
    const headers: Record<string, string> = {};
    if (result.retryAfter !== undefined) headers["retry-after"] = String(result.retryAfter);
    const status = result.status >= 400 && result.status <= 599 ? result.status : 502;
    const type = result.type ?? (status === 429 ? "rate_limit_error" : status >= 500 ? "upstream_error" : "invalid_request_error");
    return new GatewayError(status, type, result.message, result.param ?? null, headers);
  }

  const planFor = createPlanner();

  /** Admits the request, or throws its refusal; what it learns on the way goes into `known`, for the refusal's log row. */
  async function admit(route: Route, request: Request, requestId: string, start: number, known: Known): Promise<{ ctx: Context; rawBody: string; stream: boolean }> {
    const runtime = deps.runtime();
    if (spend.failing() && !runtime.config.general_settings.allow_requests_on_db_unavailable) {
      throw new GatewayError(503, "service_unavailable", "The database is unavailable and allow_requests_on_db_unavailable is false; retry shortly");
    }
    const caller = (known.caller = await auth.authenticate(request.headers));
    const rawBody = await readBodyText(request, runtime.maxBodyBytes, runtime.config.general_settings.max_request_size_mb);
    const parsed = parseInferenceBody(rawBody, route);
    // Access first (SPEC's order, as LiteLLM checks): a key limited to some models learns nothing of which others exist.
    // An alias (router_settings.model_group_alias) is served by the group it names: a key may use it by either name.
    const model = (known.model = runtime.aliasOf(parsed.model) ?? parsed.model);
    checkModelAccess(caller, model, runtime.router.groups, parsed.model);
    const deployment = runtime.pick(model, route);
    if (!deployment) {
      throw badRequest(
        runtime.unservedReason(model) ?? runtime.unpricedReason(model, route) ?? `Invalid model name passed in model=${parsed.model}. Call GET /v1/models for the models this key may use.`,
        "model",
      );
    }
    const user = (known.customer = customerOf(request, parsed, runtime.config.general_settings));
    const customer = user ? await auth.customer(user) : null;
    if (customer?.blocked) throw forbidden(`End user ${customer.user_id} is blocked`);
    const sizing: Sizing = { promptTokens: promptTokensOf(route, parsed.body, false), maxTokens: parsed.maxTokens, choices: parsed.choices };
    const reservation = reservationAt(runtime, route, deployment, parsed.body, sizing);
    const admittedAt = clock.now();
    const plan: Plan = planFor({
      caller, customer, model, requested: parsed.model, estimatedCost: reservation.cost, estimatedTokens: reservation.tokens, now: admittedAt, defaults: runtime.budgetDefaults(),
    });
    known.targets = plan.targets;
    const ticket = await governance.admit(plan);
    const ctx: Context = {
      requestId, route, start, admittedAt, runtime, caller, customer, model, requested: parsed.model, deployment, body: parsed.body, ticket, sizing, reserved: reservation.cost, closed: false, routing: parsed.routing,
    };
    return { ctx, rawBody: parsed.raw, stream: parsed.stream };
  }

  /**
   * Before a fallback model or another deployment is tried: the request is governed there as if it had
   * asked for it at its admission (that model's per-key budget and limits, its price held on every budget,
   * in the periods its log row's start falls in), so a fallback cannot spend past a budget or a model's
   * limits. False when they refuse it.
   */
  async function moveTo(ctx: Context, model: string, deployment: Deployment): Promise<boolean> {
    const next = reservationAt(ctx.runtime, ctx.route, deployment, ctx.body, ctx.sizing);
    if (model === ctx.model && next.cost <= ctx.reserved) return true;
    const requested = model === ctx.model ? ctx.requested : model;
    const plan = planFor({ caller: ctx.caller, customer: ctx.customer, model, requested, estimatedCost: next.cost, estimatedTokens: next.tokens, now: ctx.admittedAt, defaults: ctx.runtime.budgetDefaults() });
    if (await ctx.ticket.moveTo(plan)) return false;
    ctx.model = model;
    ctx.requested = requested;
    ctx.reserved = Math.max(ctx.reserved, next.cost);
    return true;
  }

  const settled = (ms: number) =>
    open === 0 ? Promise.resolve() : Promise.race([new Promise<void>((done) => whenNoneOpen.push(done)), Bun.sleep(ms)]);

  const { holdInFlight, takeUp } = inFlightChanges({ owners: () => deadlines.owners(), governance, auth, clock, planFor });

  return Object.assign(handle, { settled, holdInFlight, takeUp }) as InferenceHandler;

  async function handle(route: Route, request: Request): Promise<Response> {
    const start = clock.now();
    const requestId = crypto.randomUUID();
    let admitted: Awaited<ReturnType<typeof admit>>;
    const known: Known = {};
    try {
      admitted = await admit(route, request, requestId, start, known);
    } catch (error) {
      logRefusal(spend, known, error, { requestId, route, start, end: clock.now() });
      if (error instanceof GatewayError) {
        error.headers["x-litellm-call-id"] = requestId;
        deps.reject?.(error.type, requestId, error.status, error.message);
      } else deps.reject?.("internal", requestId, 500, String(error));
      throw error;
    }
    const { ctx, rawBody, stream } = admitted;
    open++;

    const deadline = deadlines.track(request.signal, ctx.runtime.requestTimeoutMs);
    deadline.owner = ctx;
    try {
      return await respond(ctx, request, rawBody, stream, deadline);
    } catch (error) {
      // Whatever went wrong after admission, the request's reservations and slot go back (a no-op once
      // it settled) and its deadline is dropped: nothing an error leaves behind is held for good.
      deadline.done();
      ctx.ticket.release();
      closeOut(ctx);
      // The id its spend log row has, as on every other answer.
      if (error instanceof GatewayError) error.headers["x-litellm-call-id"] = requestId;
      throw error;
    }
  }

  async function respond(ctx: Context, request: Request, rawBody: string, stream: boolean, deadline: Deadline): Promise<Response> {
    const route = ctx.route;
    // Every piece a stream's provider sends restarts its deadline, pings a translation drops included.
    const touch = stream ? () => deadline.touch() : undefined;
    let result: UpstreamResult;
    try {
      const attempted = await callWithRetries(ctx.runtime, {
        route, model: ctx.model, first: ctx.deployment, body: ctx.body, rawBody, stream, signal: deadline.signal, onRead: touch, routing: ctx.routing,
        betas: route === "messages" ? (request.headers.get("anthropic-beta") ?? undefined) : undefined,
        mayUse: (model) => mayUse(ctx.caller, model, ctx.runtime.router.groups),
        moveTo: (model, deployment) => moveTo(ctx, model, deployment),
      });
      result = attempted.result;
      ctx.slot = attempted.release;
      // Charged once, at the price of the deployment that answered.
      ctx.deployment = attempted.deployment;
      ctx.attempted = attempted;
    } catch (error) {
      deadline.done();
      const failed = new GatewayError(502, "upstream_error", `Upstream request failed: ${error instanceof Error ? error.message : String(error)}`);
      settle(ctx, NOTHING_USED, "failure", errorInformation(failed));
      const aborted = request.signal.aborted;
      observe(ctx, aborted ? 499 : 502, null, 0);
      throw failed;
    }

    if (result.kind === "error") {
      deadline.done();
      // Left by the client or cut by a deadline before the answer: the provider had the prompt and bills
      // it, so the prompt is charged (counted here), streamed or not. Any other failure costs nothing.
      const usage = result.abandoned ? countedUsage(ctx, "") : NOTHING_USED;
      const failed = upstreamError(result);
      const cost = settle(ctx, usage, result.status === 499 ? "client_disconnected" : "failure", errorInformation(failed));
      observe(ctx, result.status, result.abandoned ? usage : null, cost);
      throw failed;
    }

    if (result.kind === "json") {
      deadline.done();
      const answer = result.body;
      const usage = result.usage ? withOutput(ctx, result.usage, () => completionTextOf(answer)) : countedUsage(ctx, completionTextOf(answer));
      const cost = settle(ctx, usage, "success");
      observe(ctx, result.status, usage, cost);
      const headers = spendHeaders(ctx, "application/json");
      headers["x-litellm-response-cost"] = String(cost);
      return new Response(result.body, { status: result.status, headers });
    }

    const upstream = result.stream;
    let headers: Record<string, string>;
    try {
      headers = spendHeaders(ctx, "text/event-stream");
    } catch (error) {
      await upstream.cancel().catch(() => {});
      throw error;
    }
    headers["cache-control"] = "no-cache";
    headers.connection = "keep-alive";
    const quiet = silenceBound(ctx.deployment);
    if (quiet !== undefined) {
      deadline.quietAtMost(quiet * 1000, `The provider sent nothing for longer than stream_timeout (${quiet}s) of deployment ${ctx.deployment.id}`);
    }
    const { status, usageSoFar } = result;
    const wantsUsage = clientWantsUsage(ctx.body);
    const countUsage = wantsUsage ? (text: string) => countedUsage(ctx, text) : undefined;
    const choices = streamedChoices(route, ctx.body);
    const body = tapStream(upstream, { clientWantsUsage: wantsUsage, secret: result.secret, onChunk: touch, countUsage, choices, head: result.head, anthropic: route === "messages" }, (outcome) => {
      deadline.done();
      const failed = failedByProvider(outcome, usageSoFar);
      // A stream may send its usage before its last words (some providers do on their first chunk): what was passed on is charged even so.
      const usage = failed ? NOTHING_USED : outcome.end === "complete" && outcome.usage ? withOutput(ctx, outcome.usage, () => outcome.text) : cutShort(ctx, outcome.usage ?? usageSoFar?.() ?? null, outcome.text);
      const end = failed ? "failure" : outcome.end === "complete" ? "success" : outcome.end === "cancelled" ? "client_disconnected" : "stream_failed";
      const cost = settle(ctx, usage, end, outcome.failure ? errorInformation(outcome.failure) : undefined);
      observe(ctx, outcome.end === "complete" ? status : outcome.end === "cancelled" ? 499 : 502, usage, cost, outcome.end);
    });
    return streamed(new Response(body, { status, headers }));
  }
}

/** A deployment's bound on a stream's silences, in seconds: its `stream_timeout`, else its `timeout` (LiteLLM's read timeout). */
function silenceBound(deployment: Deployment): number | undefined {
  const seconds = Number(deployment.params.stream_timeout ?? deployment.params.timeout);
  return seconds > 0 ? seconds : undefined;
}

export type Inference = ReturnType<typeof createInference>;

/** An inference handler and what a shutdown waits for. */
export interface InferenceHandler {
  (route: Route, request: Request): Promise<Response>;
  /**
   * Resolves once every admitted request has its spend recorded (at most `ms` later): a request the
   * client left during a shutdown is settled after its connection closed, and its spend must not come
   * after the spend writer's last flush.
   */
  settled(ms: number): Promise<void>;
  /** See `holdInFlight` in in-flight.ts. */
  holdInFlight(prefixes: readonly string[]): void;
  /** See `takeUp` in in-flight.ts. */
  takeUp(prefixes: readonly string[], regenerated?: Regenerated): Promise<void>;
}
