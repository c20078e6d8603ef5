import { GatewayError } from "../http/errors";
import type { CounterCheck, Counters } from "./counters";
import { counterKeys } from "./keys";
import { rateWindow } from "./periods";
import type { Plan, PlannedCheck, SpendTargets } from "./policy";

export * from "./access";
export * from "./counters";
export * from "./duration";
export * from "./gauges";
export * from "./keys";
export * from "./per-model";
export * from "./periods";
export * from "./policy";

/** An admitted request's hold on its counters: settled once with the real amounts, or released. */
export interface Ticket {
  readonly plan: Plan;
  /**
   * Moves the request to another plan (a fallback model, or a deployment that costs more): the next
   * plan's checks not held yet are admitted (that model's own per-key budget and limits), and budgets
   * already held get the difference when the new estimate is higher. Null when done; else the check that
   * refused, and nothing more is held. Limits of the model left behind settle as a failed request.
   */
  moveTo(next: Plan): Promise<PlannedCheck | null>;
  settle(cost: number, tokens: number): void;
  release(): void;
  /** A budget set since admission where there was none: the request holds `check` there too (see `Counters.holdLate`), settled as a budget. */
  holdLate(check: CounterCheck): void;
  /** Budget counter prefixes the request holds on (its plan's budget scopes). */
  holds(prefix: string): boolean;
  /**
   * Per-model budgets set since admission where there were none, as a plan made now has them: the
   * request's spend is recorded on them too (`targets`, its per-model fields), and its late holds under
   * `prefixes` (those it turned out not to spend on: another name's budget came first) are given back.
   */
  lateModelBudgets(targets: Partial<SpendTargets>, prefixes: readonly string[]): void;
  /**
   * A plan is being made for the request after an admin change (see `takeUp`): its spend, should it
   * end first, is recorded once the plan says where (`whenPlanned`); `planned` says it has.
   */
  awaitPlan(): void;
  planned(): void;
  /** Whether a plan is awaited: then `whenPlanned` keeps `record` until the last one comes. */
  awaitsPlan(): boolean;
  whenPlanned(record: () => void): void;
  /** Rate-limit headers for the tightest scope and per-model limits. */
  headers(): Record<string, string>;
}

const fmt = (n: number) => String(n);
/** With Redis, what is held counts the room other instances reserved for their own requests too (their leases). */
const HELD_SHARED = "Requests in flight and the room other instances reserve";

function rejection(check: PlannedCheck, counters: Counters, now: number): GatewayError {
  if (check.kind === "budget") {
    const what = check.scope.endsWith("+model")
      ? `${check.label} exceeded budget for model=${check.model}.`
      : `${check.label} over budget.`;
    // The spend is what was spent; what requests in flight hold is said apart, as it is not spent yet.
    const held = counters.held(check);
    const holding = held > 0 ? `. ${counters.shared ? HELD_SHARED : "Requests in flight"} hold ${fmt(held)} more.` : "";
    return new GatewayError(400, "budget_exceeded",
      `ExceededBudget: ${what} Spend=${fmt(counters.spent(check))}, Budget=${fmt(check.budget ?? check.limit)}${holding}`);
  }
  if (check.kind === "parallel") {
    const setting = check.scope === "proxy" ? "global_max_parallel_requests" : "max_parallel_requests";
    return new GatewayError(429, "rate_limit_error",
      `Rate limit exceeded for ${check.label}: ${setting}=${check.limit} requests already in flight. A slot frees when one of them completes.`,
      null, { "retry-after": "1" });
  }
  const seconds = Math.max(1, Math.ceil((check.expiresAt - now) / 1000));
  // Tokens the minute's answers used are under the limit: what requests in flight reserve refused it, and
  // their room frees as they end (most use less than they reserve), not when the minute does.
  const usedTokens = check.kind === "tpm" ? counters.spent(check) : Infinity;
  if (usedTokens < check.limit) {
    const held = Math.max(0, (counters.decidedOn(check) ?? usedTokens + counters.held(check)) - usedTokens);
    return new GatewayError(429, "rate_limit_error",
      `Rate limit exceeded for ${check.label}: tpm_limit=${check.limit} tokens per minute reached with requests in flight `
      + `(used ${Math.floor(usedTokens)}, ${Math.ceil(held)} more held by ${counters.shared ? HELD_SHARED.toLowerCase() : "requests in flight"}). Room frees as they complete; the minute resets in ${seconds}s.`,
      null, { "retry-after": "1" });
  }
  const unit = check.kind === "rpm" ? "requests" : "tokens";
  const name = check.kind === "rpm" ? "rpm_limit" : "tpm_limit";
  // What the refusal was decided on (with Redis, the shared count, not this instance's view of it); said only when known.
  // Whole requests or tokens: with Redis it counts the room other instances hold, which leases share out in fractions.
  const used = counters.decidedOn(check);
  return new GatewayError(429, "rate_limit_error",
    `Rate limit exceeded for ${check.label}: ${name}=${check.limit} ${unit} per minute reached${used === null ? "" : ` (used ${Math.floor(used)})`}. Resets in ${seconds}s.`,
    null, { "retry-after": String(seconds) });
}

export type Governance = ReturnType<typeof createGovernance>;

export function createGovernance(counters: Counters, now: () => number) {
  return {
    counters,
    /** Reserves on every budget and limit of the plan at once, or throws the first one exceeded. */
    async admit(plan: Plan): Promise<Ticket> {
      const failed = await counters.admit(plan.checks);
      if (failed >= 0) {
        const check = plan.checks[failed]!;
        throw rejection(check, counters, now());
      }
      return new HeldTicket(plan, counters, now);
    },
  };
}

/** A ticket as a plain object with its methods on the prototype: nothing allocated per request but itself. */
class HeldTicket implements Ticket {
  private done = false;
  /** After a move: checks of the plans left behind, and the extra holds taken on budgets kept. */
  private moved: { left: PlannedCheck[]; topUps: PlannedCheck[] } | null = null;
  /** Holds taken after admission on budgets an admin set where there were none. */
  private late: CounterCheck[] | null = null;
  /** Plans awaited (see `awaitPlan`), and the spend record kept until they come. */
  private awaited = 0;
  private afterPlans: (() => void) | null = null;

  constructor(
    public plan: Plan,
    private readonly counters: Counters,
    private readonly now: () => number,
  ) {}

  async moveTo(next: Plan): Promise<PlannedCheck | null> {
    if (this.done) return null;
    const moved = (this.moved ??= { left: [], topUps: [] });
    const held = new Map(this.plan.checks.map((check) => [check.key, check]));
    const heldExtra = (key: string) => moved.topUps.reduce((sum, c) => (c.key === key ? sum + c.reserve : sum), 0);
    const added: PlannedCheck[] = [];
    const kept: PlannedCheck[] = [];
    const topUps: PlannedCheck[] = [];
    for (const check of next.checks) {
      const had = held.get(check.key);
      if (!had) {
        added.push(check);
        continue;
      }
      kept.push(had);
      const more = check.reserve - had.reserve - heldExtra(check.key);
      if (check.kind === "budget" && more > 0) topUps.push({ ...had, reserve: more });
    }
    const asked = [...added, ...topUps];
    if (asked.length > 0) {
      const failed = await this.counters.admit(asked);
      if (failed >= 0) return asked[failed]!;
    }
    const nextKeys = new Set(next.checks.map((check) => check.key));
    moved.left.push(...this.plan.checks.filter((check) => !nextKeys.has(check.key)));
    moved.topUps.push(...topUps);
    this.plan = { checks: [...kept, ...added], targets: next.targets };
    return null;
  }

  settle(cost: number, tokens: number): void {
    if (this.done) return;
    this.done = true;
    for (const check of this.plan.checks) {
      const actual = check.kind === "budget" ? cost : check.kind === "rpm" ? 1 : check.kind === "tpm" ? tokens : 0;
      if (check.kind === "tpm" && check.expiresAt <= this.now()) this.tokensLate(check, actual);
      else this.counters.settle(check, actual);
    }
    if (this.moved) this.settleMoved(this.moved);
    if (this.late) for (const check of this.late) this.counters.settle(check, cost);
  }

  /**
   * A request that ends after the minute it was admitted in (a long stream): its tokens count in the
   * running minute, as LiteLLM adds them when a request ends, not in one that can refuse nothing more.
   */
  private tokensLate(check: PlannedCheck, tokens: number): void {
    this.counters.release(check);
    const window = rateWindow(this.now());
    this.counters.settle({ ...check, key: counterKeys.inWindow(check.key, window.start), expiresAt: window.end, reserve: 0, on: undefined }, tokens);
  }

  holdLate(check: CounterCheck): void {
    if (this.done) this.counters.release(check);
    else (this.late ??= []).push(check);
  }

  holds(prefix: string): boolean {
    return this.plan.checks.some((check) => check.kind === "budget" && check.key.startsWith(prefix)) || (this.late?.some((check) => check.key.startsWith(prefix)) ?? false);
  }

  lateModelBudgets(targets: Partial<SpendTargets>, prefixes: readonly string[]): void {
    // Ended already, its spend record waiting for this plan: the targets are what it waits for.
    this.plan = { checks: this.plan.checks, targets: { ...this.plan.targets, ...targets } };
    if (this.done || !this.late || prefixes.length === 0) return;
    const given = (check: CounterCheck) => prefixes.some((prefix) => check.key.startsWith(prefix));
    for (const check of this.late) if (given(check)) this.counters.release(check);
    this.late = this.late.filter((check) => !given(check));
  }

  awaitPlan(): void {
    this.awaited++;
  }

  planned(): void {
    if (this.awaited === 0 || --this.awaited > 0) return;
    const record = this.afterPlans;
    this.afterPlans = null;
    record?.();
  }

  awaitsPlan(): boolean {
    return this.awaited > 0;
  }

  whenPlanned(record: () => void): void {
    this.afterPlans = record;
  }

  /** A model left behind failed: it costs nothing there but counts against its rpm limits, as LiteLLM counts a failure. */
  private settleMoved(moved: { left: PlannedCheck[]; topUps: PlannedCheck[] }): void {
    for (const check of moved.left) this.counters.settle(check, check.kind === "rpm" ? 1 : 0);
    for (const check of moved.topUps) this.counters.release(check);
  }

  release(): void {
    if (this.done) return;
    this.done = true;
    for (const check of this.plan.checks) this.counters.release(check);
    if (this.moved) {
      for (const check of [...this.moved.left, ...this.moved.topUps]) this.counters.release(check);
    }
    if (this.late) for (const check of this.late) this.counters.release(check);
  }

  headers(): Record<string, string> {
    return rateHeaders(this.plan.checks, this.counters);
  }
}

function rateHeaders(checks: readonly PlannedCheck[], counters: Counters): Record<string, string> {
  const headers: Record<string, string> = {};
  let requests: { limit: number; remaining: number } | null = null;
  let tokens: { limit: number; remaining: number } | null = null;
  for (const check of checks) {
    if (check.kind !== "rpm" && check.kind !== "tpm") continue;
    const remaining = Math.max(0, check.limit - counters.used(check));
    if (check.modelHeader) headers[`x-litellm-key-remaining-${check.kind === "rpm" ? "requests" : "tokens"}-${check.modelHeader}`] = String(remaining);
    if (check.kind === "rpm" && (!requests || remaining < requests.remaining)) requests = { limit: check.limit, remaining };
    if (check.kind === "tpm" && (!tokens || remaining < tokens.remaining)) tokens = { limit: check.limit, remaining };
  }
  if (requests) {
    headers["x-ratelimit-limit-requests"] = String(requests.limit);
    headers["x-ratelimit-remaining-requests"] = String(requests.remaining);
  }
  if (tokens) {
    headers["x-ratelimit-limit-tokens"] = String(tokens.limit);
    headers["x-ratelimit-remaining-tokens"] = String(tokens.remaining);
  }
  return headers;
}
