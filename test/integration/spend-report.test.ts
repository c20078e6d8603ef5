import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import OpenAI from "openai";
import postgres from "postgres";
import { hashKey } from "../../src/auth/keys";
import { type RunningGateway, startBinary, startOnPostgres } from "../helpers/binary";
import { type Upstream, startUpstream } from "../helpers/upstream";
import { until } from "../helpers/until";

const MODELS = (url: string) => `
model_list:
  - model_name: m
    litellm_params: {model: openai/m, api_base: "${url}", api_key: sk-upstream, input_cost_per_token: 0.000001, output_cost_per_token: 0.000002}
  - model_name: m2
    litellm_params: {model: openai/m2, api_base: "${url}", api_key: sk-upstream, input_cost_per_token: 0.000003, output_cost_per_token: 0.000005}
`;

const DAY_MS = 86_400_000;
const dayOf = (ms: number) => new Date(ms).toISOString().slice(0, 10);
const sum = (rows: any[], f: (r: any) => number = (r) => r.spend) => rows.reduce((total, r) => total + f(r), 0);

for (const kind of ["pglite", "postgres"] as const) {
  describe(`/global/spend/report and /user/daily/activity on the binary (${kind})`, () => {
    let upstream: Upstream;
    let gateway: RunningGateway;
    let dbUrl: string | undefined;
    const keys: Record<string, string> = {};
    let rows: any[] = [];
    let today = "";

    const call = async (path: string, key = "sk-1234", body?: unknown) => {
      const response = await fetch(`${gateway.url}${path}`, {
        method: body === undefined ? "GET" : "POST", headers: { authorization: `Bearer ${key}` }, body: body === undefined ? undefined : JSON.stringify(body),
      });
      return { status: response.status, body: (await response.json()) as any };
    };
    const ok = async (path: string, key?: string) => {
      const { status, body } = await call(path, key);
      expect(`${path} ${status}`).toBe(`${path} 200`);
      return body;
    };
    const chat = (key: string, model: string, user?: string) =>
      new OpenAI({ apiKey: key, baseURL: `${gateway.url}/v1`, maxRetries: 0 }).chat.completions.create(
        { model, messages: [{ role: "user", content: "a question" }], ...(user === undefined ? {} : { user }) },
      );

    beforeAll(async () => {
      upstream = await startUpstream();
      if (kind === "postgres") ({ gateway, dbUrl } = await startOnPostgres(MODELS(upstream.url)));
      else gateway = await startBinary({ config: `${MODELS(upstream.url)}general_settings:\n  master_key: sk-1234\n` });
      expect((await call("/team/new", "sk-1234", { team_id: "t-one", team_alias: "Team One" })).status).toBe(200);
      expect((await call("/team/new", "sk-1234", { team_id: "t-two" })).status).toBe(200);
      for (const [user, team] of [["alice", "t-one"], ["bob", "t-two"]]) {
        expect((await call("/user/new", "sk-1234", { user_id: user, teams: [team], auto_create_key: false })).status).toBe(200);
        keys[user!] = (await call("/key/generate", "sk-1234", { user_id: user, team_id: team, key_alias: `${user}-key` })).body.key;
      }
      keys.carol = (await call("/user/new", "sk-1234", { user_id: "carol" })).body.key;
      keys.viewer = (await call("/user/new", "sk-1234", { user_id: "vera", user_role: "proxy_admin_viewer" })).body.key;
      keys.nobody = (await call("/key/generate", "sk-1234", {})).body.key;
      for (const key of Object.values(keys)) expect(key).toStartWith("sk-");
      await chat(keys.alice!, "m", "cust-1");
      await chat(keys.alice!, "m", "cust-1");
      await chat(keys.alice!, "m2", "cust-2");
      await chat(keys.bob!, "m", "cust-1");
      await chat(keys.carol!, "m2");
      upstream.set({ status: 400, errorMessage: "refused" });
      expect(await chat(keys.alice!, "m", "cust-2").then(() => "answered", (error: Error) => error.message)).toContain("refused");
      upstream.reset();
      await until("the six requests are logged", async () => (await ok("/spend/logs")).length === 6, 30_000, 100);
      rows = await ok("/spend/logs");
      today = dayOf(Date.now());
      expect(new Set(rows.map((r) => r.start_time.slice(0, 10)))).toEqual(new Set([today]));
      expect(rows.filter((r) => r.status !== "success").map((r) => [r.user_id, r.spend])).toEqual([["alice", 0]]);
    }, 120_000);
    afterAll(async () => {
      await gateway?.stop("SIGKILL");
      upstream?.stop();
    });

    test("/global/spend/report per team: each team's spend per model and key adds up to its logs and to the keys' /key/info", async () => {
      const [day, ...more] = await ok(`/global/spend/report?start_date=${today}&end_date=${today}`);
      expect(more).toEqual([]);
      expect(day.group_by_day).toBe(`${today}T00:00:00+00:00`);
      const teams = Object.fromEntries(day.teams.map((t: any) => [t.team_name, t]));
      expect(Object.keys(teams).sort()).toEqual(["Team One", "Unassigned Team", "t-two"]);
      for (const [name, team] of [["Team One", "t-one"], ["t-two", "t-two"], ["Unassigned Team", null]] as const) {
        const own = rows.filter((r) => r.team_id === team);
        expect(teams[name].team_id).toBe(team);
        expect(teams[name].total_spend).toBeCloseTo(sum(own), 15);
        expect(sum(teams[name].metadata)).toBeCloseTo(sum(own), 15);
        expect(sum(teams[name].metadata, (m) => m.total_tokens)).toBe(sum(own, (r) => r.total_tokens));
      }
      const alice = teams["Team One"].metadata;
      expect(alice.map((m: any) => m.model).sort()).toEqual(["m", "m2"]);
      expect(new Set(alice.map((m: any) => m.api_key))).toEqual(new Set([hashKey(keys.alice!)]));
      for (const name of ["alice", "bob", "carol"]) {
        const info = await ok(`/key/info?key=${keys[name]}`);
        const inReport = day.teams.flatMap((t: any) => t.metadata).filter((m: any) => m.api_key === hashKey(keys[name]!));
        expect(sum(inReport)).toBeCloseTo(info.info.spend, 15);
      }
    });

    test("/global/spend/report per customer, per key, for one key, one user, and a team and customer together", async () => {
      const range = `start_date=${today}&end_date=${today}`;
      const [byCustomer] = await ok(`/global/spend/report?${range}&group_by=customer`);
      const customers = Object.fromEntries(byCustomer.customers.map((c: any) => [String(c.customer), c.total_spend]));
      expect(Object.keys(customers).sort()).toEqual(["cust-1", "cust-2", "null"]);
      for (const customer of ["cust-1", "cust-2"]) expect(customers[customer]).toBeCloseTo(sum(rows.filter((r) => r.end_user === customer)), 15);

      const perKey = await ok(`/global/spend/report?${range}&group_by=api_key`);
      expect(perKey.map((k: any) => k.total_cost)).toEqual([...perKey.map((k: any) => k.total_cost)].sort((a, b) => b - a));
      for (const key of perKey) {
        const own = rows.filter((r) => r.api_key === key.api_key);
        expect(key.total_cost).toBeCloseTo(sum(own), 15);
        expect(key.total_input_tokens).toBe(sum(own, (r) => r.prompt_tokens));
        expect(key.total_output_tokens).toBe(sum(own, (r) => r.completion_tokens));
      }
      expect(perKey.length).toBe(3);

      const [alice, ...none] = await ok(`/global/spend/report?${range}&api_key=${keys.alice}`);
      expect(none).toEqual([]);
      expect(alice.api_key).toBe(hashKey(keys.alice!));
      const m2 = rows.filter((r) => r.user_id === "alice" && r.model === "m2");
      expect(alice.model_details.find((d: any) => d.model === "m2")).toEqual({ model: "m2", total_cost: sum(m2), total_input_tokens: 10, total_output_tokens: 20 });
      const bob = await ok(`/global/spend/report?${range}&internal_user_id=bob`);
      expect(bob.map((k: any) => k.api_key)).toEqual([hashKey(keys.bob!)]);

      const [both] = await ok(`/global/spend/report?${range}&team_id=t-one&customer_id=cust-1`);
      expect(both.teams_customers.map((g: any) => [g.team_name, g.customer])).toEqual([["Team One", "cust-1"]]);
      expect(both.teams_customers[0].total_spend).toBeCloseTo(sum(rows.filter((r) => r.team_id === "t-one" && r.end_user === "cust-1")), 15);
      // A team_id alone filters the teams rather than being ignored.
      const [oneTeam] = await ok(`/global/spend/report?${range}&team_id=t-two`);
      expect(oneTeam.teams.map((g: any) => g.team_id)).toEqual(["t-two"]);
    });

    test("a date range without the day of the traffic has none of it", async () => {
      const yesterday = dayOf(Date.now() - DAY_MS);
      const tomorrow = dayOf(Date.now() + DAY_MS);
      expect(await ok(`/global/spend/report?start_date=2020-01-01&end_date=${yesterday}`)).toEqual([]);
      expect(await ok(`/global/spend/report?start_date=${tomorrow}&end_date=${tomorrow}&group_by=api_key`)).toEqual([]);
      const activity = await ok(`/user/daily/activity?start_date=2020-01-01&end_date=${yesterday}`);
      expect(activity.results).toEqual([]);
      expect(activity.metadata).toMatchObject({ total_spend: 0, total_api_requests: 0, page: 1, total_pages: 0, has_more: false });
      // The widest range holds it all; a page far past the last is empty.
      expect(sum((await ok("/global/spend/report?start_date=0001-01-01&end_date=9999-12-31&group_by=api_key")), (k) => k.total_cost)).toBeCloseTo(sum(rows), 15);
      expect((await ok("/user/daily/activity?start_date=0001-01-01&end_date=9999-12-31")).metadata.total_api_requests).toBe(6);
      const far = await ok("/user/daily/activity?start_date=0001-01-01&end_date=9999-12-31&page=1000000000&page_size=1000");
      expect(far).toMatchObject({ results: [], metadata: { page: 1000000000, total_pages: 1, has_more: false } });
    });

    test("/user/daily/activity: the day's metrics and its breakdown by model, provider, key and user equal the logs", async () => {
      const { results, metadata } = await ok(`/user/daily/activity?start_date=${today}&end_date=${today}`);
      expect(results.length).toBe(1);
      const [day] = results;
      expect(day.date).toBe(today);
      expect(day.metrics).toMatchObject({ api_requests: 6, successful_requests: 5, failed_requests: 1, cache_read_input_tokens: 0 });
      expect(day.metrics.spend).toBeCloseTo(sum(rows), 15);
      expect(day.metrics.prompt_tokens).toBe(sum(rows, (r) => r.prompt_tokens));
      expect(day.metrics.completion_tokens).toBe(sum(rows, (r) => r.completion_tokens));
      expect(day.metrics.total_tokens).toBe(sum(rows, (r) => r.total_tokens));
      expect(metadata).toMatchObject({ total_api_requests: 6, total_successful_requests: 5, total_failed_requests: 1, page: 1, total_pages: 1, has_more: false });
      expect(metadata.total_spend).toBeCloseTo(sum(rows), 15);
      for (const model of ["m", "m2"]) {
        expect(day.breakdown.models[model].metrics.spend).toBeCloseTo(sum(rows.filter((r) => r.model === model)), 15);
        expect(day.breakdown.models[model].metrics.api_requests).toBe(rows.filter((r) => r.model === model).length);
      }
      expect(Object.keys(day.breakdown.providers)).toEqual(["openai"]);
      expect(day.breakdown.providers.openai.metrics.api_requests).toBe(6);
      const aliceKey = day.breakdown.api_keys[hashKey(keys.alice!)];
      expect(aliceKey.metadata).toEqual({ key_alias: "alice-key", team_id: "t-one" });
      expect(aliceKey.metrics).toMatchObject({ api_requests: 4, successful_requests: 3, failed_requests: 1 });
      expect(aliceKey.metrics.spend).toBeCloseTo((await ok(`/key/info?key=${keys.alice}`)).info.spend, 15);
      expect(day.breakdown.models.m2.api_key_breakdown[hashKey(keys.carol!)].metrics.api_requests).toBe(1);
      expect(Object.keys(day.breakdown.entities).sort()).toEqual(["alice", "bob", "carol"]);

      // Filters by model and by key (sent raw or hashed).
      const m2 = await ok(`/user/daily/activity?start_date=${today}&end_date=${today}&model=m2`);
      expect(Object.keys(m2.results[0].breakdown.models)).toEqual(["m2"]);
      const bob = await ok(`/user/daily/activity?start_date=${today}&end_date=${today}&api_key=${hashKey(keys.bob!)}`);
      expect(bob.metadata.total_api_requests).toBe(1);
    });

    test("/user/daily/activity pages through the day's rows, none repeated or skipped", async () => {
      const first = await ok(`/user/daily/activity?start_date=${today}&end_date=${today}&page_size=1`);
      const pages = first.metadata.total_pages;
      // One row per user, key, model and deployment: alice m, alice m2, bob m, carol m2.
      expect(pages).toBe(4);
      expect(first.metadata.has_more).toBe(true);
      let spend = 0;
      let requests = 0;
      for (let page = 1; page <= pages; page++) {
        const { results, metadata } = await ok(`/user/daily/activity?start_date=${today}&end_date=${today}&page_size=1&page=${page}`);
        expect(results.length).toBe(1);
        expect(metadata.has_more).toBe(page < pages);
        spend += metadata.total_spend;
        requests += metadata.total_api_requests;
      }
      expect(spend).toBeCloseTo(sum(rows), 15);
      expect(requests).toBe(6);
    });

    test("a proxy_admin_viewer reads both; a user's key reads only its own user's activity; other callers get 401", async () => {
      const range = `start_date=${today}&end_date=${today}`;
      expect(await ok(`/global/spend/report?${range}`, keys.viewer)).toEqual(await ok(`/global/spend/report?${range}`));
      expect(await ok(`/user/daily/activity?${range}`, keys.viewer)).toEqual(await ok(`/user/daily/activity?${range}`));
      const own = await ok(`/user/daily/activity?${range}`, keys.carol);
      expect(own.metadata.total_api_requests).toBe(1);
      expect(Object.keys(own.results[0].breakdown.entities)).toEqual(["carol"]);
      expect(own.metadata.total_spend).toBeCloseTo(sum(rows.filter((r) => r.user_id === "carol")), 15);
      // Another user's key or id as a filter finds none of that user's rows; an admin's finds them.
      expect((await ok(`/user/daily/activity?${range}&api_key=${keys.bob}`, keys.carol)).results).toEqual([]);
      expect((await ok(`/user/daily/activity?${range}&user_id=bob`, keys.carol)).results).toEqual([]);
      expect((await ok(`/user/daily/activity?${range}&user_id=carol`, keys.carol)).metadata.total_api_requests).toBe(1);
      expect((await ok(`/user/daily/activity?${range}&user_id=alice`, keys.viewer)).metadata.total_api_requests).toBe(4);
      // A key made without a user_id has a user of its own, with no spend.
      expect((await ok(`/user/daily/activity?${range}`, keys.nobody)).results).toEqual([]);
      expect((await call("/key/update", "sk-1234", { key: keys.nobody, user_id: null })).status).toBe(200);
      for (const [path, key] of [
        [`/global/spend/report?${range}`, keys.alice], [`/global/spend/report?${range}`, keys.nobody],
        [`/user/daily/activity?${range}`, keys.nobody], [`/user/daily/activity?start_date=bad`, keys.nobody], [`/user/daily/activity?${range}`, "sk-unknown"],
      ] as const) {
        const { status, body } = await call(path, key);
        expect(`${path} ${status}`).toBe(`${path} 401`);
        expect(body.error.type).toBe("auth_error");
      }
    });

    test("bad input is a 400 naming the parameter", async () => {
      const cases: Array<[string, string]> = [
        ["/global/spend/report?end_date=2024-01-01", "start_date"],
        ["/global/spend/report?start_date=2024-01-01", "end_date"],
        ["/global/spend/report?start_date=2024-13-01&end_date=2024-12-31", "start_date"],
        ["/global/spend/report?start_date=2024-02-30&end_date=2024-03-01", "start_date"],
        ["/global/spend/report?start_date=0000-01-01&end_date=2024-03-01", "start_date"],
        ["/user/daily/activity?start_date=2024-01-01&end_date=10000-01-01", "end_date"],
        ["/global/spend/report?start_date=2024-01-01&end_date=2024/02/01", "end_date"],
        ["/global/spend/report?start_date=2024-01-01T00:00:00Z&end_date=2024-02-01", "start_date"],
        ["/global/spend/report?start_date=2024-02-01&end_date=2024-01-01", "end_date"],
        ["/global/spend/report?start_date=2024-01-01&end_date=2024-02-01&group_by=model", "group_by"],
        ["/global/spend/report?start_date=2024-01-01&end_date=2024-02-01&user_id=a", "user_id"],
        ["/user/daily/activity?start_date=2024-01-01", "end_date"],
        ["/user/daily/activity?start_date=&end_date=2024-01-01", "start_date"],
        ["/user/daily/activity?start_date=2024-01-02&end_date=2024-01-01", "end_date"],
        ["/user/daily/activity?start_date=2024-01-01&end_date=2024-01-02&page_size=0", "page_size"],
        ["/user/daily/activity?start_date=2024-01-01&end_date=2024-01-02&page_size=1001", "page_size"],
        ["/user/daily/activity?start_date=2024-01-01&end_date=2024-01-02&page_size=x", "page_size"],
        ["/user/daily/activity?start_date=2024-01-01&end_date=2024-01-02&page=0", "page"],
        ["/user/daily/activity?start_date=2024-01-01&end_date=2024-01-02&team_id=t-one", "team_id"],
      ];
      for (const [path, param] of cases) {
        for (const key of ["sk-1234", keys.carol!]) {
          if (key !== "sk-1234" && path.startsWith("/global")) continue;
          const { status, body } = await call(path, key);
          expect(`${path} ${status}`).toBe(`${path} 400`);
          expect(body.error).toMatchObject({ type: "bad_request_error", param, code: "400" });
          expect(body.error.message).toContain(param);
        }
      }
    });

    if (kind === "postgres") {
      test("spend of several days comes per day, and a range of one day has that day's only", async () => {
        const yesterday = dayOf(Date.now() - DAY_MS);
        const sql = postgres(dbUrl!, { onnotice: () => {} });
        await sql`update spend_logs set start_time = start_time - interval '1 day', end_time = end_time - interval '1 day' where user_id = 'bob'`;
        await sql.end();
        const days = await ok(`/global/spend/report?start_date=${yesterday}&end_date=${today}`);
        expect(days.map((d: any) => d.group_by_day.slice(0, 10))).toEqual([yesterday, today]);
        expect(days[0].teams.map((t: any) => [t.team_name, t.total_spend])).toEqual([["t-two", sum(rows.filter((r) => r.user_id === "bob"))]]);
        expect(days[1].teams.map((t: any) => t.team_name).sort()).toEqual(["Team One", "Unassigned Team"]);
        const activity = await ok(`/user/daily/activity?start_date=${yesterday}&end_date=${today}`);
        expect(activity.results.map((d: any) => [d.date, d.metrics.api_requests])).toEqual([[today, 5], [yesterday, 1]]);
        const justYesterday = await ok(`/user/daily/activity?start_date=${yesterday}&end_date=${yesterday}`);
        expect(Object.keys(justYesterday.results[0].breakdown.entities)).toEqual(["bob"]);
      });
    }
  });
}
