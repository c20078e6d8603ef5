import { describe, expect, test } from "bun:test";
import type { Caller, CustomerRecord, Principal } from "../../src/auth/principal";
import { type BudgetDefaults, COUNTER_IDLE_MS, LocalCounters, counterKeys, createGovernance, createPlanner, planChecks, scopes } from "../../src/governance";
import { GatewayError } from "../../src/http/errors";

const NOW = Date.UTC(2026, 0, 15, 12, 0, 0);
const defaults: BudgetDefaults = { gatewaySpend: 0, gatewayResetAt: null, gatewayCreatedAt: null };

function principal(overrides: { key?: Partial<Principal["key"]>; user?: Partial<NonNullable<Principal["user"]>> | null } = {}): Principal {
  return {
    key: {
      token: "hash1", key_name: "sk-...abcd", key_alias: null, spend: 0, max_budget: null, budget_duration: null,
      budget_reset_at: null, soft_budget: null, models: [], tpm_limit: null, rpm_limit: null, max_parallel_requests: null,
      model_max_budget: {}, model_rpm_limit: {}, model_tpm_limit: {}, user_id: "u1", team_id: null, budget_id: null,
      expires: null, blocked: false, metadata: {}, created_at: new Date(NOW - 1000), ...overrides.key,
    },
    keyBudget: null,
    spentHere: 0,
    user: overrides.user === null ? null : {
      user_id: "u1", user_role: "internal_user", spend: 0, max_budget: null, budget_duration: null, budget_reset_at: null,
      models: [], tpm_limit: null, rpm_limit: null, max_parallel_requests: null, created_at: new Date(NOW - 1000),
      model_max_budget: {}, modelSpend: {}, ...overrides.user,
    },
    team: null,
    membership: null,
    modelSpend: {},
  };
}

const keyCaller = (p: Principal): Caller => ({ kind: "key", principal: p, admin: false });

function setup() {
  let now = NOW;
  const counters = new LocalCounters(() => now);
  const governance = createGovernance(counters, () => now);
  return { counters, governance, advance: (ms: number) => (now += ms), now: () => now };
}

async function rejected(promise: Promise<unknown>): Promise<GatewayError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof GatewayError) return error;
    throw error;
  }
  throw new Error("expected a rejection");
}

describe("budgets", () => {
  test("an idle budget counter leaves memory, except the gateway-wide one, which stays until its period ends", async () => {
    const { counters, advance } = setup();
    const check = (key: string, expiresAt = Infinity) => ({ key, limit: 10, reserve: 1, initial: 0, expiresAt });
    const key = check(counterKeys.budget(scopes.key("abc"), null));
    const gateway = check(counterKeys.budget(scopes.gateway(), null));
    const gatewayPeriod = check(counterKeys.budget(scopes.gateway(), NOW + 3_600_000), NOW + 3_600_000);
    expect(counters.admit([key, gateway, gatewayPeriod])).toBe(-1);
    for (const c of [key, gateway, gatewayPeriod]) counters.settle(c, 4);
    advance(COUNTER_IDLE_MS + 1);
    counters.sweep();
    expect(counters.size).toBe(2);
    expect(counters.used(gateway)).toBe(4);
    expect(counters.used(key)).toBe(0); // gone: made again from the stored spend
    advance(3_600_000);
    counters.sweep();
    expect(counters.size).toBe(1);
    expect(counters.used(gateway)).toBe(4);
  });

  test("first request under a tiny budget passes, the next is refused naming the key, spend and budget", async () => {
    const { governance } = setup();
    const p = principal({ key: { max_budget: 2e-7 } });
    const plan = () => planChecks({ caller: keyCaller(p), customer: null, model: "gpt-4o", estimatedCost: 1e-4, now: NOW, defaults });
    const ticket = await governance.admit(plan());
    ticket.settle(7.2e-5, 30);
    const error = await rejected(governance.admit(plan()));
    expect(error.status).toBe(400);
    expect(error.type).toBe("budget_exceeded");
    expect(error.message).toBe("ExceededBudget: Key=sk-...abcd over budget. Spend=0.000072, Budget=2e-7");
  });

  test("concurrent requests cannot overspend by more than one request", async () => {
    const { governance } = setup();
    const p = principal({ key: { max_budget: 1 } });
    const plan = (cost: number) => planChecks({ caller: keyCaller(p), customer: null, model: "m", estimatedCost: cost, now: NOW, defaults });
    const results = await Promise.allSettled(Array.from({ length: 200 }, () => governance.admit(plan(0.125))));
    expect(results.filter((r) => r.status === "fulfilled").length).toBe(8);
    // 0.1 does not add up to 1 in binary floating point: the N+1-th request may pass, never more.
    const { governance: other } = setup();
    const decimal = await Promise.allSettled(Array.from({ length: 200 }, () => other.admit(planChecks({
      caller: keyCaller(principal({ key: { max_budget: 1 } })), customer: null, model: "m", estimatedCost: 0.1, now: NOW, defaults,
    }))));
    expect(decimal.filter((r) => r.status === "fulfilled").length).toBe(10);
  });

  test("a refusal while requests are in flight says what was spent, and what they hold apart", async () => {
    const { governance } = setup();
    const p = principal({ key: { max_budget: 1 } });
    const plan = () => planChecks({ caller: keyCaller(p), customer: null, model: "m", estimatedCost: 0.5, now: NOW, defaults });
    (await governance.admit(plan())).settle(0.25, 1);
    await governance.admit(plan());
    await governance.admit(plan());
    const error = await rejected(governance.admit(plan()));
    expect(error.message).toBe("ExceededBudget: Key=sk-...abcd over budget. Spend=0.25, Budget=1. Requests in flight hold 1 more.");
  });

  test("reservations all given back leave nothing held (no floating-point crumbs), and the idle counter is swept", () => {
    let now = NOW;
    const counters = new LocalCounters(() => now);
    const check = (reserve: number) => ({ key: "b:k:crumbs", limit: 10, reserve, initial: 0, expiresAt: Infinity });
    const reserves = [0.1, 0.2, 0.7, 1e-7, 0.3];
    for (const reserve of reserves) expect(counters.admit([check(reserve)])).toBe(-1);
    for (const reserve of reserves.slice(0, 3)) counters.settle(check(reserve), reserve / 2);
    for (const reserve of reserves.slice(3)) counters.release(check(reserve));
    expect(counters.held(check(0))).toBe(0);
    now += COUNTER_IDLE_MS + 1;
    counters.sweep();
    expect(counters.size).toBe(0);
    void counters.close();
  });

  test("a budget reached by decimal costs that add up a hair below it is reached (30 × 1e-7 against 3e-6)", async () => {
    for (const [cost, count, max] of [[1e-7, 30, 3e-6], [7e-7, 100, 7e-5], [2e-4, 250, 0.05]] as const) {
      const { governance } = setup();
      const p = principal({ key: { max_budget: max } });
      const plan = () => planChecks({ caller: keyCaller(p), customer: null, model: "m", estimatedCost: cost, now: NOW, defaults });
      let admitted = 0;
      for (let i = 0; i < count + 5; i++) {
        const ticket = await governance.admit(plan()).catch(() => null);
        if (!ticket) break;
        ticket.settle(cost, 1);
        admitted++;
      }
      expect(`${max}: ${admitted}`).toBe(`${max}: ${count}`);
      const error = await rejected(governance.admit(plan()));
      expect(error.message).toEndWith(`Budget=${max}`);
    }
  });

  test("a released reservation frees its room", async () => {
    const { governance } = setup();
    const p = principal({ key: { max_budget: 0.1 } });
    const plan = () => planChecks({ caller: keyCaller(p), customer: null, model: "m", estimatedCost: 0.1, now: NOW, defaults });
    const first = await governance.admit(plan());
    await rejected(governance.admit(plan()));
    first.release();
    await governance.admit(plan());
  });

  test("team keys skip the user's personal budget; the default internal-user budget applies to personal keys", async () => {
    const { governance } = setup();
    const withDefault = { ...defaults, maxInternalUserBudget: 0 };
    const personal = principal();
    const error = await rejected(governance.admit(planChecks({ caller: keyCaller(personal), customer: null, model: "m", estimatedCost: 1, now: NOW, defaults: withDefault })));
    expect(error.message).toBe("ExceededBudget: User=u1 over budget. Spend=0, Budget=0");
    const teamKey = principal({ key: { team_id: "t1" }, user: { max_budget: 0 } });
    await governance.admit(planChecks({ caller: keyCaller(teamKey), customer: null, model: "m", estimatedCost: 1, now: NOW, defaults: withDefault }));
  });

  test("an internal user with a max_budget of its own and no duration resets on internal_user_budget_duration, as the scheduler resets it", async () => {
    const { governance } = setup();
    const withDefault = { ...defaults, maxInternalUserBudget: 10, internalUserBudgetDuration: "1h" };
    const p = principal({ user: { max_budget: 1, spend: 5, budget_reset_at: new Date(NOW - 1) } });
    const plan = planChecks({ caller: keyCaller(p), customer: null, model: "m", estimatedCost: 0.1, now: NOW, defaults: withDefault });
    // The period the scheduler moves the row to; the spend of the one that ended no longer counts.
    expect(plan.targets.user?.period).toBe(NOW - 1 + 3_600_000);
    expect(plan.checks.find((check) => check.scope === "user")).toMatchObject({ budget: 1, initial: 0 });
    await governance.admit(plan);
    // Its own max_budget still applies within the period, and a user of another role gets no default duration.
    const spent = principal({ user: { max_budget: 1, spend: 5, budget_reset_at: new Date(NOW + 1000) } });
    await rejected(governance.admit(planChecks({ caller: keyCaller(spent), customer: null, model: "m", estimatedCost: 0.1, now: NOW, defaults: withDefault })));
    const admin = principal({ user: { user_role: "proxy_admin", max_budget: 1, spend: 5, budget_reset_at: new Date(NOW - 1) } });
    const adminPlan = planChecks({ caller: keyCaller(admin), customer: null, model: "m", estimatedCost: 0.1, now: NOW, defaults: withDefault });
    expect(adminPlan.targets.user?.period).toBeNull();
  });

  test("a budget whose period has ended counts as reset before any scheduler runs", async () => {
    const { governance } = setup();
    const p = principal({ key: { max_budget: 1, spend: 5, budget_duration: "30s", budget_reset_at: new Date(NOW - 1) } });
    const plan = planChecks({ caller: keyCaller(p), customer: null, model: "m", estimatedCost: 0.1, now: NOW, defaults });
    expect(plan.targets.keyPeriod).toBe(NOW - 1 + 30_000);
    await governance.admit(plan);
  });

  test("customers get max_end_user_budget unless their budget says otherwise; the master key pays it too", async () => {
    const { governance } = setup();
    const customer: CustomerRecord = { user_id: "ishaan3", alias: null, spend: 0.0009, budget_reset_at: null, blocked: false, budget: null, created_at: new Date(NOW), modelSpend: {} };
    const error = await rejected(governance.admit(planChecks({
      caller: { kind: "master" }, customer, model: "m", estimatedCost: 1, now: NOW, defaults: { ...defaults, maxEndUserBudget: 0.0001 },
    })));
    expect(error.message).toContain("End User=ishaan3 over budget");
  });

  test("a customer's own budget without max_budget caps nothing; max_end_user_budget_id's takes max_end_user_budget", () => {
    const tier = { budget_id: "tier", max_budget: null, soft_budget: null, budget_duration: null, budget_reset_at: null, tpm_limit: null, rpm_limit: 100, max_parallel_requests: null, model_max_budget: {} };
    const customer: CustomerRecord = { user_id: "palantir", alias: null, spend: 5, budget_reset_at: null, blocked: false, budget: tier, created_at: new Date(NOW), modelSpend: {} };
    const caps = (c: CustomerRecord) => planChecks({ caller: { kind: "master" }, customer: c, model: "m", estimatedCost: 1, now: NOW, defaults: { ...defaults, maxEndUserBudget: 0.0001 } })
      .checks.filter((check) => check.scope === "end user" && check.kind === "budget").length;
    expect(caps(customer)).toBe(0);
    expect(caps({ ...customer, defaultBudget: true })).toBe(1);
  });

  test("per-model key budget names the model", async () => {
    const { governance } = setup();
    const p = principal({ key: { model_max_budget: { "gpt-4o": { budget_limit: 1e-7, time_period: "1d" } } } });
    const plan = () => planChecks({ caller: keyCaller(p), customer: null, model: "gpt-4o", estimatedCost: 1, now: NOW, defaults });
    (await governance.admit(plan())).settle(1e-5, 10);
    const error = await rejected(governance.admit(plan()));
    expect(error.message).toContain("exceeded budget for model=gpt-4o");
    await governance.admit(planChecks({ caller: keyCaller(p), customer: null, model: "other", estimatedCost: 1, now: NOW, defaults }));
  });

  test("per-model budgets and limits are found by the name asked for, then the group's, then the name without its provider; one entry only", () => {
    const budgets = (p: Principal, requested: string, model: string) => {
      const plan = planChecks({ caller: keyCaller(p), customer: null, model, requested, estimatedCost: 1, now: NOW, defaults });
      return { budgets: plan.checks.filter((c) => c.scope === "key+model").map((c) => `${c.kind}:${c.model}:${c.limit}`), spentAs: plan.targets.keyModel!.model };
    };
    const entry = (budget_limit: number, rpm_limit?: number) => ({ budget_limit, time_period: "1d", rpm_limit });
    // An alias (gpt-4 → real-a): its own entry first, then the group's.
    const both = principal({ key: { model_max_budget: { "gpt-4": entry(1, 5), "real-a": entry(2, 6) } } });
    expect(budgets(both, "gpt-4", "real-a")).toEqual({ budgets: ["budget:gpt-4:" + (1 - 1e-9), "rpm:gpt-4:5"], spentAs: "gpt-4" });
    const group = principal({ key: { model_max_budget: { "real-a": entry(2) } } });
    expect(budgets(group, "gpt-4", "real-a")).toEqual({ budgets: ["budget:real-a:" + (2 - 2e-9)], spentAs: "real-a" });
    // A provider-prefixed name (served by a wildcard entry) finds the entry keyed by the bare name.
    const bare = principal({ key: { model_max_budget: { ok: entry(3) }, metadata: { model_rpm_limit: { ok: 4 } } } });
    expect(budgets(bare, "oa/ok", "oa/ok")).toEqual({ budgets: ["budget:ok:" + (3 - 3e-9), "rpm:ok:4"], spentAs: "ok" });
    // No entry: nothing limited, the spend is recorded under the group's name.
    expect(budgets(bare, "gpt-4", "real-a")).toEqual({ budgets: [], spentAs: "real-a" });
  });
});

describe("rate limits", () => {
  test("a 429 says whole requests used, though shared counters decide on fractions of room other instances hold", async () => {
    let now = NOW;
    const counters = new (class extends LocalCounters {
      override decidedOn() {
        return 4.2876157407408;
      }
    })(() => now);
    const governance = createGovernance(counters, () => now);
    const p = principal({ key: { rpm_limit: 4 } });
    const plan = () => planChecks({ caller: keyCaller(p), customer: null, model: "m", estimatedCost: 0, now, defaults });
    for (let i = 0; i < 4; i++) (await governance.admit(plan())).settle(0, 1);
    const error = await rejected(governance.admit(plan()));
    expect(error.message).toContain("rpm_limit=4 requests per minute reached (used 4).");
  });

  test("rpm N admits N and refuses the next with retry-after; rejected requests do not consume", async () => {
    const { governance, advance, now } = setup();
    const p = principal({ key: { rpm_limit: 4 } });
    const plan = () => planChecks({ caller: keyCaller(p), customer: null, model: "m", estimatedCost: 0, now: now(), defaults });
    for (let i = 0; i < 4; i++) (await governance.admit(plan())).settle(0, 1);
    for (let i = 0; i < 3; i++) {
      const error = await rejected(governance.admit(plan()));
      expect(error.status).toBe(429);
      expect(error.headers["retry-after"]).toBe("60");
    }
    advance(60_000);
    (await governance.admit(plan())).settle(0, 1);
  });

  test("max_parallel_requests counts in-flight requests and frees on settle", async () => {
    const { governance } = setup();
    const p = principal({ key: { max_parallel_requests: 1 } });
    const plan = () => planChecks({ caller: keyCaller(p), customer: null, model: "m", estimatedCost: 0, now: NOW, defaults });
    const first = await governance.admit(plan());
    expect((await rejected(governance.admit(plan()))).message).toContain("max_parallel_requests=1");
    first.settle(0, 5);
    await governance.admit(plan());
  });

  test("tpm counts prompt and completion tokens of admitted requests", async () => {
    const { governance } = setup();
    const p = principal({ key: { tpm_limit: 20 } });
    const plan = () => planChecks({ caller: keyCaller(p), customer: null, model: "m", estimatedCost: 0, now: NOW, defaults });
    (await governance.admit(plan())).settle(0, 19);
    (await governance.admit(plan())).settle(0, 1);
    expect((await rejected(governance.admit(plan()))).message).toContain("tpm_limit=20");
  });

  test("a request that ends after the minute it was admitted in counts its tokens in the running minute", async () => {
    const { governance, advance, now } = setup();
    const p = principal({ key: { tpm_limit: 100 } });
    const plan = () => planChecks({ caller: keyCaller(p), customer: null, model: "m", estimatedCost: 0, estimatedTokens: 10, now: now(), defaults });
    advance(57_000);
    const long = await governance.admit(plan());
    advance(5_000); // a stream that went on into the next minute
    long.settle(0, 1000);
    const refused = await rejected(governance.admit(plan()));
    expect(refused.status).toBe(429);
    expect(refused.message).toContain("tpm_limit=100 tokens per minute reached (used 1000)");
    advance(60_000);
    (await governance.admit(plan())).settle(0, 10); // the minute after starts afresh
  });

  test("a tpm refusal caused by requests in flight says what they hold apart, and to retry soon", async () => {
    const { governance, advance } = setup();
    const p = principal({ key: { tpm_limit: 20 } });
    const plan = () => planChecks({ caller: keyCaller(p), customer: null, model: "m", estimatedCost: 0, estimatedTokens: 1033, now: NOW, defaults });
    const inFlight = await governance.admit(plan());
    advance(30_000);
    const held = await rejected(governance.admit(plan()));
    expect(held.status).toBe(429);
    expect(held.message).toContain("(used 0, 1033 more held by requests in flight)");
    expect(held.headers["retry-after"]).toBe("1");
    // Its answer used 30: the minute itself is spent, and the refusal says when it resets.
    inFlight.settle(0, 30);
    const spent = await rejected(governance.admit(plan()));
    expect(spent.message).toContain("tpm_limit=20 tokens per minute reached (used 30). Resets in 30s.");
    expect(spent.headers["retry-after"]).toBe("30");
  });

  test("per-model headers: after the first request with model_rpm_limit 2, one remains", async () => {
    const { governance } = setup();
    const p = principal({ key: { model_rpm_limit: { "gpt-4": 2 }, model_tpm_limit: { "gpt-4": 200 } } });
    const ticket = await governance.admit(planChecks({ caller: keyCaller(p), customer: null, model: "gpt-4", estimatedCost: 0, now: NOW, defaults }));
    ticket.settle(0, 21);
    const headers = ticket.headers();
    expect(headers["x-litellm-key-remaining-requests-gpt-4"]).toBe("1");
    expect(headers["x-litellm-key-remaining-tokens-gpt-4"]).toBe("179");
  });

  test("the master key and proxy admins skip key rate limits", async () => {
    const { governance } = setup();
    const p = principal({ key: { rpm_limit: 0 } });
    await governance.admit(planChecks({ caller: { kind: "key", principal: p, admin: true }, customer: null, model: "m", estimatedCost: 0, now: NOW, defaults }));
  });
});

describe("plans kept per principal, customer and model", () => {
  const team = { team_id: "t1", spend: 0.5, max_budget: 10, budget_duration: "1h", budget_reset_at: null, rpm_limit: 100, tpm_limit: 1000, max_parallel_requests: 5, models: [], blocked: false, created_at: new Date(NOW - 90 * 60_000) };
  const governed = () => {
    const p = principal({ key: { max_budget: 5, budget_duration: "1d", rpm_limit: 10, tpm_limit: 500, max_parallel_requests: 3, team_id: "t1", model_rpm_limit: { m: 2 } } });
    return { ...p, team, membership: { team_id: "t1", user_id: "u1", spend: 0, budget_reset_at: null, created_at: new Date(NOW - 1000), budget: { max_budget: 1, budget_duration: "30m", rpm_limit: 4, tpm_limit: null, max_parallel_requests: null } } } as unknown as Principal;
  };
  const customer = { user_id: "c1", spend: 0.1, blocked: false, budget_reset_at: null, created_at: new Date(NOW - 1000), budget: { max_budget: 2, budget_duration: "10m", rpm_limit: 7, tpm_limit: null, max_parallel_requests: null } } as unknown as CustomerRecord;

  test("a kept plan is the plan planned afresh, with this request's estimate reserved on budgets", () => {
    const planFor = createPlanner();
    const p = governed();
    for (const [now, cost, who] of [[NOW, 0.01, customer], [NOW + 1000, 0.02, customer], [NOW + 2000, 0.03, null]] as const) {
      const input = { caller: keyCaller(p), customer: who, model: "m", estimatedCost: cost, now, defaults };
      expect(planFor(input)).toEqual(planChecks(input));
    }
  });

  test("the plan turns over with the rate window, a budget period, a new principal or a changed setting", () => {
    const planFor = createPlanner();
    const p = governed();
    const input = (now: number, extra: Partial<Parameters<typeof planChecks>[0]> = {}) =>
      ({ caller: keyCaller(p), customer, model: "m", estimatedCost: 0.01, now, defaults, ...extra });
    const windowEnd = Math.ceil((NOW + 1) / 60_000) * 60_000;
    const first = planFor(input(NOW));
    expect(planFor(input(windowEnd - 1)).checks.find((c) => c.kind === "rpm")).toBe(first.checks.find((c) => c.kind === "rpm"));
    // Next minute: new rate keys, exactly as planned afresh.
    const next = planFor(input(windowEnd));
    expect(next).toEqual(planChecks(input(windowEnd)));
    expect(next.checks.find((c) => c.kind === "rpm")!.key).not.toBe(first.checks.find((c) => c.kind === "rpm")!.key);
    // The customer's 10 minute budget period ends: the customer's budget key moves on.
    const customerEnd = first.checks.find((c) => c.scope === "end user" && c.kind === "budget")!.expiresAt;
    expect(planFor(input(customerEnd))).toEqual(planChecks(input(customerEnd)));
    // A reloaded principal (a new object) and a changed gateway budget are planned afresh.
    const reloaded = { ...p, key: { ...p.key, max_budget: 7 } } as Principal;
    expect(planFor(input(customerEnd, { caller: keyCaller(reloaded) })).checks.find((c) => c.scope === "key" && c.kind === "budget")!.budget).toBe(7);
    const gateway = { ...defaults, maxBudget: 100, gatewaySpend: 3 };
    expect(planFor(input(customerEnd, { defaults: gateway }))).toEqual(planChecks(input(customerEnd, { defaults: gateway })));
  });

  test("an instant before the cached plan's (a fallback planned at its request's admission) is planned for that instant, and the cache kept", () => {
    const planFor = createPlanner();
    const p = governed();
    const input = (now: number) => ({ caller: keyCaller(p), customer, model: "m", estimatedCost: 0.01, now, defaults });
    const windowEnd = Math.ceil((NOW + 1) / 60_000) * 60_000;
    const later = planFor(input(windowEnd + 5));
    const earlier = planFor(input(windowEnd - 5));
    expect(earlier).toEqual(planChecks(input(windowEnd - 5)));
    expect(earlier.checks.find((c) => c.kind === "rpm")!.key).not.toBe(later.checks.find((c) => c.kind === "rpm")!.key);
    expect(planFor(input(windowEnd + 10)).checks.find((c) => c.kind === "rpm")).toBe(later.checks.find((c) => c.kind === "rpm"));
  });
});
