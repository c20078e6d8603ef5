import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { openDatabase } from "../../src/db";
import { MOCK_CONFIG, inProcessGateway } from "../helpers/gateway";
import { sharedPostgres } from "../helpers/services";

type Harness = Awaited<ReturnType<typeof inProcessGateway>>;

describe("team memberships on Postgres", () => {
  let h: Harness;
  beforeAll(async () => {
    const db = await openDatabase({ url: await (await sharedPostgres()).newDatabase(), dataDir: "" });
    h = await inProcessGateway(MOCK_CONFIG, { db });
  }, 120_000);
  afterAll(async () => {
    await h.close();
    await h.db.close();
  });

  async function json(path: string, body?: unknown, key = "sk-1234") {
    const response = await h.call(path, body, key);
    return { status: response.status, body: (await response.json()) as any };
  }
  const chat = (key: string) => json("/v1/chat/completions", { model: "mock", messages: [{ role: "user", content: "hi" }] }, key);

  test("ids holding ':' keep two memberships apart: each has its own budget row and its own spend counter", async () => {
    await json("/team/new", { team_id: "ca:x" });
    await json("/team/new", { team_id: "ca" });
    // Team "ca:x" with member "y", and team "ca" with member "x:y": once the same budget id and counter.
    await json("/team/member_add", { team_id: "ca:x", member: { role: "user", user_id: "y" }, max_budget_in_team: 0.000001 });
    await json("/team/member_add", { team_id: "ca", member: { role: "user", user_id: "x:y" }, max_budget_in_team: 100 });
    const memberships = await h.db.query(
      "select m.team_id, m.user_id, b.max_budget from team_memberships m join budgets b using (budget_id) where m.team_id in ('ca', 'ca:x') order by m.team_id");
    expect(memberships).toEqual([{ team_id: "ca", user_id: "x:y", max_budget: 100 }, { team_id: "ca:x", user_id: "y", max_budget: 0.000001 }]);

    const small = (await json("/key/generate", { team_id: "ca:x", user_id: "y" })).body.key;
    const large = (await json("/key/generate", { team_id: "ca", user_id: "x:y" })).body.key;
    // What the other membership spends is not counted against this one's cap.
    expect((await chat(large)).status).toBe(200);
    expect((await chat(large)).status).toBe(200);
    expect((await chat(small)).status).toBe(200); // a first request passes: its estimate need not fit
    const refused = await chat(small);
    expect(refused.status).toBe(400);
    expect(refused.body.error.message).toContain("User=y in Team=ca:x");
    await h.flush();
    const spend = await h.db.query("select team_id, spend from team_memberships where team_id in ('ca', 'ca:x') order by team_id");
    expect(spend[0]!.spend).toBeCloseTo(2 * spend[1]!.spend, 12);

    // Changing the member's budget changes that member's row only.
    await json("/team/member_update", { team_id: "ca:x", user_id: "y", max_budget_in_team: 5 });
    expect((await chat(small)).status).toBe(200);
    const [other] = await h.db.query("select b.max_budget from team_memberships m join budgets b using (budget_id) where m.team_id = 'ca'");
    expect(other!.max_budget).toBe(100);
  });

  test("ids with control characters are refused", async () => {
    for (const [path, body] of [
      ["/team/new", { team_id: "a\u001fb" }], ["/user/new", { user_id: "u\u0001" }], ["/customer/new", { user_id: "c\u007f" }],
      ["/budget/new", { budget_id: "b\n" }],
    ] as const) {
      const answer = await json(path, body);
      expect(answer.status).toBe(400);
      expect(answer.body.error.message).toContain("control character");
    }
  });

  test("a member removed from a team can no longer spend the team's budget with the keys they hold in it", async () => {
    await json("/team/new", { team_id: "leave-t" });
    await json("/team/member_add", { team_id: "leave-t", member: { role: "user", user_id: "leaver" }, max_budget_in_team: 0.000001 });
    await json("/team/member_add", { team_id: "leave-t", member: { role: "user", user_id: "stayer" } });
    const teamKey = (await json("/key/generate", { team_id: "leave-t", user_id: "leaver" })).body.key;
    const ownKey = (await json("/key/generate", { user_id: "leaver" })).body.key;
    const colleague = (await json("/key/generate", { team_id: "leave-t", user_id: "stayer" })).body.key;
    expect((await chat(teamKey)).status).toBe(200);
    expect((await chat(teamKey)).status).toBe(400); // over the member's cap

    const removed = await json("/team/member_delete", { team_id: "leave-t", user_id: "leaver" });
    expect(removed.status).toBe(200);
    expect(removed.body.blocked_keys).toHaveLength(1);
    const after = await chat(teamKey);
    expect(after.status).toBe(403);
    // Their own key and the team's other members' keys are untouched.
    expect((await chat(ownKey)).status).toBe(200);
    expect((await chat(colleague)).status).toBe(200);
    expect((await json(`/key/info?key=${teamKey}`)).body.info.blocked).toBe(true);
    // An admin can give the key back on purpose.
    await json("/key/unblock", { key: teamKey });
    expect((await chat(teamKey)).status).toBe(200);
  });

  test("deleting a team takes it off its members' teams; deleting a user takes them off their teams' members", async () => {
    await json("/team/new", { team_id: "gone-t" });
    await json("/team/new", { team_id: "kept-t" });
    for (const team of ["gone-t", "kept-t"]) await json("/team/member_add", { team_id: team, member: [{ role: "user", user_id: "gm-1" }, { role: "user", user_id: "gm-2" }] });
    expect((await json("/team/delete", { team_ids: ["gone-t"] })).status).toBe(200);
    expect((await json("/user/info?user_id=gm-1")).body.user_info.teams).toEqual(["kept-t"]);
    expect((await json("/user/list?team=gone-t")).body.total ?? 0).toBe(0);

    expect((await json("/user/delete", { user_ids: ["gm-1"] })).status).toBe(200);
    const team = (await json("/team/info?team_id=kept-t")).body.team_info;
    expect(team.members_with_roles.map((m: any) => m.user_id)).toEqual(["gm-2"]);
    // A team made again under the deleted id has no members.
    await json("/team/new", { team_id: "gone-t" });
    expect((await json("/user/info?user_id=gm-2")).body.user_info.teams).toEqual(["kept-t"]);
  });

  test("a team's max_budget set again after none counts what was spent meanwhile; the same budget_duration sent again keeps the period", async () => {
    await json("/team/new", { team_id: "again-t", max_budget: 1 });
    const key = (await json("/key/generate", { team_id: "again-t" })).body.key;
    expect((await chat(key)).status).toBe(200);
    await json("/team/update", { team_id: "again-t", max_budget: null });
    for (let i = 0; i < 4; i++) expect((await chat(key)).status).toBe(200);
    await h.flush();
    const spent = (await json("/team/info?team_id=again-t")).body.team_info.spend;
    // A budget of what has been spent: the next request is refused.
    await json("/team/update", { team_id: "again-t", max_budget: spent });
    const refused = await chat(key);
    expect(refused.status).toBe(400);
    expect(refused.body.error.message).toContain("Team=again-t over budget");

    await json("/team/update", { team_id: "again-t", max_budget: 1, budget_duration: "1d" });
    const reset = (await json("/team/info?team_id=again-t")).body.team_info.budget_reset_at;
    h.clock.advance(60_000);
    await json("/team/update", { team_id: "again-t", budget_duration: "24h" });
    expect((await json("/team/info?team_id=again-t")).body.team_info.budget_reset_at).toBe(reset);
    await json("/team/update", { team_id: "again-t", budget_duration: "2d" });
    expect((await json("/team/info?team_id=again-t")).body.team_info.budget_reset_at).not.toBe(reset);
  });

  test("a customer's budget set again after none, its own or a shared one, counts what was spent meanwhile", async () => {
    const key = (await json("/key/generate", {})).body.key;
    const chatAs = (user: string) => json("/v1/chat/completions", { model: "mock", user, messages: [{ role: "user", content: "hi" }] }, key);
    const spentBy = async (user: string) => {
      await h.flush();
      return (await json(`/customer/info?end_user_id=${user}`)).body.spend as number;
    };
    await json("/budget/new", { budget_id: "back-shared", max_budget: 1 });
    await json("/customer/new", { user_id: "back-c1", budget_id: "back-shared" });
    await json("/customer/new", { user_id: "back-c2", max_budget: 1 });
    for (const [user, off, on] of [
      ["back-c1", () => json("/budget/update", { budget_id: "back-shared", max_budget: null }), (spent: number) => json("/budget/update", { budget_id: "back-shared", max_budget: spent })],
      ["back-c2", () => json("/customer/update", { user_id: "back-c2", max_budget: null }), (spent: number) => json("/customer/update", { user_id: "back-c2", max_budget: spent })],
    ] as const) {
      expect((await chatAs(user)).status).toBe(200);
      await off();
      for (let i = 0; i < 3; i++) expect((await chatAs(user)).status).toBe(200);
      await on(await spentBy(user));
      expect(`${user} ${(await chatAs(user)).status}`).toBe(`${user} 400`);
    }
  });

  test("a customer whose id starts another's (a, a:b) never changes the other's own budget", async () => {
    const other = (await json("/customer/new", { user_id: "pre:fix", max_budget: 5 })).body;
    await json("/customer/new", { user_id: "pre", budget_id: other.budget_id });
    await json("/customer/update", { user_id: "pre", max_budget: 1 });
    const [row] = await h.db.query("select max_budget from budgets where budget_id = $1", [other.budget_id]);
    expect(row!.max_budget).toBe(5);
    expect((await json("/customer/info?end_user_id=pre")).body.budget_id).not.toBe(other.budget_id);
  });
});
