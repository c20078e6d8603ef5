import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import OpenAI from "openai";
import { type RunningGateway, startBinary, startOnPostgres } from "../helpers/binary";
import { type RedisServer, startRedis, tempDir } from "../helpers/services";
import { until } from "../helpers/until";
import { type Upstream, startUpstream } from "../helpers/upstream";

/**
 * /key/regenerate's grace_period, as LiteLLM has it: the old secret still authenticates, as the key
 * itself (its budget, limits and spend), until the period ends; then it is a 401 like any unknown key.
 * On the compiled binary with the `openai` client: the embedded database, and two instances sharing
 * Postgres and Redis.
 */
let up: Upstream;
let redis: RedisServer;
let solo: RunningGateway;
let shared: RunningGateway[] = [];
// Every request costs 10 × 1e-6 + 20 × 2e-6 = 5e-5 (the upstream's usage).
const COST = 0.00005;

const MODELS = (url: string) => `
model_list:
  - model_name: m
    litellm_params: {model: openai/m, api_base: "${url}", api_key: sk-up, input_cost_per_token: 0.000001, output_cost_per_token: 0.000002}
`;

beforeAll(async () => {
  up = await startUpstream();
  redis = await startRedis();
  solo = await startBinary({ config: `${MODELS(up.url)}general_settings:\n  master_key: sk-1234\n  data_dir: ${tempDir("grace")}\n` });
  const { gateway, dbUrl } = await startOnPostgres(`${MODELS(up.url)}router_settings:\n  redis_url: ${redis.url}\n`);
  const second = await startBinary({
    config: `${MODELS(up.url)}router_settings:\n  redis_url: ${redis.url}\ngeneral_settings:\n  master_key: sk-1234\n  database_url: ${dbUrl}\n`,
  });
  shared = [gateway, second];
}, 120_000);
afterAll(async () => {
  for (const gateway of [solo, ...shared]) await gateway?.stop();
  up?.stop();
  await redis?.stop();
});

const admin = async (gw: RunningGateway, path: string, body?: unknown, key = "sk-1234") => {
  const response = await fetch(gw.url + path, {
    method: body === undefined ? "GET" : "POST",
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: response.status, body: (await response.json()) as any };
};
/** A chat completion's status: 200, or the error's status and message. */
const ask = (gw: RunningGateway, key: string) =>
  new OpenAI({ apiKey: key, baseURL: `${gw.url}/v1`, maxRetries: 0 }).chat.completions.create({ model: "m", messages: [{ role: "user", content: "hi" }] })
    .then(() => "200", (error) => `${error.status} ${error.message}`);
const regenerate = async (gw: RunningGateway, key: string, body: Record<string, unknown> = {}): Promise<string> => {
  const answer = await admin(gw, "/key/regenerate", { key, ...body });
  expect(answer.status).toBe(200);
  return answer.body.key;
};

describe("grace_period (embedded database)", () => {
  test("the old secret works as the key until the grace ends: one budget, one spend, one /key/info; then a 401 like any unknown key", async () => {
    const old = (await admin(solo, "/key/generate", { max_budget: COST * 2.5 })).body.key;
    expect(await ask(solo, old)).toBe("200");
    const renewed = await regenerate(solo, old, { grace_period: "2s" });
    const ends = Date.now() + 2000;
    expect(await ask(solo, old)).toBe("200");
    expect(await ask(solo, renewed)).toBe("200");
    // /key/info of either (asked by the admin, or by the old secret for itself) is the one key.
    const [byOld, byNew, ownInfo] = [await admin(solo, `/key/info?key=${old}`), await admin(solo, `/key/info?key=${renewed}`), await admin(solo, "/key/info", undefined, old)];
    expect(byOld.status).toBe(200);
    expect(byOld.body.info.token).toBe(byNew.body.info.token);
    expect(ownInfo.body.info.token).toBe(byNew.body.info.token);
    await until("the three requests' spend written to the key", async () => (await admin(solo, `/key/info?key=${renewed}`)).body.info.spend >= COST * 3 - 1e-12);
    // The fourth request, by either secret, is past the key's budget.
    expect(await ask(solo, old)).toMatch(/^400 .*ExceededBudget/);
    await admin(solo, "/key/update", { key: renewed, max_budget: 1 });
    while (Date.now() < ends - 300) {
      expect(await ask(solo, old)).toBe("200");
      await Bun.sleep(100);
    }
    await Bun.sleep(Math.max(0, ends - Date.now()) + 50);
    // Refused at once, though its record was held a moment ago.
    const unknown = await ask(solo, "sk-never-made-anywhere");
    expect(unknown).toMatch(/^401 /);
    expect(await ask(solo, old)).toBe(unknown);
    expect(await ask(solo, renewed)).toBe("200");
    expect((await admin(solo, `/key/info?key=${old}`)).status).toBe(404);
  });

  test("blocking the key stops both secrets, unblocking brings both back; deleting it ends both", async () => {
    const old = (await admin(solo, "/key/generate", {})).body.key;
    const renewed = await regenerate(solo, old, { grace_period: "1h" });
    expect(await ask(solo, old)).toBe("200");
    expect((await admin(solo, "/key/block", { key: renewed })).status).toBe(200);
    for (const key of [old, renewed]) expect(await ask(solo, key)).toMatch(/^403 .*blocked/);
    expect((await admin(solo, "/key/unblock", { key: renewed })).status).toBe(200);
    for (const key of [old, renewed]) expect(await ask(solo, key)).toBe("200");
    expect((await admin(solo, "/key/delete", { keys: [renewed] })).status).toBe(200);
    for (const key of [old, renewed]) expect(await ask(solo, key)).toMatch(/^401 /);
  });

  test("a grace past the key's expiry does not outlive the key: both secrets expire with it", async () => {
    const old = (await admin(solo, "/key/generate", { duration: "2s" })).body.key;
    const renewed = await regenerate(solo, old, { grace_period: "1h" });
    expect(await ask(solo, old)).toBe("200");
    await Bun.sleep(2100);
    for (const key of [old, renewed]) expect(await ask(solo, key)).toMatch(/^401 .*Expired Key/);
  });

  test("regenerating again keeps only what that call says: the secret it replaces, for its grace; earlier ones stop", async () => {
    const first = (await admin(solo, "/key/generate", {})).body.key;
    const second = await regenerate(solo, first, { grace_period: "1h" });
    expect(await ask(solo, first)).toBe("200");
    const third = await regenerate(solo, second, { grace_period: "1h" });
    expect(await ask(solo, first)).toMatch(/^401 /);
    expect(await ask(solo, second)).toBe("200");
    expect(await ask(solo, third)).toBe("200");
    const fourth = await regenerate(solo, third);
    for (const key of [first, second, third]) expect(await ask(solo, key)).toMatch(/^401 /);
    expect(await ask(solo, fourth)).toBe("200");
  });

  test("an old secret within its grace taken as a new key's raw value is that key's from then on", async () => {
    const old = (await admin(solo, "/key/generate", { max_budget: 0 })).body.key;
    const renewed = await regenerate(solo, old, { grace_period: "1h" });
    expect(await ask(solo, old)).toMatch(/^400 .*ExceededBudget/);
    expect((await admin(solo, "/key/generate", { key: old })).status).toBe(200);
    expect(await ask(solo, old)).toBe("200");
    expect(await ask(solo, renewed)).toMatch(/^400 .*ExceededBudget/);
  });

  test("a grace_period that is not a duration is a 400 naming it, and nothing changes; left out, null, empty or zero, the old secret stops at once", async () => {
    const key = (await admin(solo, "/key/generate", {})).body.key;
    for (const grace of ["soon", "-1h", "0x", 5, 0, true]) {
      for (const [path, body] of [["/key/regenerate", { key, grace_period: grace }], [`/key/${key}/regenerate`, { grace_period: grace }]] as const) {
        const answer = await admin(solo, path, body);
        expect(`${JSON.stringify(grace)} ${answer.status}`).toBe(`${JSON.stringify(grace)} 400`);
        expect(answer.body.error).toMatchObject({ type: "bad_request_error", param: "grace_period", code: "400" });
        expect(answer.body.error.message).toContain("grace_period");
      }
      expect(await ask(solo, key)).toBe("200");
    }
    let current = key;
    for (const grace of [undefined, null, "", "0s", "0", "0h"]) {
      const next = await regenerate(solo, current, grace === undefined ? {} : { grace_period: grace });
      expect(await ask(solo, current)).toMatch(/^401 /);
      current = next;
    }
  });

  test("LITELLM_KEY_ROTATION_GRACE_PERIOD is the grace when the request gives none; a zero grace_period still stops the old secret at once", async () => {
    const graced = await startBinary({
      config: `${MODELS(up.url)}general_settings:\n  master_key: sk-1234\n  data_dir: ${tempDir("grace-env")}\n`,
      env: { LITELLM_KEY_ROTATION_GRACE_PERIOD: "1h" },
    });
    try {
      let current = (await admin(graced, "/key/generate", {})).body.key;
      for (const body of [{}, { grace_period: null }, { grace_period: "" }]) {
        const next = await regenerate(graced, current, body);
        expect(await ask(graced, current)).toBe("200");
        expect(await ask(graced, next)).toBe("200");
        current = next;
      }
      const last = await regenerate(graced, current, { grace_period: "0s" });
      expect(await ask(graced, current)).toMatch(/^401 /);
      expect(await ask(graced, last)).toBe("200");
    } finally {
      await graced.stop();
    }
  });

  test("LITELLM_KEY_ROTATION_GRACE_PERIOD in the config's environment_variables counts too, read again at a reload", async () => {
    const dir = tempDir("grace-config");
    const config = (grace: string) => `${MODELS(up.url)}environment_variables:\n  LITELLM_KEY_ROTATION_GRACE_PERIOD: "${grace}"\ngeneral_settings:\n  master_key: sk-1234\n  data_dir: ${dir}\n`;
    const graced = await startBinary({ config: config("1h") });
    try {
      const old = (await admin(graced, "/key/generate", {})).body.key;
      const renewed = await regenerate(graced, old);
      expect(await ask(graced, old)).toBe("200");
      writeFileSync(graced.configPath, config("0s"));
      expect((await admin(graced, "/config/reload", {})).status).toBe(200);
      await regenerate(graced, renewed);
      expect(await ask(graced, renewed)).toMatch(/^401 /);
    } finally {
      await graced.stop();
    }
  });

  test("a new_key another key already has is a 409, as /key/generate answers; both keys stay as they were", async () => {
    const [mine, other] = [(await admin(solo, "/key/generate", {})).body.key, (await admin(solo, "/key/generate", {})).body.key];
    for (const [path, body] of [["/key/regenerate", { key: mine, new_key: other }], [`/key/${mine}/regenerate`, { new_key: other }], ["/key/regenerate", { key: mine, new_key: mine }]] as const) {
      const answer = await admin(solo, path, body);
      expect(answer.status).toBe(409);
      expect(answer.body.error).toMatchObject({ type: "conflict_error", param: "new_key", message: "new_key: this key already exists" });
    }
    for (const key of [mine, other]) expect(await ask(solo, key)).toBe("200");
  });
});

describe("grace_period (two instances on Postgres and Redis)", () => {
  test("the old secret works on the other instance too, charged to the key, and stops there when the grace ends", async () => {
    const [a, b] = shared as [RunningGateway, RunningGateway];
    const old = (await admin(a, "/key/generate", {})).body.key;
    // Held by b as a key before the change.
    expect(await ask(b, old)).toBe("200");
    const renewed = await regenerate(a, old, { grace_period: "3s" });
    const ends = Date.now() + 3000;
    expect(await ask(b, old)).toBe("200");
    expect(await ask(a, old)).toBe("200");
    expect(await ask(b, renewed)).toBe("200");
    await until("the four requests' spend written to the key", async () => (await admin(a, `/key/info?key=${renewed}`)).body.info.spend >= COST * 4 - 1e-12);
    expect((await admin(b, `/key/info?key=${old}`)).body.info.token).toBe((await admin(a, `/key/info?key=${renewed}`)).body.info.token);
    await Bun.sleep(Math.max(0, ends - Date.now()) + 50);
    for (const gw of [a, b]) {
      expect(await ask(gw, old)).toMatch(/^401 /);
      expect(await ask(gw, renewed)).toBe("200");
    }
  });

  test("blocking on one instance stops the old secret on the other at once; deleting ends it", async () => {
    const [a, b] = shared as [RunningGateway, RunningGateway];
    const old = (await admin(a, "/key/generate", {})).body.key;
    const renewed = await regenerate(a, old, { grace_period: "1h" });
    expect(await ask(b, old)).toBe("200");
    expect((await admin(a, "/key/block", { key: renewed })).status).toBe(200);
    await until("b refuses the old secret of the blocked key", async () => /^403 /.test(await ask(b, old)), 2000);
    expect((await admin(a, "/key/unblock", { key: renewed })).status).toBe(200);
    await until("b takes the old secret again", async () => (await ask(b, old)) === "200", 2000);
    expect((await admin(a, "/key/delete", { keys: [renewed] })).status).toBe(200);
    await until("b refuses the old secret of the deleted key", async () => /^401 /.test(await ask(b, old)), 2000);
    expect(await ask(b, renewed)).toMatch(/^401 /);
  });
});
