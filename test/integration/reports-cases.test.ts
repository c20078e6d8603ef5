import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import postgres from "postgres";
import { hashKey } from "../../src/auth/keys";
import { type RunningGateway, startBinary } from "../helpers/binary";
import { gatewayFor, oneModelConfig } from "../helpers/gateway";
import { sharedPostgres } from "../helpers/services";
import { type Upstream, startUpstream } from "../helpers/upstream";

for (const kind of ["pglite", "postgres"] as const) {
  describe(`/spend/logs filters sent empty (${kind})`, () => {
    const g = gatewayFor(kind);

    test("filter by the empty value, as every other id is filtered, and an empty date is a 400; none lists every row", async () => {
      const { h } = g;
      // LiteLLM's docs make the user "": its keys' rows carry user_id "".
      const nameless = (await g.json("/user/new", { user_id: "" })).body.key;
      const other = (await g.json("/user/new", { user_id: "someone" })).body.key;
      expect((await h.chat(nameless, { user: "cust-a" })).status).toBe(200);
      expect((await h.chat(other, { user: "cust-b" })).status).toBe(200);
      await h.flush();
      const rows = async (query: string) => {
        const { status, body } = await g.json(`/spend/logs?${query}`);
        expect(status).toBe(200);
        return (body as any[]).map((r) => r.user_id);
      };
      expect((await rows("")).sort()).toEqual(["", "someone"]);
      expect(await rows("user_id=")).toEqual([""]);
      for (const name of ["api_key", "team_id", "end_user", "request_id"]) expect(await rows(`${name}=`)).toEqual([]);
      // The daily summary, too: the spend of user "" alone, not everyone's.
      const today = new Date(h.clock.now()).toISOString().slice(0, 10);
      const { body: days } = await g.json(`/spend/logs?start_date=${today}&end_date=${today}&user_id=`);
      expect(Object.keys(days[0].users)).toEqual([""]);
      for (const name of ["start_date", "end_date"]) {
        const { status, body } = await g.json(`/spend/logs?${name}=`);
        expect(status).toBe(400);
        expect(body.error.param).toBe(name);
      }
    });
  });
}

describe("a stream the provider answers with its own error before any text", () => {
  let upstream: Upstream;
  let gateway: RunningGateway;
  let dbUrl: string;
  beforeAll(async () => {
    upstream = await startUpstream({});
    dbUrl = await (await sharedPostgres()).newDatabase();
    gateway = await startBinary({ config: `${oneModelConfig(upstream.url, 0.000001, 0.000002)}  database_url: ${dbUrl}\n` });
  }, 120_000);
  afterAll(async () => {
    await gateway?.stop("SIGKILL");
    upstream?.stop();
  });

  test("costs nothing and is logged a failure, as the same error answered as JSON is; one cut after its text is still charged", async () => {
    const key = ((await (await fetch(`${gateway.url}/key/generate`, { method: "POST", headers: { authorization: "Bearer sk-1234" }, body: "{}" })).json()) as any).key;
    const stream = async () => {
      const response = await fetch(`${gateway.url}/v1/chat/completions`, {
        method: "POST", headers: { authorization: `Bearer ${key}` },
        body: JSON.stringify({ model: "m", stream: true, messages: [{ role: "user", content: "a prompt of several words" }] }),
      });
      await response.text();
      return response.headers.get("x-litellm-call-id")!;
    };
    const overloaded = { error: { message: "The server is overloaded", type: "server_error", code: 529 } };
    upstream.set({ events: [overloaded] });
    const refused = await stream();
    upstream.set({ events: [{ choices: [{ index: 0, delta: { role: "assistant" }, finish_reason: null }] }, overloaded] });
    const refusedAfterRole = await stream();
    upstream.set({ events: [{ choices: [{ index: 0, delta: { content: "Some words" }, finish_reason: null }] }, overloaded] });
    const cut = await stream();
    await Bun.sleep(800);
    const sql = postgres(dbUrl, { onnotice: () => {} });
    const rows = await sql`select request_id, status, prompt_tokens, completion_tokens, spend from spend_logs`;
    const [stored] = await sql`select spend from keys where token = ${hashKey(key)}`;
    await sql.end();
    const row = (id: string) => rows.filter((r) => r.request_id === id).map(({ request_id, ...r }) => r);
    expect(row(refused)).toEqual([{ status: "failure", prompt_tokens: 0, completion_tokens: 0, spend: 0 }]);
    expect(row(refusedAfterRole)).toEqual([{ status: "failure", prompt_tokens: 0, completion_tokens: 0, spend: 0 }]);
    const [charged] = row(cut);
    expect(charged!.status).toBe("stream_failed");
    expect(charged!.prompt_tokens).toBeGreaterThan(0);
    expect(charged!.completion_tokens).toBeGreaterThan(0);
    expect(stored!.spend).toBe(charged!.spend);
  });
});

for (const kind of ["pglite", "postgres"] as const) {
  describe(`/key/info called by a key that is not an admin's (${kind})`, () => {
    const g = gatewayFor(kind);

    test("reads the other keys of its own user, as LiteLLM lets a user read their keys, and no one else's", async () => {
      const mine = (await g.json("/key/generate", { user_id: "reader" })).body.key;
      const alsoMine = (await g.json("/key/generate", { user_id: "reader", key_alias: "second" })).body.key;
      const theirs = (await g.json("/key/generate", { user_id: "another" })).body.key;
      const nobodys = (await g.json("/key/generate", {})).body.key;
      const own = await g.json(`/key/info?key=${alsoMine}`, undefined, mine);
      expect(own.status).toBe(200);
      expect(own.body.info.key_alias).toBe("second");
      for (const other of [theirs, nobodys, "sk-no-such-key"]) {
        const { status, body } = await g.json(`/key/info?key=${other}`, undefined, mine);
        expect(status).toBe(401);
        expect(body.error.type).toBe("auth_error");
      }
      // A key of no user reads only itself.
      expect((await g.json(`/key/info?key=${mine}`, undefined, nobodys)).status).toBe(401);
    });
  });
}
