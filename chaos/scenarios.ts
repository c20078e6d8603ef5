/**
 * Fault scenarios against the compiled binary with real Postgres, Redis and a local upstream. Each
 * returns a row for the chaos table; `npm run chaos` prints them and the test suite asserts them.
 */
import postgres from "postgres";
import { type RunningGateway, startBinary } from "../test/helpers/binary";
import { type PostgresServer, type RedisServer, startPostgres, startRedis } from "../test/helpers/services";
import { type Upstream, startUpstream } from "../test/helpers/upstream";

export interface ChaosRow {
  scenario: string;
  sent: number;
  succeeded: number;
  failed: Record<string, number>;
  expectedSpend: number;
  recordedSpend: number;
  verdict: "pass" | "FAIL";
  notes: string;
}

export interface Env {
  pg: PostgresServer;
  redis: RedisServer;
  upstream: Upstream;
}

export async function environment(): Promise<Env> {
  return { pg: await startPostgres(), redis: await startRedis(), upstream: await startUpstream() };
}

/** Price of the test upstream's default usage (10 prompt + 20 completion tokens). */
export const PRICE_IN = 0.000001;
export const PRICE_OUT = 0.000002;
export const CALL_COST = 10 * PRICE_IN + 20 * PRICE_OUT;

export function configFor(env: Env, dbUrl: string, extra: Record<string, unknown> = {}, upstreamUrl = env.upstream.url) {
  return `
model_list:
  - model_name: m
    litellm_params: {model: openai/m, api_base: "${upstreamUrl}", input_cost_per_token: ${PRICE_IN}, output_cost_per_token: ${PRICE_OUT}}
general_settings:
  master_key: sk-1234
  database_url: ${dbUrl}
  redis_url: ${env.redis.url}
  log_level: warn
${Object.entries(extra).map(([k, v]) => `  ${k}: ${JSON.stringify(v)}`).join("\n")}
`;
}

export class Tally {
  sent = 0;
  succeeded = 0;
  failed: Record<string, number> = {};
  expected = 0;

  async call(gateway: RunningGateway, key: string, body: object = {}, headers: Record<string, string> = {}): Promise<Response | null> {
    this.sent++;
    try {
      const response = await fetch(`${gateway.url}/v1/chat/completions`, {
        method: "POST",
        headers: { authorization: `Bearer ${key}`, "content-type": "application/json", ...headers },
        body: JSON.stringify({ model: "m", messages: [{ role: "user", content: "hi" }], ...body }),
      });
      const text = await response.text();
      if (response.status === 200) {
        this.succeeded++;
        const cost = response.headers.get("x-litellm-response-cost");
        if (cost) this.expected += Number(cost);
      } else {
        this.failed[String(response.status)] = (this.failed[String(response.status)] ?? 0) + 1;
      }
      return new Response(text, { status: response.status, headers: response.headers });
    } catch {
      this.failed.network = (this.failed.network ?? 0) + 1;
      return null;
    }
  }

  stopped = false;

  /** Concurrent traffic for `ms` (or until `stopped`): `workers` loops, each one request after the other. */
  async load(gateways: RunningGateway[], key: string, ms: number, workers = 8): Promise<void> {
    const until = Date.now() + ms;
    await Promise.all(Array.from({ length: workers }, async (_, w) => {
      while (Date.now() < until && !this.stopped) await this.call(gateways[w % gateways.length]!, key);
    }));
  }
}

export async function newKey(gateway: RunningGateway, body: object = {}): Promise<{ key: string; token: string }> {
  const response = await fetch(`${gateway.url}/key/generate`, { method: "POST", headers: { authorization: "Bearer sk-1234" }, body: JSON.stringify(body) });
  return (await response.json()) as { key: string; token: string };
}

export async function recorded(dbUrl: string, token: string): Promise<{ key: number; logs: number; rows: number }> {
  const sql = postgres(dbUrl, { onnotice: () => {} });
  const [key] = await sql`select spend from keys where token = ${token}`;
  const [logs] = await sql`select coalesce(sum(spend), 0)::float8 as s, count(*)::int as n from spend_logs where api_key = ${token}`;
  await sql.end();
  return { key: key?.spend ?? 0, logs: logs!.s, rows: logs!.n };
}

export const close = (a: number, b: number) => Math.abs(a - b) <= 1e-9 * Math.max(1, Math.abs(a), Math.abs(b));

export function row(scenario: string, tally: Tally, recordedSpend: number, ok: boolean, notes = ""): ChaosRow {
  return {
    scenario, sent: tally.sent, succeeded: tally.succeeded, failed: tally.failed, expectedSpend: tally.expected, recordedSpend,
    verdict: ok ? "pass" : "FAIL", notes,
  };
}

/** Redis killed under load and restarted: no request fails; limits go per-instance, then re-sync. */
export async function redisKilled(env: Env): Promise<ChaosRow> {
  const dbUrl = await env.pg.newDatabase();
  const config = configFor(env, dbUrl);
  const gateways = [await startBinary({ config }), await startBinary({ config })];
  const { key, token } = await newKey(gateways[0]!, { rpm_limit: 1_000_000, max_budget: 1000 });
  const tally = new Tally();
  const traffic = tally.load(gateways, key, 6000);
  await Bun.sleep(1500);
  await env.redis.stop();
  await Bun.sleep(2000);
  const degraded = (await (await fetch(`${gateways[0]!.url}/health/readiness`)).json()) as any;
  await env.redis.start();
  await traffic;
  await Promise.all(gateways.map((g) => g.stop()));
  const spend = await recorded(dbUrl, token);
  const ok = Object.keys(tally.failed).length === 0 && close(spend.key, tally.expected) && close(spend.logs, tally.expected) && degraded.cache === "degraded";
  return row("Redis killed under load, restarted", tally, spend.key, ok, `readiness during outage: ${degraded.status}/${degraded.cache}`);
}

/** Postgres stopped under load for `outageMs`: known keys keep working; spend written after it returns. */
export async function postgresStopped(env: Env, outageMs: number): Promise<ChaosRow> {
  const dbUrl = await env.pg.newDatabase();
  const gateway = await startBinary({ config: configFor(env, dbUrl) });
  const { key, token } = await newKey(gateway, { max_budget: 1000 });
  const tally = new Tally();
  await tally.call(gateway, key);
  const traffic = tally.load([gateway], key, outageMs + 4000, 4);
  await Bun.sleep(1000);
  await env.pg.stop();
  await Bun.sleep(Math.min(2000, outageMs / 2));
  const readiness = await fetch(`${gateway.url}/health/readiness`);
  await Bun.sleep(Math.max(0, outageMs - Math.min(2000, outageMs / 2)));
  await env.pg.start();
  await traffic;
  // The writer retries every second: give it a few.
  await Bun.sleep(3000);
  await gateway.stop();
  const spend = await recorded(dbUrl, token);
  const ok = Object.keys(tally.failed).length === 0 && close(spend.key, tally.expected) && close(spend.logs, tally.expected) && readiness.status === 503;
  return row(`Postgres stopped ${Math.round(outageMs / 1000)} s under load`, tally, spend.key, ok, `readiness during outage: ${readiness.status}`);
}

/** Provider faults: clear OpenAI-style errors, slots and counters released, partial streams charged. */
export async function upstreamFaults(env: Env): Promise<ChaosRow> {
  const dbUrl = await env.pg.newDatabase();
  const dead = `http://127.0.0.1:1/v1`;
  const gateway = await startBinary({ config: configFor(env, dbUrl) });
  const deadGateway = await startBinary({ config: configFor(env, await env.pg.newDatabase(), {}, dead) });
  const { key, token } = await newKey(gateway, { max_parallel_requests: 1, max_budget: 1000 });
  const tally = new Tally();
  const problems: string[] = [];
  const withUpstream = async <T>(behaviour: object, fn: () => Promise<T>): Promise<T> => {
    env.upstream.set(behaviour);
    try {
      return await fn();
    } finally {
      env.upstream.reset();
    }
  };
  const expectStatus = async (name: string, behaviour: object, status: number, body: object = {}) => {
    const response = await withUpstream(behaviour, () => tally.call(gateway, key, body));
    if (!response || response.status !== status) problems.push(`${name}: ${response?.status}`);
    else if (status >= 400) {
      const error = ((await response.json()) as any).error;
      if (!error?.message || error.code !== String(status)) problems.push(`${name}: envelope`);
    }
    return response;
  };
  await expectStatus("500", { status: 500 }, 500);
  await expectStatus("502", { status: 502 }, 502);
  await expectStatus("503", { status: 503 }, 503);
  const limited = await expectStatus("429", { status: 429, retryAfter: 7 }, 429);
  if (limited?.headers.get("retry-after") !== "7") problems.push("429 retry-after not passed on");
  await expectStatus("malformed JSON", { malformedJson: true }, 502);
  await expectStatus("slow first byte", { firstByteDelayMs: 1500 }, 200);
  // A stream cut after two chunks: the client gets an error event, the partial output is charged.
  const cut = await withUpstream({ cutStreamAfterChunks: 2, chunks: 5 }, () => tally.call(gateway, key, { stream: true }));
  const cutText = cut ? await cut.text() : "";
  if (!cutText.includes('"error"')) problems.push("cut stream: no error event");
  const malformed = await withUpstream({ malformedSse: true }, () => tally.call(gateway, key, { stream: true }));
  if (!malformed || !(await malformed.text()).includes("malformed stream event")) problems.push("malformed SSE: no error event");
  // Connection refused.
  const refused = await fetch(`${deadGateway.url}/v1/chat/completions`, {
    method: "POST", headers: { authorization: "Bearer sk-1234" }, body: JSON.stringify({ model: "m", messages: [{ role: "user", content: "x" }] }),
  });
  if (refused.status !== 502) problems.push(`connection refused: ${refused.status}`);
  // The single parallel slot must be free after all of that.
  const after = await tally.call(gateway, key);
  if (after?.status !== 200) problems.push(`slot leaked: ${after?.status}`);
  await Bun.sleep(1500);
  await gateway.stop();
  await deadGateway.stop();
  const spend = await recorded(dbUrl, token);
  // Streams carry no cost header: the two streamed calls are charged from counted tokens.
  const streamed = spend.logs - tally.expected;
  if (!(streamed > 0)) problems.push("partial streams not charged");
  if (!close(spend.key, spend.logs)) problems.push("key spend differs from spend logs");
  return row("provider faults (500/502/503/429/bad JSON/slow/cut/bad SSE/refused)", tally, spend.key, problems.length === 0, problems.join("; ") || "slot released, partial streams charged");
}

/** kill -9 under load: what was settled in the last flush interval (≤ ~1 s) may be lost, nothing more. */
export async function killNine(env: Env): Promise<ChaosRow> {
  const dbUrl = await env.pg.newDatabase();
  const gateway = await startBinary({ config: configFor(env, dbUrl) });
  const { key, token } = await newKey(gateway, { max_budget: 1000 });
  const tally = new Tally();
  const started = Date.now();
  const traffic = tally.load([gateway], key, 10_000, 4);
  await Bun.sleep(3000);
  tally.stopped = true;
  await gateway.stop("SIGKILL");
  await traffic;
  const seconds = (Date.now() - started) / 1000;
  const spend = await recorded(dbUrl, token);
  const perSecond = tally.expected / 3;
  const lost = tally.expected - spend.key;
  // Bound: one flush interval (250 ms) plus the batch being written when the process died.
  const ok = lost >= -1e-12 && lost <= perSecond * 0.6 && close(spend.key, spend.logs);
  return row("kill -9 under load", tally, spend.key, ok, `lost ${(lost / CALL_COST).toFixed(0)} requests' spend (≈${(lost / perSecond).toFixed(2)} s of traffic; bound: one 250 ms flush interval plus the batch in flight); ${seconds.toFixed(0)} s run`);
}

/** Several instances flushing spend for the same rows at once: no deadlock, nothing lost or doubled. */
export async function concurrentFlushes(env: Env, instances: number): Promise<ChaosRow> {
  const dbUrl = await env.pg.newDatabase();
  const config = configFor(env, dbUrl);
  const gateways = await Promise.all(Array.from({ length: instances }, () => startBinary({ config })));
  const team = (await (await fetch(`${gateways[0]!.url}/team/new`, { method: "POST", headers: { authorization: "Bearer sk-1234" }, body: "{}" })).json()) as any;
  const keys = await Promise.all(Array.from({ length: 3 }, () => newKey(gateways[0]!, { team_id: team.team_id })));
  const tally = new Tally();
  await Promise.all(keys.map((k) => tally.load(gateways, k.key, 5000, 4)));
  await Promise.all(gateways.map((g) => g.stop()));
  const sql = postgres(dbUrl, { onnotice: () => {} });
  const [t] = await sql`select spend from teams where team_id = ${team.team_id}`;
  const [g] = await sql`select spend from gateway_spend`;
  await sql.end();
  const ok = Object.keys(tally.failed).length === 0 && close(t!.spend, tally.expected) && close(g!.spend, tally.expected);
  return row(`${instances} instances flushing one team's spend`, tally, t!.spend, ok, `gateway total ${g!.spend.toFixed(6)}`);
}

/** SIGTERM during long streams: they finish, spend is flushed, exit code 0. */
export async function sigtermStreams(env: Env): Promise<ChaosRow> {
  const dbUrl = await env.pg.newDatabase();
  const gateway = await startBinary({ config: configFor(env, dbUrl) });
  const { key, token } = await newKey(gateway, {});
  const tally = new Tally();
  env.upstream.set({ chunks: 8, chunkDelayMs: 250 });
  const streams = Array.from({ length: 5 }, () => tally.call(gateway, key, { stream: true }));
  await Bun.sleep(400);
  const code = gateway.stop("SIGTERM");
  const bodies = await Promise.all(streams.map(async (s) => (await s)?.text() ?? ""));
  const exit = await code;
  env.upstream.reset();
  const complete = bodies.filter((b) => b.includes("[DONE]")).length;
  const spend = await recorded(dbUrl, token);
  tally.expected = complete * CALL_COST;
  const ok = exit === 0 && complete === 5 && close(spend.key, tally.expected) && spend.rows === 5;
  return row("SIGTERM during 5 long streams", tally, spend.key, ok, `exit ${exit}, ${complete}/5 streams complete`);
}
