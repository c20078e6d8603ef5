import { afterAll, beforeAll, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { type Config, loadConfig, parseConfig } from "../../src/config";
import { MOCK_CONFIG, inProcessGateway } from "../helpers/gateway";
import { tempDir } from "../helpers/services";

type Harness = Awaited<ReturnType<typeof inProcessGateway>>;

const CONFIG = `${MOCK_CONFIG}  data_dir: ${tempDir("test-data")}\n`;
/** What config.yaml holds now: each reload reads it again. */
let file = CONFIG;
let h: Harness;
beforeAll(async () => {
  h = await inProcessGateway(CONFIG, { configSource: (): { config: Config; warnings: string[] } => parseConfig(file, {}), env: {} });
}, 60_000);
afterAll(() => h.close());

async function reload() {
  const response = await h.call("/config/reload", {});
  return { status: response.status, body: (await response.json()) as any };
}

test("a restart-only setting changed is named on every reload until the restart, not only the first", async () => {
  file = CONFIG.replace("master_key: sk-1234", "master_key: sk-rotated");
  const warning = "general_settings.master_key changed: it takes effect at the next restart, the running value is kept";
  expect((await reload()).body.warnings).toEqual([warning]);
  expect((await reload()).body.warnings).toEqual([warning]);
  // The old key is the one that still works.
  expect((await h.call("/key/list", undefined, "sk-1234")).status).toBe(200);
  file = CONFIG;
  expect((await reload()).body.warnings).toEqual([]);
});

test("Redis turned on by litellm_settings.cache_params at a reload is named: it is connected at the next restart", async () => {
  file = `${CONFIG}litellm_settings:\n  cache: true\n  cache_params: {type: redis, host: redis.internal, port: 6380}\n`;
  const { status, body } = await reload();
  expect(status).toBe(200);
  expect(body.warnings).toContain(
    "litellm_settings.cache, litellm_settings.cache_params changed: the Redis it names takes effect at the next restart, the running one is kept",
  );
  file = CONFIG;
  expect((await reload()).body.warnings).toEqual([]);
});

test("router_settings.redis_namespace changed at a reload is named: it takes effect at the next restart", async () => {
  file = `${CONFIG}router_settings:\n  redis_namespace: staging\n`;
  expect((await reload()).body.warnings).toEqual(["router_settings.redis_namespace changed: it takes effect at the next restart, the running value is kept"]);
  file = CONFIG;
  expect((await reload()).body.warnings).toEqual([]);
});

test("database_url written in the file for the DATABASE_URL already in use is no change", async () => {
  const url = "postgres://litegate@db.internal:5432/litegate";
  let text = CONFIG;
  const g = await inProcessGateway(CONFIG, { configSource: () => parseConfig(text, {}), env: { DATABASE_URL: url } });
  try {
    text = CONFIG.replace("master_key: sk-1234", `master_key: sk-1234\n  database_url: ${url}`);
    const same = (await (await g.call("/config/reload", {})).json()) as any;
    expect(same.warnings).toEqual([]);
    text = CONFIG.replace("master_key: sk-1234", "master_key: sk-1234\n  database_url: postgres://other@db.internal/litegate");
    const other = (await (await g.call("/config/reload", {})).json()) as any;
    expect(other.warnings).toEqual(["general_settings.database_url changed: it takes effect at the next restart, the running value is kept"]);
  } finally {
    await g.close();
  }
});

test("a default budget for users or customers turned on at a reload counts what they spent before it", async () => {
  expect((await h.call("/user/new", { user_id: "reload-user", auto_create_key: false })).status).toBe(200);
  const { key } = (await (await h.call("/key/generate", { user_id: "reload-user" })).json()) as { key: string };
  const ask = (extra: Record<string, unknown> = {}) => h.chat(key, extra).then(async (r) => (await r.text(), r.status));
  // Spent while no default applies: the user's and the customer's records are cached with no spend.
  for (let i = 0; i < 3; i++) expect(await ask({ user: "reload-customer" })).toBe(200);
  file = `${CONFIG}litellm_settings:\n  max_internal_user_budget: 0.0000001\n  max_end_user_budget: 0.0000001\n`;
  expect((await reload()).status).toBe(200);
  expect(await ask()).toBe(400);
  // A key of another user, spending as the same customer: the customer's default budget is spent too.
  const { key: other } = (await (await h.call("/key/generate", {})).json()) as { key: string };
  const answer = await h.chat(other, { user: "reload-customer" });
  expect(answer.status).toBe(400);
  expect(await answer.text()).toContain("End User=reload-customer");
  file = CONFIG;
  expect((await reload()).status).toBe(200);
});

test("reloads asked for close together apply in turn: the file as the last one read it stays", async () => {
  // The first takes the slow way (a gateway budget turned on: its spend is written and read first).
  file = `${CONFIG}litellm_settings:\n  max_budget: 1000\n  budget_duration: 1h\n`;
  const first = reload();
  await Bun.sleep(1);
  file = CONFIG.replace("model_list:", "model_list:\n  - model_name: added-later\n    litellm_params:\n      model: mock/added-later\n      input_cost_per_token: 0\n      output_cost_per_token: 0");
  const second = reload();
  expect((await first).status).toBe(200);
  expect((await second).status).toBe(200);
  expect((await h.chat("sk-1234", {}, "added-later")).status).toBe(200);
  file = CONFIG;
  expect((await reload()).status).toBe(200);
});

test("an entry whose api_base names an unset variable is left out with a warning; its model is refused naming the variable until a reload sets it", async () => {
  const entry = "model_list:\n  - model_name: based\n    litellm_params:\n      model: mock/based\n      api_base: os.environ/BASED_API_BASE\n      input_cost_per_token: 0\n      output_cost_per_token: 0";
  file = CONFIG.replace("model_list:", entry);
  const { status, body } = await reload();
  expect(status).toBe(200);
  expect(body.warnings).toHaveLength(1);
  expect(body.warnings[0]).toStartWith("model_list[0].litellm_params.api_base: environment variable BASED_API_BASE is not set; this entry is left out");
  const refused = await h.chat("sk-1234", {}, "based");
  expect(refused.status).toBe(400);
  expect(((await refused.json()) as any).error.message).toBe(
    "Invalid model name passed in model=based: config.yaml's api_base for it names the environment variable BASED_API_BASE, which is not set (the entry was left out when the config was loaded)");
  // The others still serve.
  expect((await h.chat("sk-1234")).status).toBe(200);
  file = `${CONFIG.replace("model_list:", entry)}environment_variables:\n  BASED_API_BASE: http://based.internal/v1\n`;
  expect((await reload()).body.warnings).toEqual([]);
  expect((await h.chat("sk-1234", {}, "based")).status).toBe(200);
  file = CONFIG;
  expect((await reload()).status).toBe(200);
});

test("a reload whose config would serve no model while the running one serves some is refused, and says so", async () => {
  file = "general_settings:\n  master_key: sk-1234\n";
  const { status, body } = await reload();
  expect(status).toBe(400);
  expect(body.error.message).toContain("the new config serves no model");
  expect(body.error.message).toContain("while the running one serves 3");
  expect((await h.chat("sk-1234")).status).toBe(200);
  file = CONFIG;
  expect((await reload()).status).toBe(200);
});

test("a reload whose included file is empty or only comments (as while it is rewritten) is refused, naming the file", async () => {
  const dir = tempDir("include");
  const [path, extra] = [join(dir, "config.yaml"), join(dir, "extra.yaml")];
  writeFileSync(path, `${CONFIG}include: [extra.yaml]\n`);
  writeFileSync(extra, "model_list:\n  - model_name: extra\n    litellm_params: {model: mock/extra, input_cost_per_token: 0, output_cost_per_token: 0}\n");
  const g = await inProcessGateway(CONFIG, { configSource: () => loadConfig(path, {}, { reload: true }), env: {} });
  try {
    expect((await g.call("/config/reload", {})).status).toBe(200);
    expect((await g.chat("sk-1234", {}, "extra")).status).toBe(200);
    for (const empty of ["", "# being rewritten\n"]) {
      writeFileSync(extra, empty);
      const refused = await g.call("/config/reload", {});
      expect(refused.status).toBe(400);
      expect(((await refused.json()) as any).error.message).toContain(`${extra}: an included file holds nothing (it is empty or only comments)`);
      expect((await g.chat("sk-1234", {}, "extra")).status).toBe(200);
    }
  } finally {
    await g.close();
  }
});
