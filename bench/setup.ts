/** What every benchmark run shares: request bodies, the gateway's config and a fully governed key. */
import postgres from "postgres";
import { governedKey as governedKeyWith } from "../test/helpers/load";
import { type WrkResult, median, roundTrips, roundTripsPerRequest, startLitegate, wrk } from "./lib";
export const BENCH_BODY = JSON.stringify({ model: "bench-model", messages: [{ role: "user", content: "Hello there" }] });
export const GOVERNED_BODY = JSON.stringify({ model: "bench-model", user: "bench-customer", messages: [{ role: "user", content: "Hello there" }] });
export const STREAM_BODY = JSON.stringify({ model: "bench-model", stream: true, messages: [{ role: "user", content: "Hello there" }] });
export const json = { "content-type": "application/json" };
export const bearer = (key: string) => ({ ...json, authorization: `Bearer ${key}` });

export const benchConfig = (upstream: string, general: Record<string, unknown> = {}) => ({
  model_list: [{ model_name: "bench-model", litellm_params: { model: "openai/bench-model", api_base: upstream, api_key: "sk-upstream", input_cost_per_token: 0.000001, output_cost_per_token: 0.000002 } }],
  general_settings: { master_key: "sk-1234", log_level: "warn", ...general },
});

/** The governed key every benchmark run uses: every check on, the customer `bench-customer`. */
export const governedKey = (url: string) => governedKeyWith(url, { model: "bench-model", prefix: "bench" });

/**
 * wrk requests spread over `n` of the scale keys, formatted once when wrk starts (formatting a
 * request per call in Lua costs wrk more CPU than the gateway's check does).
 */
const scaleScript = (n: number) =>
  `wrk.method = "POST"\nwrk.body = ${JSON.stringify(BENCH_BODY)}\nwrk.headers["Content-Type"] = "application/json"\n` +
  `local requests = {}\ninit = function(args)\n  for i = 1, ${n} do\n` +
  `    wrk.headers["Authorization"] = "Bearer sk-bench-" .. (i * 97)\n    requests[i] = wrk.format()\n  end\nend\n` +
  `request = function()\n  return requests[math.random(1, ${n})]\nend\n`;

/**
 * The scale row: 1,000,000 keys in Postgres, traffic spread over 10,000 of them (each looked up once
 * beforehand, so the run measures the steady state with a warm key cache), next to the same instance
 * and script with all traffic on one of those keys: the ratio is what 10,000 keys in use cost.
 */
export async function scaleRun(upstream: string, databaseUrl: string, redisUrl: string, seconds: number) {
  const scale = await startLitegate(benchConfig(upstream, { database_url: databaseUrl, redis_url: redisUrl, key_cache_size: 20000 }));
  const sql = postgres(databaseUrl, { onnotice: () => {} });
  await sql`insert into keys (token, key_name, max_budget, rpm_limit, tpm_limit)
            select encode(sha256(convert_to('sk-bench-' || i, 'UTF8')), 'hex'), 'sk-...' || i, 1e9, 1000000000, 1000000000
            from generate_series(1, 1000000) as i`;
  // A table that has lived with a million rows has been vacuumed and analysed; a fresh bulk load has not.
  await sql`vacuum analyze keys`;
  await sql.end();
  for (let i = 1; i <= 10000; i += 50) {
    await Promise.all(Array.from({ length: 50 }, (_, j) => fetch(`${scale.url}/v1/chat/completions`, {
      method: "POST", headers: bearer(`sk-bench-${(i + j) * 97}`), body: BENCH_BODY,
    }).then((r) => r.arrayBuffer())));
  }
  const url = `${scale.url}/v1/chat/completions`;
  try {
    const oneKey = await wrk(url, {}, BENCH_BODY, seconds, scale.proc.pid, scaleScript(1));
    const before = await roundTrips(scale.url);
    const result: WrkResult = await wrk(url, {}, BENCH_BODY, seconds, scale.proc.pid, scaleScript(10000));
    const roundTripsOf = roundTripsPerRequest(before, await roundTrips(scale.url), result.rps * seconds);
    // The same two scripts alternated in short rounds: the ratio of one pair of runs moves with the machine.
    const rounds = { seconds: 4, oneKey: [] as number[], tenThousand: [] as number[], ratio: 0 };
    for (let round = 0; round < 3; round++) {
      rounds.oneKey.push(Math.round((await wrk(url, {}, BENCH_BODY, rounds.seconds, undefined, scaleScript(1))).rps));
      rounds.tenThousand.push(Math.round((await wrk(url, {}, BENCH_BODY, rounds.seconds, undefined, scaleScript(10000))).rps));
    }
    rounds.ratio = +median(rounds.tenThousand.map((n, i) => n / rounds.oneKey[i]!)).toFixed(2);
    return { ...result, oneKey, ratio: +(result.rps / oneKey.rps).toFixed(2), rounds, roundTrips: roundTripsOf };
  } finally {
    await scale.stop();
  }
}
