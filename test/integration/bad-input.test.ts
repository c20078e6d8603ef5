import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { MOCK_CONFIG, inProcessGateway } from "../helpers/gateway";

type Harness = Awaited<ReturnType<typeof inProcessGateway>>;
let h: Harness;
beforeAll(async () => {
  h = await inProcessGateway(MOCK_CONFIG.replace("general_settings:\n", "general_settings:\n  max_request_size_mb: 0.01\n"));
}, 120_000);
afterAll(() => h.close());

const raw = (path: string, body: string | Uint8Array, headers: Record<string, string> = {}) =>
  h.gateway.app.handle(new Request(`http://litegate.test${path}`, { method: "POST", headers: { authorization: "Bearer sk-1234", ...headers }, body }));

async function envelope(response: Response) {
  const body = (await response.json()) as any;
  expect(body.error).toBeDefined();
  expect(typeof body.error.message).toBe("string");
  expect(body.error.code).toBe(String(response.status));
  return body.error;
}

describe("bad input is refused cleanly", () => {
  test("invalid JSON, wrong types, missing fields", async () => {
    for (const [path, body, status] of [
      ["/v1/chat/completions", "{", 400], ["/v1/chat/completions", "[]", 400], ["/v1/chat/completions", '"text"', 400],
      ["/v1/chat/completions", '{"model": 5, "messages": []}', 400], ["/v1/chat/completions", '{"model": "mock"}', 400],
      ["/v1/chat/completions", '{"model": "mock", "messages": "hi"}', 400], ["/v1/chat/completions", '{"model": "mock", "messages": [1]}', 400],
      ["/v1/chat/completions", '{"model": "mock", "messages": [{"role":"user","content":"x"}], "max_tokens": -1}', 400],
      ["/v1/chat/completions", '{"model": "mock", "messages": [{"role":"user","content":"x"}], "stream": "yes"}', 400],
      ["/v1/embeddings", '{"model": "mock"}', 400], ["/v1/completions", '{"model": "mock"}', 400],
      ["/v1/embeddings", '{"model": "mock", "input": []}', 400], ["/v1/embeddings", '{"model": "mock", "input": {}}', 400], ["/v1/embeddings", '{"model": "mock", "input": 5}', 400],
      ["/key/generate", '{"max_budget": 1e400}', 400], ["/key/generate", '{"max_budget": NaN}', 400], ["/key/generate", '{"rpm_limit": 99999999999}', 400],
      ["/key/generate", '{"budget_duration": "1 fortnight"}', 400], ["/key/generate", '{"model_max_budget": {"m": {"budget_limit": -1}}}', 400],
      ["/team/new", '{"members_with_roles": "everyone"}', 400], ["/customer/new", "{}", 400], ["/budget/info", '{"budgets": "b"}', 400],
    ] as const) {
      const response = await raw(path, body);
      expect(`${path} ${body} → ${response.status}`).toBe(`${path} ${body} → ${status}`);
      await envelope(response);
    }
    const wrongModel = await envelope(await raw("/v1/chat/completions", '{"model": 5, "messages": [{"role":"user","content":"x"}]}'));
    expect(wrongModel).toMatchObject({ message: "model: must be a model name (got 5)", param: "model" });
    expect((await envelope(await raw("/v1/chat/completions", '{"messages": [{"role":"user","content":"x"}]}'))).message).toBe("model: required, a model name");
  });

  test("numbers sent as text are held to the same bounds as numbers, and the error names the field", async () => {
    for (const [body, param] of [
      ['{"max_budget": "-5"}', "max_budget"], ['{"max_budget": "1e999"}', "max_budget"], ['{"max_budget": "0x10"}', "max_budget"],
      ['{"rpm_limit": "1.5"}', "rpm_limit"], ['{"tpm_limit": "99999999999"}', "tpm_limit"], ['{"rpm_limit": "Infinity"}', "rpm_limit"],
      ['{"max_parallel_requests": "-1"}', "max_parallel_requests"], ['{"model_rpm_limit": {"m": "Infinity"}}', "model_rpm_limit.m"],
      ['{"model_max_budget": {"m": {"budget_limit": "-1"}}}', "model_max_budget.m.budget_limit"],
      // Either spelling of the budget, a bad limit beside it: the limit is named, not the other spelling's budget.
      ['{"model_max_budget": {"m": {"budget_limit": 100, "rpm_limit": 2.5}}}', "model_max_budget.m.rpm_limit"],
      ['{"model_max_budget": {"m": {"max_budget": 100, "rpm_limit": -1}}}', "model_max_budget.m.rpm_limit"],
      ['{"model_max_budget": {"m": {"max_budget": -1}}}', "model_max_budget.m.max_budget"],
    ] as const) {
      const response = await raw("/key/generate", body);
      expect(`${body} → ${response.status}`).toBe(`${body} → 400`);
      expect((await envelope(response)).param).toBe(param);
    }
    const team = await raw("/team/new", '{"rpm_limit": "-3"}');
    expect((await envelope(team)).param).toBe("rpm_limit");
    const long = await envelope(await raw("/team/new", JSON.stringify({ team_id: "t".repeat(600) })));
    expect(long.message).toStartWith("team_id: must be a non-empty string of at most 512 characters");
    const page = await h.gateway.app.handle(new Request("http://litegate.test/key/list?page=0", { headers: { authorization: "Bearer sk-1234" } }));
    expect(page.status).toBe(400);
    await envelope(page);
    // Text within bounds is a number once stored.
    const key = (await (await raw("/key/generate", '{"max_budget": " 7.5 ", "rpm_limit": "12"}')).json()) as any;
    const info = (await (await h.gateway.app.handle(new Request(`http://litegate.test/key/info?key=${key.key}`, { headers: { authorization: "Bearer sk-1234" } }))).json()) as any;
    expect([info.info.max_budget, info.info.rpm_limit]).toEqual([7.5, 12]);
  });

  test("durations of zero or past a century are refused naming the field (a far date used to be a 500)", async () => {
    for (const [path, body, param] of [
      ["/key/generate", '{"budget_duration": "999999mo"}', "budget_duration"], ["/key/generate", '{"duration": "0s"}', "duration"],
      ["/key/generate", '{"budget_duration": "5300w"}', "budget_duration"],
      ["/key/generate", '{"model_max_budget": {"m": {"budget_limit": 1, "time_period": "1201mo"}}}', "model_max_budget.m.time_period"],
      ["/team/new", '{"budget_duration": "0d"}', "budget_duration"], ["/budget/new", '{"budget_id": "far", "budget_duration": "40000d"}', "budget_duration"],
      ["/customer/new", '{"user_id": "far", "max_budget": 1, "budget_duration": "999999h"}', "budget_duration"],
    ] as const) {
      const response = await raw(path, body);
      expect(`${path} ${body} → ${response.status}`).toBe(`${path} ${body} → 400`);
      expect((await envelope(response)).param).toBe(param);
    }
    expect((await raw("/key/generate", '{"duration": "1200mo", "budget_duration": "36500d"}')).status).toBe(200);
  });

  test("spend log dates: only real calendar days with four-digit years are taken", async () => {
    const get = (query: string) => h.gateway.app.handle(new Request(`http://litegate.test/spend/logs?${query}`, { headers: { authorization: "Bearer sk-1234" } }));
    for (const query of ["start_date=%2B099999-01-01T00:00:00Z", "end_date=-000001-01-01T00:00:00Z", "start_date=275760-09-13", "start_date=2024-02-30", "start_date=0", "end_date=tomorrow"]) {
      const response = await get(query);
      expect(`${query} → ${response.status}`).toBe(`${query} → 400`);
      expect((await envelope(response)).param).toBe(query.split("=")[0]!);
    }
    for (const query of ["start_date=2024-02-29", "start_date=2026-01-02T03:04:05Z&end_date=2026-01-03T00:00:00.123%2B02:00", "end_date=2026-12-31 23:59"]) {
      expect(`${query} → ${(await get(query)).status}`).toBe(`${query} → 200`);
    }
  });

  test("a next reset given outright must be a date the database can store", async () => {
    const team = (await (await raw("/team/new", "{}")).json()) as any;
    await raw("/budget/new", '{"budget_id": "reset-me"}');
    await raw("/user/new", '{"user_id": "reset-me", "auto_create_key": false}');
    const key = (await (await raw("/key/generate", "{}")).json()) as any;
    for (const [path, id] of [["/team/update", { team_id: team.team_id }], ["/budget/update", { budget_id: "reset-me" }],
      ["/user/update", { user_id: "reset-me" }], ["/key/update", { key: key.key }]] as const) {
      for (const value of ["garbage", "+099999-01-01T00:00:00Z", "2024-02-30", 5]) {
        const response = await raw(path, JSON.stringify({ ...id, budget_reset_at: value }));
        expect(`${path} ${value} → ${response.status}`).toBe(`${path} ${value} → 400`);
        expect((await envelope(response)).param).toBe("budget_reset_at");
      }
      const ok = await raw(path, JSON.stringify({ ...id, budget_reset_at: "2030-01-02T03:04:05Z" }));
      expect(`${path} → ${ok.status}`).toBe(`${path} → 200`);
    }
  });

  /** Everything an admin call could write, to check that a refused call wrote nothing. */
  const written = async () => JSON.stringify(await h.db.query(
    `select (select json_agg(k order by token) from (select token, user_id, model_max_budget from keys) k) as keys,
       (select json_agg(b order by budget_id) from (select budget_id, model_max_budget from budgets) b) as budgets,
       (select json_agg(user_id order by user_id) from end_users) as customers, (select json_agg(u order by user_id) from (select user_id, teams, model_max_budget from users) u) as users,
       (select json_agg(t order by team_id) from (select team_id, members_with_roles, model_max_budget from teams) t) as teams,
       (select json_agg(m order by team_id, user_id) from (select team_id, user_id, role from team_memberships) m) as memberships`));
  const refusedUnwritten = async (path: string, body: unknown, message: string, param: string) => {
    const before = await written();
    const response = await raw(path, JSON.stringify(body));
    const call = `${path} ${JSON.stringify(body)}`;
    expect(`${call} → ${response.status}`).toBe(`${call} → 400`);
    const error = await envelope(response);
    expect(`${call} → ${error.param} ${error.message}`).toStartWith(`${call} → ${param} ${param}: ${message}`);
    expect(`${call} wrote ${await written()}`).toBe(`${call} wrote ${before}`);
  };

  test("each model's budget in model_max_budget must be an object, wherever it is taken; {} is (as in LiteLLM)", async () => {
    const key = (await (await raw("/key/generate", "{}")).json()) as any;
    await raw("/budget/new", '{"budget_id": "shape-b"}');
    await raw("/customer/new", '{"user_id": "shape-c"}');
    await raw("/user/new", '{"user_id": "shape-mu", "auto_create_key": false}');
    await raw("/team/new", '{"team_id": "shape-mt"}');
    // A number, text, a list, a flag or null was taken as a budget of nothing (or of the text's characters).
    const ids = { "/key/generate": {}, "/key/update": { key: key.key }, "/budget/new": { budget_id: "shape-b2" },
      "/budget/update": { budget_id: "shape-b" }, "/customer/new": { user_id: "shape-c2" }, "/customer/update": { user_id: "shape-c" },
      "/user/new": { user_id: "shape-u2", auto_create_key: false }, "/user/update": { user_id: "shape-mu" }, "/team/new": { team_id: "shape-t2" }, "/team/update": { team_id: "shape-mt" } };
    for (const [path, id] of Object.entries(ids)) {
      for (const entry of [1, "0.5", [0.5], true, null]) {
        await refusedUnwritten(path, { ...id, model_max_budget: { "gpt-4o": entry } }, `must be an object (got ${JSON.stringify(entry)})`, "model_max_budget.gpt-4o");
      }
    }
    const empty = (await (await raw("/key/generate", '{"model_max_budget": {"gpt-4o": {}}}')).json()) as any;
    expect(empty.model_max_budget).toEqual({ "gpt-4o": { budget_limit: null, time_period: null } });
  });

  test("teams and members_with_roles must be lists: text is not a list of its characters, nor \"\" an empty one", async () => {
    for (const teams of ["qr", "", { q: 1 }]) {
      await refusedUnwritten("/user/new", { user_id: "shape-u", teams, auto_create_key: false }, "must be an array", "teams");
    }
    for (const members_with_roles of ["", "everyone", { user_id: "shape-u" }]) {
      await refusedUnwritten("/team/new", { team_id: "shape-t", members_with_roles }, "must be an array", "members_with_roles");
    }
    await refusedUnwritten("/team/new", { team_id: "shape-t", members_with_roles: ["shape-u"] }, 'must be an object (got "shape-u")', "members_with_roles[0]");
  });

  test("a list of members to add is checked item by item, as one member is, naming the item", async () => {
    const team = (await (await raw("/team/new", "{}")).json()) as any;
    const add = (member: unknown) => ({ team_id: team.team_id, member });
    await refusedUnwritten("/team/member_add", add({ role: "boss", user_id: "pm-2" }), 'must be "admin" or "user" (got "boss")', "member.role");
    await refusedUnwritten("/team/member_add", add([{ role: "boss", user_id: "pm-2" }]), 'must be "admin" or "user" (got "boss")', "member[0].role");
    await refusedUnwritten("/team/member_add", add([{ user_id: "pm-1" }, { role: "boss", user_id: "pm-2" }]), "must be", "member[1].role");
    await refusedUnwritten("/team/member_add", add([{ user_id: "pm-1" }, "pm-2"]), 'must be an object (got "pm-2")', "member[1]");
    await refusedUnwritten("/team/member_add", add("pm-2"), 'must be an object or an array of objects (got "pm-2")', "member");
    expect((await raw("/team/member_add", JSON.stringify(add([{ role: "admin", user_id: "pm-1" }, { user_id: "pm-2" }])))).status).toBe(200);
    expect(await h.db.query("select user_id, role from team_memberships where team_id = $1 order by user_id", [team.team_id]))
      .toEqual([{ user_id: "pm-1", role: "admin" }, { user_id: "pm-2", role: "user" }]);
  });

  test("the tolerant reading of JSON (trailing commas, comments) is for bodies up to 1 MB; larger ones must be strict", async () => {
    const small = await raw("/key/generate", '{"key_alias": "tolerant", # a comment\n "max_budget": 1,}');
    expect(small.status).toBe(200);
    const { parseJsonBody } = await import("../../src/http/lenient-json");
    const big = `{${Array.from({ length: 120_000 }, (_, i) => `"k${i}": 1,`).join("")}}`;
    expect(big.length).toBeGreaterThan(1_000_000);
    const refused = parseJsonBody(big);
    expect(refused.ok).toBe(false);
    expect(!refused.ok && refused.message).toContain("a body over 1 MB must be strict JSON");
    expect(parseJsonBody(big.replace(/,}$/, "}")).ok).toBe(true);
  });

  test("oversized bodies get 413", async () => {
    const big = JSON.stringify({ model: "mock", messages: [{ role: "user", content: "x".repeat(20_000) }] });
    const response = await raw("/v1/chat/completions", big);
    expect(response.status).toBe(413);
    await envelope(response);
  });

  test("deeply nested JSON and invalid UTF-8", async () => {
    const deep = `{"model": "mock", "messages": [{"role": "user", "content": "x"}], "x": ${"[".repeat(100_000)}${"]".repeat(100_000)}}`;
    const nested = await raw("/v1/chat/completions", deep.slice(0, 9000));
    expect(nested.status).toBeLessThan(500);
    const utf8 = await raw("/v1/chat/completions", new Uint8Array([123, 34, 109, 34, 58, 34, 0xff, 0xfe, 34, 125]));
    expect(utf8.status).toBe(400);
    expect((await envelope(utf8)).message).toContain("UTF-8");
  });

  test("admin bodies: nesting past 64 levels, a null for a flag, repeated ids and a malformed path escape are no 500", async () => {
    const nestedMetadata = (levels: number) => `{"metadata": ${'{"a":'.repeat(levels - 1)}1${"}".repeat(levels - 1)}}`;
    expect((await raw("/key/generate", nestedMetadata(64))).status).toBe(200);
    const deep = await raw("/key/generate", nestedMetadata(65));
    expect(deep.status).toBe(400);
    expect((await envelope(deep)).message).toContain("nested too deeply");
    // A bracket inside a string is text, not nesting.
    expect((await raw("/key/generate", `{"metadata": {"note": "${"[".repeat(100)}"}}`)).status).toBe(200);

    const key = (await (await raw("/key/generate", "{}")).json()) as any;
    const team = (await (await raw("/team/new", "{}")).json()) as any;
    await raw("/key/block", JSON.stringify({ key: key.key }));
    expect((await raw("/key/update", JSON.stringify({ key: key.key, blocked: null }))).status).toBe(200);
    expect((await h.chat(key.key)).status).toBe(200);
    expect((await raw("/team/update", JSON.stringify({ team_id: team.team_id, blocked: null }))).status).toBe(200);
    expect((await raw("/key/regenerate", JSON.stringify({ key: key.key, blocked: null }))).status).toBe(200);

    const blocked = await raw("/customer/block", JSON.stringify({ user_ids: ["twice-c", "twice-c"] }));
    expect(blocked.status).toBe(200);
    expect(((await blocked.json()) as any).blocked_users).toEqual(["twice-c"]);

    // Lists past their bound say so: members one call adds, a key's models.
    const crowd = Array.from({ length: 1001 }, () => ({}));
    const tooMany = await raw("/team/new", JSON.stringify({ members_with_roles: crowd }));
    expect(tooMany.status).toBe(400);
    expect((await envelope(tooMany)).message).toContain("an array of at most 1000 items");
    const models = await raw("/key/generate", JSON.stringify({ models: crowd.map(() => "m") }));
    expect((await envelope(models)).message).toContain("models: must be an array of at most 1000 items");

    for (const path of ["/key/%ZZ/regenerate", "/key/%/regenerate", "/key/%E0%A4%A/regenerate"]) {
      const response = await raw(path, "{}");
      expect(`${path} ${response.status}`).toBe(`${path} 400`);
      expect((await envelope(response)).message).toContain("percent-escape");
    }
  });

  test("text Postgres cannot store (NUL, lone surrogates) is refused with a 400 and never reaches a spend batch", async () => {
    const json = { "content-type": "application/json" };
    for (const user of ["cust\u0000omer", "cust\udfffomer", "\ud800"]) {
      const chat = await raw("/v1/chat/completions", JSON.stringify({ model: "mock", messages: [{ role: "user", content: "x" }], user }), json);
      expect(chat.status).toBe(400);
      const error = await envelope(chat);
      expect(error.param).toBe("user");
      expect(error.message).toStartWith("user: must be valid Unicode text without the NUL character");
    }
    for (const [path, body, param] of [
      ["/customer/new", { user_id: "c\u0000" }, "user_id"],
      ["/key/generate", { key_alias: "a\u0000b" }, "key_alias"],
      ["/key/generate", { metadata: { a: "\ud800" } }, "metadata.a"],
      ["/user/new", { user_id: "u1", metadata: { notes: ["ok", "n\u0000ul"] } }, "metadata.notes[1]"],
      ["/team/new", { team_alias: "\udc00" }, "team_alias"],
    ] as const) {
      const response = await raw(path, JSON.stringify(body), json);
      expect(`${path} ${JSON.stringify(body)} → ${response.status}`).toBe(`${path} ${JSON.stringify(body)} → 400`);
      expect((await envelope(response)).message).toStartWith(`${param}: must be valid Unicode text`);
    }
    // Paired surrogates are ordinary text (an emoji), escaped or not.
    const emoji = await raw("/customer/new", '{"user_id": "rocket-\\ud83d\\ude80", "alias": "🚀"}', json);
    expect(emoji.status).toBe(200);
    // A NUL in a query parameter reaches the database as a lookup: refused there, still not a 500.
    const info = await h.gateway.app.handle(new Request("http://litegate.test/customer/info?end_user_id=a%00b", { headers: { authorization: "Bearer sk-1234" } }));
    expect(info.status).toBe(400);
    await envelope(info);
    // Message content is only forwarded, never stored: a NUL there is the provider's business.
    const content = await raw("/v1/chat/completions", JSON.stringify({ model: "mock", messages: [{ role: "user", content: "a\u0000b" }], user: "rocket-\ud83d\ude80" }), json);
    expect(content.status).toBe(200);
    // And what was accepted is written: the spend batch is not held up by anything above.
    await h.gateway.spend.flush();
    expect(h.gateway.spend.backlog()).toBe(0);
  });

  test(`a generated fuzz run of 10,000 requests over every route answers no 5xx`, async () => {
    const routes = ["/v1/chat/completions", "/chat/completions", "/v1/completions", "/v1/embeddings", "/key/generate", "/key/update", "/key/delete",
      "/key/block", "/key/regenerate", "/user/new", "/user/update", "/user/delete", "/team/new", "/team/update", "/team/member_add",
      "/team/member_update", "/team/member_delete", "/team/block", "/budget/new", "/budget/update", "/budget/info", "/budget/delete",
      "/customer/new", "/customer/update", "/customer/delete", "/customer/block", "/config/reload"];
    const fields = ["model", "messages", "max_budget", "budget_duration", "duration", "rpm_limit", "tpm_limit", "max_parallel_requests", "user_id",
      "team_id", "key", "keys", "user_ids", "team_ids", "member", "models", "metadata", "budget_id", "max_budget_in_team", "user", "stream",
      "input", "prompt", "model_max_budget", "model_rpm_limit", "spend", "blocked", "user_role", "key_alias", "budgets", "id", "max_tokens"];
    let seed = 12345;
    const rand = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
    const pick = <T>(list: readonly T[]) => list[Math.floor(rand() * list.length)]!;
    const value = (depth = 0): unknown => {
      switch (Math.floor(rand() * 12)) {
        case 0: return null;
        case 1: return rand() < 0.5;
        case 2: return Math.floor(rand() * 2000) - 1000;
        case 3: return pick([1e308, -1e308, 0.1, -0.0, 2147483648, 1e-12, 3.5]);
        case 4: return pick(["", "mock", "30s", "1mo", "10x", "sk-1234", "sk-", "'; drop table keys; --", "\u0000", "a\ud800", "\udfff", "💥".repeat(50), "x".repeat(3000)]);
        case 5: return depth < 3 ? Array.from({ length: Math.floor(rand() * 4) }, () => value(depth + 1)) : [];
        case 6: return depth < 3 ? Object.fromEntries(Array.from({ length: Math.floor(rand() * 4) }, () => [pick(fields), value(depth + 1)])) : {};
        case 7: return [{ role: "user", content: "hello" }];
        case 8: return { role: pick(["user", "admin"]), user_id: pick(["u1", "u2", ""]) };
        default: return pick(["mock", "gpt-4o", "nope"]);
      }
    };
    const statuses: Record<number, number> = {};
    for (let i = 0; i < 10_000; i++) {
      const body = Object.fromEntries(Array.from({ length: 1 + Math.floor(rand() * 5) }, () => [pick(fields), value()]));
      let text = JSON.stringify(body);
      if (rand() < 0.05) text = text.slice(0, Math.floor(rand() * text.length));
      const response = await raw(pick(routes), text);
      statuses[response.status] = (statuses[response.status] ?? 0) + 1;
      if (response.status >= 500) throw new Error(`5xx for ${text}: ${await response.text()}`);
      await response.arrayBuffer();
    }
    process.stderr.write(`fuzz statuses: ${JSON.stringify(statuses)}\n`);
    expect(Object.keys(statuses).some((s) => Number(s) >= 500)).toBe(false);
    expect(Object.values(statuses).reduce((a, b) => a + b, 0)).toBe(10_000);
    // Whatever was accepted, its spend is writable: no request left a batch the database refuses.
    await h.gateway.spend.flush();
    expect(h.gateway.spend.backlog()).toBe(0);
  }, 120_000);
});
