import { describe, expect, test } from "bun:test";
import { drawResettingBudget, type Key, logCounts, randomLimitsSuite, type Reader, type Scope, type Sent, setUp, stored, tagsOf, traffic } from "../helpers/random-limits";

const { shared, instances } = randomLimitsSuite();

const DURATION_MS: Record<string, number> = { "2s": 2000, "3s": 3000 };
const LONGEST_MS = Math.max(...Object.values(DURATION_MS));

/**
 * Budgets that reset every few seconds, checked period by period (the periods laid out from each
 * entity's budget_reset_at as stored at the end): no period's requests spend more than the budget and
 * one request.
 */
async function periodsHeld(read: Reader, scopes: Map<string, Scope>, keys: Key[]): Promise<string[]> {
  const problems: string[] = [];
  const rows = await read.query("select api_key, user_id, team_id, end_user, spend, start_time from spend_logs");
  const most = Math.max(...rows.map((r) => Number(r.spend)));
  for (const scope of scopes.values()) {
    const { max_budget: budget, budget_duration: duration } = scope.limits;
    if (budget === undefined || duration === undefined) continue;
    const resetAt = new Date(await stored(read, keys, scope.tag, "budget_reset_at") as string).getTime();
    const length = DURATION_MS[duration]!;
    const perPeriod = new Map<number, number>();
    for (const r of rows.filter((row) => logCounts(row, scope.tag, keys))) {
      const period = Math.floor((new Date(r.start_time).getTime() - resetAt) / length);
      perPeriod.set(period, (perPeriod.get(period) ?? 0) + Number(r.spend));
    }
    for (const [period, spent] of perPeriod) {
      if (spent > budget + most + 1e-12) problems.push(`${scope.tag}: spent ${spent} in its period ${period} (budget ${budget} every ${duration}, one request ${most})`);
    }
  }
  return problems;
}

/**
 * No key whose own budget is its only one is refused for longer than the longest period and a second
 * after its last admitted request, or after the last change of its budget_duration (which starts a new
 * period, what was spent carried in, as LiteLLM does): a reset is not left stuck behind stale counters.
 */
function neverStuck(scopes: Map<string, Scope>, keys: Key[], sent: Sent[], restarts = new Map<string, number[]>()): string[] {
  const problems: string[] = [];
  const budgeted = (tag: string | undefined) => tag !== undefined && scopes.get(tag)?.limits.max_budget !== undefined;
  let watched = 0;
  for (const key of keys) {
    if (!budgeted(key.tag) || tagsOf(key, undefined).slice(1).some(budgeted)) continue;
    watched++;
    const mine = sent.filter((s) => s.tags[0] === key.tag && !s.tags.slice(1).some(budgeted)).sort((a, b) => a.at - b.at);
    let last = mine[0]?.at ?? 0;
    for (const s of mine) {
      if (s.status !== 400 && s.status !== 429) last = s.at;
      const since = Math.max(last, ...(restarts.get(key.tag) ?? []).filter((at) => at <= s.at));
      if (s.at - since > LONGEST_MS + 1000) {
        problems.push(`${key.tag}: refused ${s.at - since} ms after its last admitted request or period begun (budget ${key.limits.max_budget} every ${key.limits.budget_duration})`);
        break;
      }
    }
  }
  expect(watched).toBeGreaterThan(0);
  return problems;
}

describe("budgets that reset every few seconds on two instances sharing Postgres and Redis", () => {
  for (const seed of [102, 108, 143]) {
    test(`seed ${seed}, budgets reset every 2–3 s: no period overspent by more than one request, no key stuck after a reset`, async () => {
      const { gateways, open } = await instances();
      const { scopes, keys } = await setUp(gateways[0]!.url, seed, drawResettingBudget);
      const sent = await traffic(gateways, keys, seed, { seconds: 9 });
      for (const g of gateways) expect(await g.stop("SIGTERM")).toBe(0);
      expect([...await periodsHeld(await open(), scopes, keys), ...neverStuck(scopes, keys, sent)]).toEqual([]);
      expect(shared.upstream.inFlight).toBe(0);
    }, 120_000);
  }
  for (const seed of [118, 145]) {
    test(`seed ${seed}, keys' budgets and durations changed meanwhile: no key stuck after a reset or a change`, async () => {
      const { gateways } = await instances();
      const { scopes, keys } = await setUp(gateways[0]!.url, seed, drawResettingBudget);
      const keyScopes = new Map(keys.map((k) => [k.tag, k as Scope]));
      const restarts = new Map<string, number[]>();
      const sent = await traffic(gateways, keys, seed, { seconds: 9, changes: { scopes: keyScopes, draw: drawResettingBudget, blocks: false, restarts } });
      expect(neverStuck(scopes, keys, sent, restarts)).toEqual([]);
      expect(shared.upstream.inFlight).toBe(0);
    }, 120_000);
  }
});
