import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { WINDOWS_FILE } from "../../src/paths";
import { type RunningGateway, startBinary } from "../helpers/binary";
import { type RedisServer, sharedPostgres, startRedis, tempDir } from "../helpers/services";

// Without Redis the rpm and tpm windows live in the one instance: a SIGTERM restart within the minute
// forgot them, so a key that had used its rpm_limit of 3 got 2 more 200s right after (6 admitted in one
// minute under a limit of 3), and a tpm limit was made again the same way.

for (const database of ["embedded", "postgres"] as const) describe(`a single instance (no Redis, ${database} database) restarted with SIGTERM mid-minute`, () => {
  let g: RunningGateway | undefined;
  let dir: string;
  let databaseUrl = "";
  const dataDir = () => join(dir, "db");
  const config = () => `
model_list:
  - model_name: fast
    litellm_params: {model: mock/fast, mock_response: "hi there", input_cost_per_token: 0.000001, output_cost_per_token: 0.000002}
general_settings:
  master_key: sk-1234
  data_dir: ${dataDir()}
${databaseUrl ? `  database_url: ${databaseUrl}` : ""}
`;
  const start = async () => {
    g = await startBinary({ config: config(), cwd: dir });
  };
  const restart = async () => {
    expect(await g!.stop("SIGTERM")).toBe(0);
    expect(existsSync(join(dataDir(), WINDOWS_FILE))).toBe(true);
    await start();
    // Counted in this run from now on: a run killed later must not take them again.
    expect(existsSync(join(dataDir(), WINDOWS_FILE))).toBe(false);
  };
  beforeAll(async () => {
    dir = tempDir("restart-windows");
    if (database === "postgres") databaseUrl = await (await sharedPostgres()).newDatabase();
    await start();
  }, 60_000);
  afterAll(async () => {
    await g?.stop();
  });
  const call = async (path: string, body: unknown, key = "sk-1234") => {
    const r = await fetch(g!.url + path, { method: "POST", headers: { authorization: `Bearer ${key}`, "content-type": "application/json" }, body: JSON.stringify(body) });
    return { status: r.status, body: (await r.json()) as any };
  };
  const chat = (key: string) => call("/v1/chat/completions", { model: "fast", messages: [{ role: "user", content: "hi" }], max_tokens: 5 }, key).then((r) => r.status);
  /** All of a test's requests in one 60 s window. */
  const atWindowStart = async () => {
    if (Date.now() % 60_000 > 40_000) await Bun.sleep(60_000 - (Date.now() % 60_000) + 100);
  };

  test("keeps the running minute's rpm window: a key that used its rpm_limit is still refused", async () => {
    await atWindowStart();
    const rpmKey = (await call("/key/generate", { rpm_limit: 3 })).body.key;
    const before = [await chat(rpmKey), await chat(rpmKey), await chat(rpmKey), await chat(rpmKey)];
    expect(before).toEqual([200, 200, 200, 429]);

    await restart();

    // Same minute, same database: the limit of 3 requests per minute has been used.
    const after = [await chat(rpmKey), await chat(rpmKey)];
    expect(after).toEqual([429, 429]);
  }, 120_000);

  test("keeps the tpm window, and the key's user's and team's windows", async () => {
    await atWindowStart();
    const team = (await call("/team/new", { rpm_limit: 4 })).body.team_id;
    const user = (await call("/user/new", { tpm_limit: 40 })).body.user_id;
    const tpmKey = (await call("/key/generate", { tpm_limit: 25 })).body.key;
    const teamKey = (await call("/key/generate", { team_id: team })).body.key;
    const userKey = (await call("/key/generate", { user_id: user })).body.key;
    const untilRefused = async (key: string) => {
      let admitted = 0;
      while ((await chat(key)) === 200) admitted++;
      return admitted;
    };
    expect(await untilRefused(tpmKey)).toBeGreaterThan(0);
    expect(await untilRefused(teamKey)).toBe(4);
    expect(await untilRefused(userKey)).toBeGreaterThan(0);

    await restart();

    expect([await chat(tpmKey), await chat(teamKey), await chat(userKey)]).toEqual([429, 429, 429]);
    // A new key of the team is refused too: the window is the team's.
    expect(await chat((await call("/key/generate", { team_id: team })).body.key)).toBe(429);
  }, 120_000);

  test("a saved file that cannot be read is said, and the windows start afresh", async () => {
    await atWindowStart();
    const rpmKey = (await call("/key/generate", { rpm_limit: 1 })).body.key;
    expect([await chat(rpmKey), await chat(rpmKey)]).toEqual([200, 429]);
    expect(await g!.stop("SIGTERM")).toBe(0);
    mkdirSync(dataDir(), { recursive: true });
    writeFileSync(join(dataDir(), WINDOWS_FILE), '{"format":1,"windows":[["r:k:');
    await start();
    expect(g!.output()).toContain(`${WINDOWS_FILE} could not be read`);
    expect(await chat(rpmKey)).toBe(200);
    expect(existsSync(join(dataDir(), WINDOWS_FILE))).toBe(false);
  }, 120_000);
});

describe("instances sharing Redis restarted with SIGTERM mid-minute", () => {
  let redis: RedisServer;
  let g: RunningGateway | undefined;
  beforeAll(async () => {
    redis = await startRedis();
  }, 60_000);
  afterAll(async () => {
    await g?.stop();
    await redis.stop();
  });

  test("save no windows of their own: Redis holds them, and the restarted instance refuses from it", async () => {
    if (Date.now() % 60_000 > 40_000) await Bun.sleep(60_000 - (Date.now() % 60_000) + 100);
    const dir = tempDir("restart-windows");
    const config = `
model_list:
  - model_name: fast
    litellm_params: {model: mock/fast, mock_response: "hi there"}
general_settings:
  master_key: sk-1234
  data_dir: ${join(dir, "db")}
  database_url: ${await (await sharedPostgres()).newDatabase()}
  redis_url: ${redis.url}
`;
    g = await startBinary({ config, cwd: dir });
    const post = (path: string, body: unknown, key = "sk-1234") =>
      fetch(g!.url + path, { method: "POST", headers: { authorization: `Bearer ${key}` }, body: JSON.stringify(body) });
    const key = ((await (await post("/key/generate", { rpm_limit: 2 })).json()) as { key: string }).key;
    const chat = async () => (await post("/v1/chat/completions", { model: "fast", messages: [{ role: "user", content: "hi" }] }, key)).status;
    expect([await chat(), await chat(), await chat()]).toEqual([200, 200, 429]);
    expect(await g.stop("SIGTERM")).toBe(0);
    expect(existsSync(join(dir, "db", WINDOWS_FILE))).toBe(false);
    g = await startBinary({ config, cwd: dir });
    expect(await chat()).toBe(429);
  }, 120_000);
});
