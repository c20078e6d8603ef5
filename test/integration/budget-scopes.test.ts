import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { type Harness, MOCK_CONFIG, inProcessGateway } from "../helpers/gateway";
import { sharedPostgres } from "../helpers/services";
import { sharedRedis } from "../helpers/shared-redis";

// An admin change to one entity forgets its budget counters only: never those of an entity whose id
// starts with its id and a ':' (customer "acme" and customer "acme:1", user "u" and user "u:2").
const redis = sharedRedis();

async function gateway(counters: "local" | "redis"): Promise<Harness> {
  if (counters === "local") return inProcessGateway(MOCK_CONFIG);
  return redis.instance(MOCK_CONFIG, await (await sharedPostgres()).newDatabase());
}

for (const counters of ["local", "redis"] as const) describe(`budget scopes with ${counters} counters`, () => {
  let h: Harness;
  beforeAll(async () => {
    h = await gateway(counters);
  }, 120_000);
  afterAll(async () => {
    await h.close();
    if (counters === "redis") await h.db.close();
  });
  const admin = async (path: string, body: unknown) => expect((await h.call(path, body)).status).toBe(200);

  test("updating customer acme leaves the spent budget of customer acme:1 (its spend not written yet)", async () => {
    await admin("/customer/new", { user_id: "acme:1", max_budget: 0.000001 });
    await admin("/customer/new", { user_id: "acme", max_budget: 100 });
    expect((await h.chat("sk-1234", { user: "acme:1" })).status).toBe(200);
    expect((await h.chat("sk-1234", { user: "acme:1" })).status).toBe(400);
    await admin("/customer/update", { user_id: "acme", max_budget: 200 });
    await Bun.sleep(50); // the Redis counters are deleted in the background
    expect((await h.chat("sk-1234", { user: "acme:1" })).status).toBe(400);
  });

  test("setting the spend of user u, team t or member (t, u) leaves those of u:2, t:2 and (t, u:2)", async () => {
    const tiny = 0.000001;
    await admin("/team/new", { team_id: "t", team_member_budget: 100 });
    await admin("/team/new", { team_id: "t:2", max_budget: tiny });
    for (const user of ["u", "u:2"]) await admin("/user/new", { user_id: user, auto_create_key: false });
    await admin("/user/update", { user_id: "u:2", max_budget: tiny });
    for (const user of ["u", "u:2"]) await admin("/team/member_add", { team_id: "t", member: { user_id: user, role: "user" } });
    await admin("/team/member_update", { team_id: "t", user_id: "u:2", max_budget_in_team: tiny });
    const spent = [await h.createKey({ user_id: "u:2" }), await h.createKey({ team_id: "t:2" }), await h.createKey({ team_id: "t", user_id: "u:2" })];
    for (const key of spent) expect((await h.chat(key)).status).toBe(200);
    for (const key of spent) expect((await h.chat(key)).status).toBe(400);
    await admin("/user/update", { user_id: "u", spend: 0 });
    await admin("/team/update", { team_id: "t", spend: 0 });
    await admin("/team/member_update", { team_id: "t", user_id: "u", max_budget_in_team: 5 });
    await Bun.sleep(50); // the Redis counters are deleted in the background
    for (const key of spent) expect((await h.chat(key)).status).toBe(400);
  });
});
