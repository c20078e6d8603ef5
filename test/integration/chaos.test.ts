import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import {
  type Env, concurrentFlushes, environment, killNine, postgresStopped, redisKilled, sigtermStreams, upstreamFaults,
} from "../../chaos/scenarios";

/** The chaos scenarios as tests (the Postgres outage is shorter here than in `npm run chaos`). */
let env: Env;
beforeAll(async () => {
  env = await environment();
}, 120_000);
afterAll(async () => {
  await env.redis.stop();
  await env.pg.stop();
  env.upstream.stop();
});

describe("faults survived, books exact", () => {
  for (const [name, run] of [
    ["Redis killed under load and restarted", () => redisKilled(env)],
    ["Postgres stopped under load and restarted", () => postgresStopped(env, 5000)],
    ["provider faults", () => upstreamFaults(env)],
    ["SIGTERM during long streams", () => sigtermStreams(env)],
    ["kill -9 under load loses at most one flush interval", () => killNine(env)],
    ["two instances flushing one team's spend", () => concurrentFlushes(env, 2)],
    ["three instances flushing one team's spend", () => concurrentFlushes(env, 3)],
  ] as const) {
    test(name, async () => {
      const row = await run();
      expect(`${row.verdict}: ${row.notes} ${JSON.stringify(row.failed)} expected ${row.expectedSpend} recorded ${row.recordedSpend}`).toStartWith("pass");
    }, 120_000);
  }
});
