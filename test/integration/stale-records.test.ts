import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { hashKey } from "../../src/auth/keys";
import type { Harness } from "../helpers/gateway";
import { sharedPostgres } from "../helpers/services";
import { sharedRedis } from "../helpers/shared-redis";
import { until } from "../helpers/until";

// A cached key holds its records (the key, its user, team and membership) with the spend they had when
// read; counters count from there. When an admin change on one instance starts a budget's counter
// again, another instance serving the key must make the new counter from records read after its own
// unwritten spend is in the database: made from the cached records, it counted from the spend they
// had when first read (here: nothing), and the budget could be spent again.

const CONFIG = `
model_list:
  - model_name: priced
    litellm_params:
      model: mock/priced
      mock_response: "one two three"
      input_cost_per_token: 0.000001
      output_cost_per_token: 0.000002
general_settings:
  master_key: sk-1234
`;

const redis = sharedRedis();

describe("a change on one instance to a budget another instance's cached key is spending", () => {
  let a: Harness;
  let b: Harness;
  beforeAll(async () => {
    const url = await (await sharedPostgres()).newDatabase();
    a = await redis.instance(CONFIG, url);
    b = await redis.instance(CONFIG, url);
  }, 120_000);
  afterAll(async () => {
    for (const h of [a, b]) await h.close();
    for (const h of [a, b]) await h.db.close();
  });

  const admin = async (path: string, body: unknown) => {
    const answer = await a.call(path, body);
    expect(answer.status).toBe(200);
    return (await answer.json()) as Record<string, unknown>;
  };
  const ask = (h: Harness, key: string) => h.chat(key, { max_tokens: 5 }, "priced").then(async (r) => (await r.text(), r.status));

  /** The change reached the second instance (Redis pub/sub): it forgot the records it concerns. */
  const reached = (cached: number) => until("the change on the second instance", () => b.gateway.auth.cachedPrincipals() < cached, 5000, 2);

  /** Holds a row of the key's locked (a spend write to it waits) until the returned function is called. */
  async function lockKeyRow(key: string, table: "keys" | "key_model_spend" = "keys"): Promise<() => Promise<void>> {
    let release!: () => void;
    const held = new Promise<void>((done) => (release = done));
    let locked!: () => void;
    const isLocked = new Promise<void>((done) => (locked = done));
    const lock = a.db.transaction(async (tx) => {
      expect(await tx.query(`select 1 from ${table} where token = $1 for update`, [hashKey(key)])).toHaveLength(1);
      locked();
      await held;
    });
    await isLocked;
    return async () => {
      release();
      await lock;
    };
  }

  test("is counted from the spend already made, including what that instance had not written", async () => {
    await admin("/team/new", { team_id: "stale-team" });
    await admin("/user/new", { user_id: "stale-user", auto_create_key: false });
    await admin("/team/member_add", { team_id: "stale-team", member: { role: "user", user_id: "stale-user" }, max_budget_in_team: 1 });
    const { key } = (await admin("/key/generate", { user_id: "stale-user", team_id: "stale-team" })) as { key: string };

    // Twenty requests on the second instance: its cached records say nothing was spent, its counter and
    // its unwritten spend (flushed once a minute here) say twenty requests' worth.
    for (let i = 0; i < 20; i++) expect(await ask(b, key)).toBe(200);

    // The second instance's write is held up (its key's row locked) while the first sets the member's
    // budget below what was spent: a budget set again, whose counter starts again from the stored spend.
    const release = await lockKeyRow(key);
    const cached = b.gateway.auth.cachedPrincipals();
    await admin("/team/member_update", { team_id: "stale-team", user_id: "stale-user", max_budget_in_team: 0.00001 });
    await reached(cached);
    const during = Promise.all(Array.from({ length: 5 }, () => ask(b, key)));
    await Bun.sleep(300);
    await release();
    const after = [];
    for (let i = 0; i < 5; i++) after.push(await ask(b, key), await ask(a, key));

    const statuses = [...(await during), ...after];
    expect(statuses.filter((status) => status === 200)).toEqual([]);
    for (const h of [a, b]) await h.flush();
    const [member] = await a.db.query("select spend from team_memberships where team_id = 'stale-team' and user_id = 'stale-user'");
    const [keyRow] = await a.db.query("select spend from keys where token = $1", [hashKey(key)]);
    expect(Number(member!.spend)).toBeCloseTo(Number(keyRow!.spend), 12);
    expect(Number(keyRow!.spend)).toBeGreaterThan(0.00001);
  }, 60_000);

  test("a key blocked there is refused here while this instance's spend is still being written", async () => {
    const { key } = (await admin("/key/generate", {})) as { key: string };
    for (let i = 0; i < 3; i++) expect(await ask(b, key)).toBe(200);
    await b.flush(); // its spend on the model has a row from now on
    for (let i = 0; i < 3; i++) expect(await ask(b, key)).toBe(200);
    // Not the key's own row: blocking the key writes that one.
    const release = await lockKeyRow(key, "key_model_spend");
    const cached = b.gateway.auth.cachedPrincipals();
    await admin("/key/block", { key });
    await reached(cached);
    const during = Promise.all(Array.from({ length: 3 }, () => ask(b, key)));
    await Bun.sleep(300);
    await release();
    expect(await during).toEqual([403, 403, 403]);
    expect(await ask(b, key)).toBe(403);
  }, 60_000);
});
