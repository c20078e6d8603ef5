import { afterAll, expect } from "bun:test";
import { type RunningGateway, adminCall, startBinary, upstreamAndRedis } from "./binary";
import { answerFault, generator } from "./random-input";
import { openDatabase } from "../../src/db";
import { sharedPostgres, tempDir } from "./services";

/**
 * Random limits and random traffic for tests of the binary, two instances sharing Postgres and Redis or
 * one on the embedded database (see governance-fuzz, governance-resets and governance-faults.test.ts):
 * entities with limits drawn from a seed, requests of every kind through the instances, faults done to
 * them meanwhile, and the checks made on what came of it.
 */

const PRICE = { in: 0.000001, out: 0.000002 };

/** What each kind of request asks for: its model, and whether it streams. */
const KINDS = {
  plain: { model: "m", stream: false },
  stream: { model: "m", stream: true },
  leave: { model: "m", stream: true },
  failing: { model: "failing", stream: false },
  hanging: { model: "hanging", stream: true },
  cut: { model: "cut", stream: true },
} as const;
type Kind = keyof typeof KINDS;
/** The upstream's answer to each model: `failing` a 500, `hanging` nothing for 1.5 s, `cut` a stream broken after two chunks. */
const UPSTREAM = { chunks: 4, chunkDelayMs: 15, firstByteDelayMs: 0, models: { failing: { status: 500 }, hanging: { firstByteDelayMs: 1500 }, cut: { cutStreamAfterChunks: 2 } } };

export type Limits = { budget_duration?: string; max_budget?: number; rpm_limit?: number; tpm_limit?: number; max_parallel_requests?: number };
export interface Scope { tag: string; limits: Limits }
export interface Key extends Scope { key: string; token: string; team?: string; user?: string }

type Draw = (random: ReturnType<typeof generator>) => Limits;

const tokenOf = (keys: Key[], tag: string) => keys.find((k) => k.tag === tag)!.token;

/**
 * Each kind of scope, by its tag's first letter (k0 a key, t0 a team, u0 a user, c0 a customer, m-t0-u0
 * a team member): its admin path and id field (keys and members have their own calls), the row its spend
 * is kept in, and which spend_logs rows count on it (a user's own: its keys outside teams).
 */
const KINDS_OF_SCOPE: Record<string, { admin?: string; id?: string; table: string; where: string; params(tag: string, keys: Key[]): unknown[]; counts(r: Record<string, any>, tag: string, keys: Key[]): boolean }> = {
  k: { table: "keys", where: "token = $1", params: (tag, keys) => [tokenOf(keys, tag)], counts: (r, tag, keys) => r.api_key === tokenOf(keys, tag) },
  t: { admin: "team", id: "team_id", table: "teams", where: "team_id = $1", params: (tag) => [tag], counts: (r, tag) => r.team_id === tag },
  u: { admin: "user", id: "user_id", table: "users", where: "user_id = $1", params: (tag) => [tag], counts: (r, tag) => r.user_id === tag && !r.team_id },
  c: { admin: "customer", id: "user_id", table: "end_users", where: "user_id = $1", params: (tag) => [tag], counts: (r, tag) => r.end_user === tag },
  m: { table: "team_memberships", where: "team_id = $1 and user_id = $2", params: (tag) => tag.split("-").slice(1), counts: (r, tag) => `m-${r.team_id}-${r.user_id}` === tag },
};
const kindOf = (tag: string) => KINDS_OF_SCOPE[tag[0]!]!;

export function drawLimits(random: ReturnType<typeof generator>): Limits {
  const limits: Limits = {};
  if (random.next() < 0.6) limits.max_budget = random.pick([0.0002, 0.0005, 0.001, 0.002]);
  if (random.next() < 0.35) limits.rpm_limit = random.pick([10, 25, 60, 120]);
  if (random.next() < 0.3) limits.tpm_limit = random.pick([600, 1500, 4000]);
  if (random.next() < 0.5) limits.max_parallel_requests = random.pick([1, 2, 4]);
  return limits;
}

/** A budget of a few requests reset every 2 or 3 s, on most scopes; no other limit. */
export function drawResettingBudget(random: ReturnType<typeof generator>): Limits {
  return random.next() < 0.7 ? { max_budget: random.pick([0.0002, 0.0005]), budget_duration: random.pick(["2s", "3s"]) } : {};
}

/** Entities with random limits made through `url`: two teams, three users, two customers, members and six keys. */
export async function setUp(url: string, seed: number, draw: Draw = drawLimits) {
  const random = generator(seed);
  const scopes = new Map<string, Scope>();
  const add = (tag: string, limits: Limits) => scopes.set(tag, { tag, limits });
  for (const tag of ["t0", "t1", "u0", "u1", "u2", "c0", "c1"]) {
    const limits = draw(random);
    const { admin, id } = kindOf(tag);
    await adminCall(url, `/${admin}/new`, { [id!]: tag, ...limits });
    add(tag, limits);
  }
  const keys: Key[] = [];
  for (let i = 0; i < 6; i++) {
    const team = random.pick([undefined, "t0", "t1"]);
    const user = random.pick([undefined, "u0", "u1", "u2"]);
    if (team && user && !scopes.has(`m-${team}-${user}`)) {
      const { max_budget, ...rates } = draw(random);
      await adminCall(url, "/team/member_add", { team_id: team, member: { role: "user", user_id: user }, ...(max_budget ? { max_budget_in_team: max_budget } : {}) });
      if (Object.keys(rates).length > 0) await adminCall(url, "/team/member_update", { team_id: team, user_id: user, ...rates });
      add(`m-${team}-${user}`, { max_budget, ...rates });
    }
    const limits = draw(random);
    const made = await adminCall(url, "/key/generate", { ...limits, ...(team ? { team_id: team } : {}), ...(user ? { user_id: user } : {}) });
    const key: Key = { tag: `k${i}`, limits, key: made.key, token: made.token, team, user };
    keys.push(key);
    scopes.set(key.tag, key);
  }
  return { scopes, keys };
}

/** The scopes a request with `key` for `customer` counts against. */
export function tagsOf(key: Key, customer: string | undefined): string[] {
  return [key.tag, key.user, key.team, key.team && key.user ? `m-${key.team}-${key.user}` : undefined, customer].filter((t): t is string => t !== undefined);
}

/** A request sent: its scopes, its answer's status (-1: none, the connection failed), what was wrong with it, when and where it went. */
export interface Sent { tags: string[]; status: number; fault?: string; kind: string; at: number; url: string }

async function send(url: string, key: Key, customer: string | undefined, kind: Kind, n: number): Promise<Sent> {
  const tags = tagsOf(key, customer);
  const at = Date.now();
  const controller = new AbortController();
  try {
    const response = await fetch(`${url}/v1/chat/completions`, {
      method: "POST", signal: controller.signal,
      headers: { authorization: `Bearer ${key.key}`, "content-type": "application/json" },
      body: JSON.stringify({ ...KINDS[kind], ...(n % 3 ? { max_tokens: 30 + (n % 2) * 20 } : {}), ...(customer ? { user: customer } : {}), messages: [{ role: "user", content: `request ${n} tag:${tags.join(",")}` }] }),
    });
    if (kind === "leave" && response.status === 200) {
      await response.body!.getReader().read();
      controller.abort();
      return { tags, status: 200, kind, at, url };
    }
    const text = await response.text();
    const fault = faultOf(kind, response.status, text, response.headers.get("content-type"));
    return { tags, status: response.status, kind, at, url, ...(fault ? { fault: `${kind}: ${fault}` } : {}) };
  } catch (error) {
    return { tags, status: -1, kind, at, url, fault: `no answer: ${error}` };
  }
}

/**
 * What is wrong with an answer to a request of `kind`: the upstream's own 500 and a timeout's 504 are
 * passed on in the envelope, a stream the upstream broke ends with an error event, a 400 is a budget's.
 * A cut read by the gateway before the stream's first event (or its headers) is a 502: the upstream
 * resets the connection, and a reset loses what had not been read yet (on a loaded machine, the first
 * chunks too).
 */
function faultOf(kind: Kind, status: number, text: string, type: string | null): string | undefined {
  const failed = (kind === "failing" && status === 500) || (kind === "hanging" && status === 504) || (kind === "cut" && status === 502);
  if (failed) return answerFault(400, text.replace(`"code":"${status}"`, `"code":"400"`)) && `${status} not in the envelope: ${text}`;
  if (kind === "cut" && status === 200) return /\ndata: \{"error":\{[^\n]*\n\n$/.test(text) ? undefined : `broken stream not ended with an error event: ${text.slice(-200)}`;
  if (status === 400 && !/"type":"budget_exceeded"/.test(text)) return `400 not a budget's: ${text}`;
  const fault = answerFault(status, text, type);
  return fault && `${fault}: ${text.slice(0, 300)}`;
}

/** Sets `limits` on `scope` through `url`'s admin API (a member's budget is its max_budget_in_team). */
async function update(url: string, scope: Scope, limits: Limits & { blocked?: boolean }) {
  const t = scope.tag;
  const { admin, id } = kindOf(t);
  if ("key" in scope) {
    const { blocked, ...rest } = limits;
    if (blocked !== undefined) await adminCall(url, blocked ? "/key/block" : "/key/unblock", { key: (scope as Key).key });
    if (Object.keys(rest).length > 0) await adminCall(url, "/key/update", { key: (scope as Key).key, ...rest });
  } else if (admin) await adminCall(url, `/${admin}/update`, { [id!]: t, ...limits });
  else {
    const { max_budget, ...rates } = limits;
    await adminCall(url, "/team/member_update", { team_id: t.split("-")[1], user_id: t.split("-")[2], ...rates, ...(max_budget !== undefined ? { max_budget_in_team: max_budget } : {}) });
  }
}

/** Every key unblocked and every scope's budget and rate limits raised out of reach, its max_parallel_requests kept. */
async function liftAllButParallel(url: string, scopes: Map<string, Scope>) {
  for (const scope of scopes.values()) await update(url, scope, { max_budget: 1000, rpm_limit: 1_000_000, tpm_limit: 1_000_000_000, ...("key" in scope ? { blocked: false } : {}) });
  // The other instance hears of the changes through Redis.
  await Bun.sleep(500);
}

/** Queries on the database an instance wrote to, once it has stopped (the embedded one is opened only then). */
export interface Reader { query(text: string, params?: unknown[]): Promise<Record<string, any>[]> }

/**
 * A test upstream and a Redis server for the file that calls it, and its instances: two on a new Postgres
 * database sharing the Redis, or one on an embedded database of its own (`embedded`), the upstream reset
 * to answer as UPSTREAM says. `open` gives a Reader on what they wrote, to use once they have stopped;
 * every database handle is closed after the file.
 */
export function randomLimitsSuite() {
  const shared = upstreamAndRedis();
  const opened: { close(): Promise<unknown> }[] = [];
  afterAll(async () => {
    for (const db of opened) await db.close();
  });
  return { shared, instances: (options: { embedded?: boolean } = {}) => instances(shared, opened, options) };
}

type Shared = ReturnType<typeof upstreamAndRedis>;

async function instances(shared: Shared, opened: { close(): Promise<unknown> }[], { embedded = false } = {}): Promise<{ gateways: RunningGateway[]; open: () => Promise<Reader> }> {
  const model = (name: string, extra = "") =>
    `  - model_name: ${name}\n    litellm_params: {model: openai/${name}, api_base: "${shared.upstream.url}", api_key: x, ${extra}input_cost_per_token: ${PRICE.in}, output_cost_per_token: ${PRICE.out}}`;
  const models = `model_list:
${model("m")}
${model("failing")}
${model("hanging", "timeout: 0.3, stream_timeout: 0.3, ")}
${model("cut")}
general_settings:
  master_key: sk-1234
`;
  const track = <T extends { close(): Promise<unknown> }>(db: T): T => (opened.push(db), db);
  shared.upstream.reset();
  shared.upstream.set(UPSTREAM);
  if (embedded) {
    const dataDir = tempDir("embedded");
    const gateway = await startBinary({ config: `${models}  data_dir: ${dataDir}\n` });
    shared.gateways.push(gateway);
    return { gateways: [gateway], open: async () => track(await openDatabase({ dataDir })) };
  }
  const dbUrl = await (await sharedPostgres()).newDatabase();
  // A deployment of its own on the shared Redis: the same entity names in another test count apart.
  const config = `${models}  database_url: ${dbUrl}
  redis_url: ${shared.redis.url}
router_settings:
  redis_namespace: ${dbUrl.split("/").pop()}
`;
  const gateways = [await startBinary({ config }), await startBinary({ config })];
  shared.gateways.push(...gateways);
  const db = track(await openDatabase({ url: dbUrl, dataDir: "" }));
  return { gateways, open: async () => db };
}

/** A column of the row behind scope `tag` (a key's by its token, a member's by team and user). */
export async function stored(read: Reader, keys: Key[], tag: string, column: "spend" | "budget_reset_at"): Promise<unknown> {
  const { table, where, params } = kindOf(tag);
  return (await read.query(`select ${column} from ${table} where ${where}`, params(tag, keys)))[0]?.[column];
}

/** Whether spend_logs row `r` counts on scope `tag`. */
export function logCounts(r: Record<string, any>, tag: string, keys: Key[]): boolean {
  return kindOf(tag).counts(r, tag, keys);
}

/**
 * Limits changed while requests run: on `scopes`, drawn by `draw` (by default as at the start), and keys
 * blocked and unblocked unless `blocks` is false. `restarts` gets, per scope, when each change of its
 * budget_duration was made: another duration starts a new period then, what was spent carried into it.
 */
export interface Changes { scopes: Map<string, Scope>; draw?: Draw; blocks?: boolean; restarts?: Map<string, number[]> }

/** Something done to the services `at` ms into the traffic; an instance it kills is named in `killed`, and its lanes go to the other. */
export interface Fault { at: number; run: () => Promise<void>; killed?: RunningGateway }

/**
 * `seconds` of random requests in 12 lanes over the instances, in one rate window; with `changes`, a 13th
 * lane changes the scopes' limits (and blocks and unblocks keys) through either instance meanwhile; with
 * `faults`, each is done at its time (requests a killed instance leaves unanswered are not faults).
 */
export async function traffic(gateways: RunningGateway[], keys: Key[], seed: number, { changes, seconds = 6, faults = [] }: { changes?: Changes; seconds?: number; faults?: Fault[] } = {}): Promise<Sent[]> {
  const left = 60_000 - (Date.now() % 60_000);
  if (left < (seconds + 6) * 1000) await Bun.sleep(left + 200);
  const minute = Math.floor(Date.now() / 60_000);
  const random = generator(seed * 7919);
  const sent: Sent[] = [];
  const start = Date.now();
  const end = start + seconds * 1000;
  const down = new Set<string>();
  const lanes = Array.from({ length: 12 }, async (_, lane) => {
    for (let n = 0; Date.now() < end; n++) {
      const url = [gateways[lane % gateways.length]!, ...gateways].find((g) => !down.has(g.url))!.url;
      const answer = await send(url, random.pick(keys), random.pick([undefined, undefined, "c0", "c1"]), random.pick<Kind>(["plain", "plain", "stream", "leave", "failing", "hanging", "cut"]), n);
      sent.push(answer);
      if (answer.status !== 200) await Bun.sleep(5);
    }
  });
  if (changes) {
    const all = [...changes.scopes.values()];
    const draw = changes.draw ?? drawLimits;
    lanes.push((async () => {
      let n = 0;
      for (; Date.now() < end; n++) {
        const scope = random.pick(all);
        const limits: Limits & { blocked?: boolean } = draw(random);
        if ("key" in scope && changes.blocks !== false && random.next() < 0.2) limits.blocked = random.next() < 0.5;
        await update(gateways[n % gateways.length]!.url, scope, limits);
        if (limits.budget_duration !== undefined && limits.budget_duration !== scope.limits.budget_duration) {
          const restarts = changes.restarts?.get(scope.tag) ?? [];
          changes.restarts?.set(scope.tag, [...restarts, Date.now()]);
        }
        const { blocked, ...kept } = limits;
        Object.assign(scope.limits, kept);
        await Bun.sleep(20);
      }
      // Enough changes that some land while requests they touch are in flight.
      expect(n).toBeGreaterThan(20);
    })());
  }
  for (const fault of faults) {
    lanes.push((async () => {
      await Bun.sleep(start + fault.at - Date.now());
      if (fault.killed) down.add(fault.killed.url);
      await fault.run();
    })());
  }
  await Promise.all(lanes);
  expect(Math.floor(Date.now() / 60_000)).toBe(minute);
  expect(sent.filter((s) => s.fault && !(s.status === -1 && down.has(s.url))).map((s) => `${s.status} ${s.fault}`)).toEqual([]);
  const statuses: Record<number, number> = {};
  for (const s of sent) statuses[s.status] = (statuses[s.status] ?? 0) + 1;
  console.log(`seed ${seed}: ${sent.length} requests`, statuses);
  expect(statuses[200] ?? 0).toBeGreaterThan(20);
  return sent;
}

/** Each scope's max_parallel_requests and rpm_limit held: what the upstream held at once, what was admitted in the minute. */
export function ratesHeld(shared: Shared, scopes: Map<string, Scope>, sent: Sent[], seed: number): string[] {
  const problems: string[] = [];
  /** Scopes whose rpm_limit admitted all it could: the limit was put to the test. */
  const reached: string[] = [];
  for (const scope of scopes.values()) {
    // A request whose client left, or whose deadline passed, frees its slot as the gateway lets go of it:
    // the upstream sees the connection close a moment later.
    const held = shared.upstream.held(scope.tag, 20);
    const cap = scope.limits.max_parallel_requests;
    if (cap !== undefined && held.max > cap) problems.push(`${scope.tag}: ${held.max} at once, max_parallel_requests ${cap}`);
    const rpm = scope.limits.rpm_limit;
    // Admitted: sent on to the upstream (answered, or the upstream's failure or timeout passed on).
    const admitted = sent.filter((s) => s.status !== 400 && s.status !== 429 && s.tags.includes(scope.tag)).length;
    if (rpm !== undefined && admitted === rpm) reached.push(scope.tag);
    if (rpm !== undefined && admitted > rpm) problems.push(`${scope.tag}: ${admitted} admitted in a minute, rpm_limit ${rpm}`);
  }
  console.log(`seed ${seed}: rpm_limit reached by ${reached.join(", ") || "none"}`);
  return problems;
}

/**
 * No slot left held: with every budget and rate limit lifted, each key gets as many requests at once as
 * the tightest max_parallel_requests over its scopes, spread over the instances, and one more is refused.
 */
export async function slotsFree(shared: Shared, gateways: RunningGateway[], scopes: Map<string, Scope>, keys: Key[]): Promise<string[]> {
  const problems: string[] = [];
  await liftAllButParallel(gateways[0]!.url, scopes);
  shared.upstream.set({ firstByteDelayMs: 600, chunks: 1, chunkDelayMs: 0 });
  for (const key of keys) {
    const caps = tagsOf(key, undefined).map((t) => scopes.get(t)!.limits.max_parallel_requests).filter((c): c is number => c !== undefined);
    if (caps.length === 0) continue;
    const cap = Math.min(...caps);
    const burst = await Promise.all(Array.from({ length: cap + 1 }, async (_, i) => {
      await Bun.sleep(i === cap ? 250 : 0);
      return send(gateways[i % gateways.length]!.url, key, undefined, "plain", i);
    }));
    const got = burst.map((s) => s.status);
    if (got.filter((s) => s === 200).length !== cap || got[cap] !== 429) problems.push(`${key.tag} (${tagsOf(key, undefined).join(",")}): ${cap} at once allowed, answered ${got.join(" ")}`);
  }
  return problems;
}

/**
 * The books, once both instances have stopped and written everything: each entity's spend is what its
 * spend_logs rows add up to; and, given `liftedAt`, no budget or tpm_limit was passed before then by
 * more than one request.
 */
export async function books(read: Reader, scopes: Map<string, Scope>, keys: Key[], liftedAt: Date | null): Promise<string[]> {
  const problems: string[] = [];
  const rows = await read.query("select api_key, user_id, team_id, end_user, spend, total_tokens, start_time from spend_logs");
  expect(rows.length).toBeGreaterThan(20);
  const most = Math.max(...rows.map((r) => Number(r.spend)));
  const mostTokens = Math.max(...rows.map((r) => Number(r.total_tokens)));
  expect(most).toBeLessThanOrEqual(30 * PRICE.out);
  const sum = (rs: readonly Record<string, any>[], column: "spend" | "total_tokens") => rs.reduce((total, r) => total + Number(r[column]), 0);
  for (const scope of scopes.values()) {
    const mine = rows.filter((r) => logCounts(r, scope.tag, keys));
    const spend = Number(await stored(read, keys, scope.tag, "spend"));
    if (Math.abs(spend - sum(mine, "spend")) > 1e-12) problems.push(`${scope.tag}: spend ${spend}, its spend_logs add up to ${sum(mine, "spend")}`);
    if (!liftedAt) continue;
    const before = mine.filter((r) => new Date(r.start_time) < liftedAt);
    const { max_budget: budget, tpm_limit: tpm } = scope.limits;
    if (budget !== undefined && sum(before, "spend") > budget + most + 1e-12) problems.push(`${scope.tag}: spent ${sum(before, "spend")}, max_budget ${budget}, one request ${most}`);
    if (tpm !== undefined && sum(before, "total_tokens") > tpm + mostTokens) problems.push(`${scope.tag}: ${sum(before, "total_tokens")} tokens in a minute, tpm_limit ${tpm}, one request ${mostTokens}`);
  }
  return problems;
}
