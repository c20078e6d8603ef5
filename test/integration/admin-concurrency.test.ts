import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import postgres from "postgres";
import { isForeignKeyViolation } from "../../src/admin/common";
import { openDatabase } from "../../src/db";
import { MOCK_CONFIG, inProcessGateway } from "../helpers/gateway";
import { sharedPostgres } from "../helpers/services";

/**
 * Admin changes arriving together: on real Postgres (a pool of connections, so transactions really
 * overlap) and on the embedded database (one connection, statements of different calls interleaved),
 * each answers 2xx or a clear 4xx, never a 500, and what is stored stays consistent.
 */
type Harness = Awaited<ReturnType<typeof inProcessGateway>>;
type Call = [name: string, call: () => Promise<{ status: number }>];

/** Runs the calls `width` at a time and returns every status with its call's name. */
async function together(calls: Call[], width: number): Promise<string[]> {
  const seen: string[] = [];
  for (let i = 0; i < calls.length; i += width) {
    const batch = calls.slice(i, i + width);
    const statuses = await Promise.all(batch.map(([, call]) => call().then((r) => r.status)));
    batch.forEach(([name], j) => seen.push(`${name} ${statuses[j]}`));
  }
  return seen;
}

const serverErrors = (seen: string[]) => seen.filter((s) => Number(s.split(" ").at(-1)) >= 500);

for (const kind of ["postgres", "pglite"] as const) describe(`concurrent admin changes on ${kind}`, () => {
  let h: Harness;
  let db: Awaited<ReturnType<typeof openDatabase>> | undefined;
  beforeAll(async () => {
    db = kind === "postgres" ? await openDatabase({ url: await (await sharedPostgres()).newDatabase(), dataDir: "" }) : undefined;
    h = await inProcessGateway(MOCK_CONFIG, { db });
  }, 120_000);
  afterAll(async () => {
    await h.close();
    await db?.close();
  });

  async function post(path: string, body: unknown): Promise<{ status: number; body: any }> {
    const response = await h.call(path, body);
    return { status: response.status, body: await response.json() };
  }

  test("members added, changed and removed at once: no deadlock reaches the client, and the three records of membership agree", async () => {
    const team = (await post("/team/new", { team_alias: "busy" })).body;
    const users = ["ann", "bob", "cy", "dee", "eve"];
    const calls: Call[] = [];
    for (let i = 0; i < 120; i++) {
      const user = users[i % users.length]!;
      const other = users[(i * 3 + 1) % users.length]!;
      if (i % 3 === 0) calls.push(["member_add", () => post("/team/member_add", { team_id: team.team_id, member: { user_id: user, role: "user" }, max_budget_in_team: i })]);
      if (i % 3 === 1) calls.push(["member_delete", () => post("/team/member_delete", { team_id: team.team_id, user_id: other })]);
      if (i % 3 === 2) calls.push(["member_update", () => post("/team/member_update", { team_id: team.team_id, user_id: user, max_budget_in_team: i })]);
      if (i % 10 === 0) calls.push(["user/new", () => post("/user/new", { user_id: other, teams: [team.team_id], auto_create_key: false })]);
    }
    const seen = await together(calls, 24);
    expect(serverErrors(seen)).toEqual([]);
    expect(seen.filter((s) => s.endsWith(" 200")).length).toBeGreaterThan(calls.length / 3);

    const info = (await (await h.call(`/team/info?team_id=${team.team_id}`)).json()) as any;
    const listed = info.team_info.members_with_roles.map((m: any) => m.user_id).sort();
    const memberships = info.team_memberships.map((m: any) => m.user_id).sort();
    expect(listed).toEqual(memberships);
    for (const user of users) {
      const teams = ((await (await h.call(`/user/info?user_id=${user}`)).json()) as any).user_info?.teams ?? [];
      expect(`${user} ${teams.includes(team.team_id)}`).toBe(`${user} ${memberships.includes(user)}`);
    }
  }, 60_000);

  test("teams and users deleted while members are added: no user lists a team that is gone, no team a user that is gone", async () => {
    const calls: Call[] = [];
    const teams: string[] = [];
    const users: string[] = [];
    for (let i = 0; i < 16; i++) {
      const team = `gone-${kind}-${i}`;
      const user = `leaving-${kind}-${i}`;
      teams.push(team);
      users.push(user);
      expect((await post("/team/new", { team_id: team })).status).toBe(200);
      expect((await post("/user/new", { user_id: user, auto_create_key: false })).status).toBe(200);
      calls.push(["member_add", () => post("/team/member_add", { team_id: team, member: { user_id: `stays-${kind}-${i}`, role: "user" } })]);
      calls.push(["team/delete", () => post("/team/delete", { team_ids: [team] })]);
      calls.push(["member_add", () => post("/team/member_add", { team_id: `kept-${kind}`, member: { user_id: user, role: "user" } })]);
      calls.push(["user/delete", () => post("/user/delete", { user_ids: [user] })]);
    }
    expect((await post("/team/new", { team_id: `kept-${kind}` })).status).toBe(200);
    const seen = await together(calls, 8);
    expect(serverErrors(seen)).toEqual([]);
    const listing = await h.db.query("select user_id from users where teams && $1::text[]", [teams]);
    expect(listing.map((r) => r.user_id)).toEqual([]);
    // A member_add that came after its user's delete made the user again (as LiteLLM's does): listed, and there.
    const existing = new Set((await h.db.query("select user_id from users where user_id = any($1::text[])", [users])).map((r) => r.user_id as string));
    const kept = (await h.db.query("select members_with_roles from teams where team_id = $1", [`kept-${kind}`]))[0]!;
    const listed = (kept.members_with_roles as Array<{ user_id: string }>).map((m) => m.user_id).filter((id) => users.includes(id));
    expect(listed.filter((id) => !existing.has(id))).toEqual([]);
  }, 60_000);

  test("a budget deleted while customers and keys take it: each delete is 200 or a 400 saying who uses it, and nothing loses its budget", async () => {
    const seen: string[] = [];
    const remove = (budget: string) => async () => {
      const answer = await post("/budget/delete", { id: budget });
      if (answer.status === 400 && !/does not exist|still used by/.test(answer.body.error.message)) throw new Error(answer.body.error.message);
      return answer;
    };
    for (let round = 0; round < 20; round++) {
      const budget = `shared-${round}`;
      expect((await post("/budget/new", { budget_id: budget, max_budget: 1 })).status).toBe(200);
      // The deletes' check and the others' inserts interleave: each delete sees the budget unused or used.
      seen.push(...(await together([
        ["key/generate", () => post("/key/generate", { key_alias: `budgeted-${round}`, budget_id: budget })],
        ["budget/delete", remove(budget)],
        ["customer/new", () => post("/customer/new", { user_id: `cust-${round}`, budget_id: budget })],
        ["budget/delete", remove(budget)],
        ["key/generate", () => post("/key/generate", { budget_id: budget })],
      ], 5)));
    }
    expect(serverErrors(seen)).toEqual([]);
    for (let round = 0; round < 20; round++) {
      const customer = await h.call(`/customer/info?end_user_id=cust-${round}`);
      if (customer.status === 200) expect((await post("/budget/info", { budgets: [`shared-${round}`] })).body.length).toBe(1);
    }
  }, 60_000);

  test("the database's refusal to delete a budget still in use is recognised, whichever row holds it", async () => {
    // The race above ends in this refusal when an insert lands between the delete's check and the delete.
    await post("/budget/new", { budget_id: "held", max_budget: 1 });
    const database = db ?? h.db;
    for (const [holder, insert] of [
      ["key", () => database.query("insert into keys (token, key_name, budget_id) values ('held-key', 'sk-...held', 'held')")],
      ["customer", () => database.query("insert into end_users (user_id, budget_id) values ('held-customer', 'held')")],
    ] as const) {
      await insert();
      const refusal = await database.query("delete from budgets where budget_id = 'held'").then(() => null, (error) => error);
      expect(`${holder}: ${isForeignKeyViolation(refusal)}`).toBe(`${holder}: true`);
      await database.query("delete from keys where token = 'held-key'");
      await database.query("delete from end_users where user_id = 'held-customer'");
    }
  });

  test("a key changed while it is regenerated: the change lands or answers 404, never a 500", async () => {
    let raw = (await post("/key/generate", {})).body.key as string;
    const calls: Call[] = [];
    for (let i = 0; i < 60; i++) {
      calls.push(["key/update", () => post("/key/update", { key: raw, max_budget: i })]);
      calls.push(["key/regenerate", async () => {
        const answer = await post("/key/regenerate", { key: raw });
        if (answer.status === 200) raw = answer.body.key;
        return answer;
      }]);
    }
    const seen = await together(calls, 12);
    expect(serverErrors(seen)).toEqual([]);
    expect(seen.filter((s) => s.startsWith("key/update") && !/ (200|404)$/.test(s))).toEqual([]);
  }, 60_000);
});

describe("a statement of its own in a deadlock (Postgres)", () => {
  // An admin update is one statement; a spend flush locking the same rows in another order can make
  // Postgres abort it. It rolled back whole, so it runs again rather than answering a 500.
  test("is run again once the other transaction is through, not failed", async () => {
    const url = await (await sharedPostgres()).newDatabase();
    const db = await openDatabase({ url, dataDir: "" });
    const other = postgres(url, { max: 1, onnotice: () => {} });
    try {
      await db.exec("create table pair (id int primary key, v int not null)");
      await db.exec("insert into pair values (1, 0), (2, 0)");
      // The other session never gives up first: the statement's session is the one Postgres aborts.
      await other`set deadlock_timeout = '20s'`;
      const holding = Promise.withResolvers<void>();
      const proceed = Promise.withResolvers<void>();
      const transaction = other.begin(async (sql) => {
        await sql`update pair set v = v + 10 where id = 2`;
        holding.resolve();
        await proceed.promise;
        await sql`update pair set v = v + 10 where id = 1`;
      });
      await holding.promise;
      // Takes row 1, then waits for row 2, which the transaction holds while it waits for row 1.
      const statement = db.query("update pair set v = v + 1 where id in (1, 2)");
      await Bun.sleep(200);
      proceed.resolve();
      await transaction;
      await statement;
      expect(await db.query("select id, v from pair order by id")).toEqual([{ id: 1, v: 11 }, { id: 2, v: 11 }]);
    } finally {
      await other.end();
      await db.close();
    }
  }, 30_000);
});
