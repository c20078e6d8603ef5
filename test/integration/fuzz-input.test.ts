import { describe, expect, test } from "bun:test";
import { type Harness, MOCK_CONFIG, gatewayFor } from "../helpers/gateway";
import { answerFault, generator } from "../helpers/random-input";
import { sharedRedis } from "../helpers/shared-redis";

/**
 * Seeded random input over every admin and inference route: valid bodies with a few fields swapped for
 * values of the wrong type, out of range, malformed or missing. Whatever comes in, the answer is never a
 * 5xx, a refusal is always the OpenAI envelope with its status as the code, and the gateway still lists,
 * reports and serves afterwards, on each database and on two instances sharing Redis with eight lanes
 * at once (admin changes racing each other, the requests they touch and the invalidations between the
 * instances), after which both instances must answer every key the requests made alike. The seeds are
 * fixed, so a failure names a request that can be sent again; with lanes at once, what ran beside it varies.
 */

const ODD_VALUES: readonly unknown[] = [
  null, -1, 0, 1, 0.5, -0.0000001, 1e308, -1e308, 1e-320, 2 ** 53 + 1, 123456789012345,
  "", "  ", "x".repeat(3000), "-1", "0", "1mo", "30d", "abc", "NaN", "1e400", "2024-13-45", "2025-01-01T00:00:00Z",
  "\u0000", "\ud800", "é🚀", "sk-abc", "mock", "u1", "t1", "c1", "b1", "nope",
  true, false, [], {}, [1, "a", null], { a: { b: [1] } }, ["mock"], ["*"], ["u1"], ["sk-abc"], { mock: 1 },
  { mock: { budget_limit: 1, time_period: "1d" } }, { role: "admin", user_id: "u1" }, [{ role: "user", user_id: "u2" }],
];

/**
 * One valid body per route (`KEY` stands for a virtual key made first, `ISSUED` for one of the keys the
 * random requests were given); `n` numbers the ids it creates.
 */
function templates(n: number): Record<string, Record<string, unknown>> {
  const id = (prefix: string) => `${prefix}${n % 40}`;
  const chat = { model: "mock", messages: [{ role: "user", content: "hi" }] };
  return {
    "/key/generate": {
      key_alias: id("alias-"), user_id: "u1", team_id: n % 2 ? "t1" : undefined, max_budget: 1, soft_budget: 0.5, budget_duration: "1d", duration: "1h",
      rpm_limit: 5, tpm_limit: 1000, max_parallel_requests: 2, models: ["mock"], metadata: {}, budget_id: "b1", tags: ["x"], blocked: false,
      model_max_budget: { mock: { budget_limit: 1, time_period: "1d" } }, model_rpm_limit: { mock: 1 }, model_tpm_limit: { mock: 100 },
    },
    "/key/update": { key: "KEY", max_budget: 50, budget_duration: "1mo", rpm_limit: 1000, models: [], metadata: { x: 1 }, spend: 0, duration: "2h", budget_id: "b1" },
    "/key/regenerate": { key: "ISSUED", max_budget: 3, duration: "1d" },
    "/key/delete": { keys: ["ISSUED"], key_aliases: [id("alias-")] },
    "/key/block": { key: "ISSUED" },
    "/key/unblock": { key: "KEY" },
    "/key/info": { keys: ["KEY"] },
    "/user/new": { user_id: id("u"), user_email: "a@b.c", user_role: "internal_user", max_budget: 1, budget_duration: "1d", models: ["mock"], teams: ["t1"], rpm_limit: 1, metadata: {}, auto_create_key: true },
    "/user/update": { user_id: "u1", max_budget: 1, budget_duration: "1d", spend: 0.5, user_role: "proxy_admin", models: ["mock"], metadata: {} },
    "/user/delete": { user_ids: [id("u")] },
    "/team/new": { team_id: id("t"), team_alias: "x", members_with_roles: [{ role: "admin", user_id: "u1" }], max_budget: 1, budget_duration: "1d", rpm_limit: 1, models: ["mock"], metadata: {}, team_member_budget: 1 },
    "/team/update": { team_id: "t1", max_budget: 2, budget_duration: "1mo", models: [], blocked: false, team_member_budget: 0.5, rpm_limit: 2 },
    "/team/member_add": { team_id: "t1", member: { role: "user", user_id: "u2" }, max_budget_in_team: 1 },
    "/team/member_update": { team_id: "t1", user_id: "u2", max_budget_in_team: 1, role: "admin", rpm_limit: 1, tpm_limit: 1 },
    "/team/member_delete": { team_id: "t1", user_id: "u2" },
    "/team/model/add": { team_id: "t1", models: ["mock"] },
    "/team/block": { team_id: id("t") },
    "/team/delete": { team_ids: [id("t")] },
    "/budget/new": { budget_id: id("b"), max_budget: 1, soft_budget: 0.5, budget_duration: "1d", rpm_limit: 1, max_parallel_requests: 1, model_max_budget: { mock: { budget_limit: 1, time_period: "1d" } } },
    "/budget/update": { budget_id: "b1", max_budget: 2, budget_duration: "1mo", rpm_limit: 3 },
    "/budget/delete": { id: id("b") },
    "/budget/info": { budgets: ["b1"] },
    "/customer/new": { user_id: id("c"), max_budget: 1, alias: "x", blocked: false, budget_duration: "1d", default_model: "mock", rpm_limit: 1 },
    "/customer/update": { user_id: "c1", max_budget: 2, budget_id: "b1", blocked: false },
    "/customer/block": { user_ids: [id("c")] },
    "/customer/delete": { user_ids: [id("c")] },
    "/end_user/new": { user_id: id("e"), max_budget: 1 },
    "/v1/chat/completions": { ...chat, user: "c1", max_tokens: 10, stream: false, stream_options: { include_usage: true }, temperature: 1, n: 1, tools: [] },
    "/v1/completions": { model: "mock", prompt: "hi", max_tokens: 5, user: "c2" },
    "/v1/embeddings": { model: "mock", input: "hi", user: "c3" },
    "/v1/messages": { ...chat, max_tokens: 10, stream: false, system: "s" },
    "/v1/messages/count_tokens": chat,
  };
}

/** The routes that change what a key's caller is let do. */
const CHANGES = [
  "/key/delete", "/key/block", "/key/unblock", "/key/update", "/key/regenerate", "/team/delete", "/team/block", "/team/update",
  "/team/model/add", "/user/delete", "/user/update",
];

/** What every listing and report answers once the random requests are done. */
const READS = [
  "/key/list", "/user/list", "/team/list", "/customer/list", "/end_user/list", "/budget/list", "/spend/logs", "/global/spend",
  "/global/spend/report?start_date=2020-01-01&end_date=2100-01-01", "/user/daily/activity?start_date=2020-01-01&end_date=2100-01-01",
  "/health", "/v1/models", "/model/info",
];
/** Lookups of what the random requests may have deleted: found, or not found in the envelope. */
const LOOKUPS = ["/team/info?team_id=t1", "/user/info?user_id=u1", "/customer/info?end_user_id=c1", "/budget/info?budget_id=b1"];

type Call = Harness["call"];

/** Whom the random requests may name: made before them on `call`'s gateway. Gives the key they use. */
async function setUp(call: Call): Promise<string> {
  for (const [path, body] of [
    ["/user/new", { user_id: "u1" }], ["/team/new", { team_id: "t1" }], ["/budget/new", { budget_id: "b1", max_budget: 10 }], ["/customer/new", { user_id: "c1" }],
  ] as const) expect((await call(path, body)).status).toBe(200);
  return ((await (await call("/key/generate", { max_budget: 100 })).json()) as any).key;
}

/**
 * `count` random requests in each lane, the lanes at once, lane `i` drawn from `seed + i` and sent to
 * `calls[i % calls.length]`, on the routes `paths` (all by default). Gives what answered, what was wrong,
 * and the keys `issued` before and by them.
 */
async function sendRandom(calls: Call[], key: string, seed: number, lanes: number, count: number, { paths, issued = [] }: { paths?: string[]; issued?: string[] } = {}) {
  const statuses = new Map<number, number>();
  const faults: string[] = [];
  const lane = async (i: number) => {
    const random = generator(seed + i);
    const call = calls[i % calls.length];
    for (let n = 0; n < count; n++) {
      const all = templates(n);
      const path = random.pick(paths ?? Object.keys(all));
      const named = JSON.stringify(all[path]).replaceAll("KEY", key).replaceAll("ISSUED", issued.length > 0 ? random.pick(issued) : "sk-none");
      const body: Record<string, unknown> = JSON.parse(named);
      const fields = Object.keys(body);
      for (let swaps = Math.floor(random.next() * 3); swaps > 0; swaps--) {
        const field = random.pick(fields);
        if (random.next() < 0.15) delete body[field];
        else body[field] = random.pick(ODD_VALUES);
      }
      if (body.messages && random.next() < 0.3) body.messages = [{ role: random.pick(["user", "system", "assistant", "tool", "x", null]), content: random.pick(ODD_VALUES) }];
      const sent = random.next() < 0.03 ? random.pick(["{", "not json", '{"a":', "[1,2", "null", "[]", "5"]) : JSON.stringify(body);
      const caller = path.startsWith("/v1") && random.next() < 0.5 ? random.pick([key, ...issued.slice(-20)]) : undefined;
      const request = `lane ${i} #${n} POST ${path} ${sent.slice(0, 200)}`;
      let stage = "sending";
      try {
        const response = await call(path, sent, caller);
        stage = `reading its ${response.status} answer`;
        statuses.set(response.status, (statuses.get(response.status) ?? 0) + 1);
        const text = await response.text();
        const fault = answerFault(response.status, text, response.headers.get("content-type"));
        if (fault) faults.push(`${request} → ${response.status} ${fault}: ${text.slice(0, 200)}`);
        if (response.status === 200 && (path === "/key/generate" || path === "/key/regenerate")) issued.push(JSON.parse(text).key);
        // Each instance caches some of the keys the others change.
        if (issued.length > 0 && random.next() < 0.1) {
          stage = "listing models for an issued key after it";
          await (await call("/v1/models", undefined, random.pick(issued))).arrayBuffer();
        }
      } catch (error) {
        // No answer, a broken one or an issued key that is not one: a fault, named with its request and
        // where it broke, where a throw would have ended every lane without naming it.
        faults.push(`${request} → threw ${stage}: ${error instanceof Error ? error.stack : String(error)}`);
      }
    }
  };
  await Promise.all(Array.from({ length: lanes }, (_, i) => lane(i)));
  return { statuses, faults, issued };
}

/** After the random requests: the listings and reports answer, lookups answer or say not found, and a new key is served and charged. */
async function stillServes(h: Harness, others: Harness[] = []) {
  for (const gateway of [h, ...others]) {
    for (const path of READS) {
      const response = await gateway.call(path);
      expect(`${path} → ${response.status}`).toBe(`${path} → 200`);
      await response.json();
    }
    for (const path of LOOKUPS) {
      const response = await gateway.call(path);
      expect(`${path} → ${answerFault(response.status, await response.text()) ?? "fine"}`).toBe(`${path} → fine`);
      expect([200, 404]).toContain(response.status);
    }
  }
  await h.flush();
  const fresh = ((await (await h.call("/key/generate", {})).json()) as any).key as string;
  expect((await h.chat(fresh)).status).toBe(200);
  await h.flush();
  for (const gateway of [h, ...others]) {
    const info = (await (await gateway.call(`/key/info?key=${fresh}`)).json()) as any;
    expect(info.info.spend).toBeGreaterThan(0);
  }
}

/** The mix reached past validation: things were made, served and looked up, not only refused for their shape. */
function expectPastValidation(statuses: Map<number, number>) {
  for (const status of [200, 400, 404]) expect(statuses.get(status) ?? 0).toBeGreaterThan(100);
}

for (const kind of ["pglite", "postgres"] as const) {
  describe(`random input on ${kind}`, () => {
    const g = gatewayFor(kind);

    test("5,000 mutated requests one at a time: no 5xx, every refusal in the envelope, and the gateway still serves", async () => {
      const key = await setUp(g.h.call);
      const { statuses, faults } = await sendRandom([g.h.call], key, kind === "pglite" ? 20261205 : 51220261, 1, 5000);
      expect(faults).toEqual([]);
      expectPastValidation(statuses);
      await stillServes(g.h);
    }, 180_000);
  });
}

describe("random input on two instances sharing Postgres and Redis", () => {
  const redis = sharedRedis();

  test("8 lanes of 600 at once over both: no 5xx, every refusal in the envelope, both answer every key alike after changes through one, and both still serve", async () => {
    const [a, b] = await redis.pair(MOCK_CONFIG);
    const key = await setUp(a.call);
    const { statuses, faults, issued } = await sendRandom([a.call, b.call], key, 1205, 8, 600);
    expect(faults).toEqual([]);
    expectPastValidation(statuses);
    // Every other new key names team t1, which racing lanes delete and make again: in the runs where
    // it ends up deleted early, those fail and 31–37 keys were issued here, against 57–68 otherwise.
    expect(issued.length).toBeGreaterThan(15);

    // What each instance answers a key's caller (its models, or the refusal of a deleted, blocked or
    // expired key): once the changes' invalidations have gone round, the same on both.
    const views = async (h: Harness) => Promise.all([key, ...new Set(issued)].map(async (k) => {
      const response = await h.call("/v1/models", undefined, k);
      return `${k.slice(0, 12)} ${response.status} ${await response.text()}`;
    }));
    /** Both instances' views once they agree, or after 5 s: the invalidations travel through Redis. */
    const settled = async () => {
      let seen = [await views(a), await views(b)];
      for (const end = Date.now() + 5000; !Bun.deepEquals(seen[0], seen[1]) && Date.now() < end; await Bun.sleep(50)) seen = [await views(a), await views(b)];
      expect(seen[1]).toEqual(seen[0]);
      return seen[0];
    };
    await settled();
    // Twenty keys more, some in team t1 and some of user u1 (made again where the first phase deleted them),
    // held by both instances; then random changes through one instance alone.
    for (const [path, body] of [["/team/new", { team_id: "t1" }], ["/team/unblock", { team_id: "t1" }], ["/user/new", { user_id: "u1" }]] as const) await (await a.call(path, body)).arrayBuffer();
    for (let i = 0; i < 20; i++) {
      const made = await a.call("/key/generate", { team_id: i % 2 ? "t1" : undefined, user_id: i % 3 ? "u1" : undefined });
      expect(made.status).toBe(200);
      issued.push(((await made.json()) as any).key);
    }
    const before = await settled();
    const changes = await sendRandom([a.call], key, 4242, 1, 400, { paths: CHANGES, issued });
    expect(changes.faults).toEqual([]);
    const after = await settled();
    expect(after.filter((view, i) => view !== before[i]).length).toBeGreaterThan(5);
    await stillServes(a, [b]);
  }, 180_000);
});
