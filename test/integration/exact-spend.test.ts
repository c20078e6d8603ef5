import { afterAll, beforeAll, expect, test } from "bun:test";
import OpenAI from "openai";
import postgres from "postgres";
import { type RunningGateway, startOnPostgres } from "../helpers/binary";
import { type Upstream, startUpstream } from "../helpers/upstream";

const IN = 0.0000013;
const OUT = 0.0000027;
let upstream: Upstream;
let gateway: RunningGateway;
let dbUrl: string;

beforeAll(async () => {
  // Streams last about two seconds: an abandoning client's cancel must reach the gateway while the provider
  // is still sending, even when the first burst of connections is slow to set up and the test's own event
  // loop, busy with eighty answers, reads the first chunk late (half-second streams were over by then once).
  upstream = await startUpstream({ chunks: 20, chunkDelayMs: 100 });
  ({ gateway, dbUrl } = await startOnPostgres(`
model_list:
  - model_name: m
    litellm_params: {model: openai/m, api_base: "${upstream.url}", input_cost_per_token: ${IN}, output_cost_per_token: ${OUT}}`));
}, 120_000);
afterAll(async () => {
  await gateway.stop("SIGKILL");
  upstream.stop();
});

test("after mixed plain, streamed and abandoned traffic, stored spend equals Σ usage × price", async () => {
  const created = (await (await fetch(`${gateway.url}/key/generate`, { method: "POST", headers: { authorization: "Bearer sk-1234" }, body: '{"user_id": "exact-user"}' })).json()) as any;
  const client = new OpenAI({ apiKey: created.key, baseURL: `${gateway.url}/v1`, maxRetries: 0 });
  const messages = [{ role: "user" as const, content: "count my tokens" }];
  const plain = Array.from({ length: 30 }, () => client.chat.completions.create({ model: "m", messages, user: "exact-customer" }));
  const streamed = Array.from({ length: 30 }, async () => {
    const stream = await client.chat.completions.create({ model: "m", messages, stream: true });
    for await (const _ of stream);
  });
  const abandoned = Array.from({ length: 20 }, async () => {
    const controller = new AbortController();
    const stream = await client.chat.completions.create({ model: "m", messages, stream: true }, { signal: controller.signal });
    for await (const _ of stream) {
      controller.abort();
      break;
    }
  });
  await Promise.all([...plain, ...streamed, ...abandoned]);
  // The gateway writes spend every 250 ms; wait for the last batch.
  await Bun.sleep(1500);
  const sql = postgres(dbUrl, { onnotice: () => {} });
  const logs = await sql`select status, prompt_tokens, completion_tokens, spend from spend_logs where api_key = ${created.token}`;
  const [key] = await sql`select spend from keys where token = ${created.token}`;
  const [user] = await sql`select spend from users where user_id = 'exact-user'`;
  const [customer] = await sql`select spend from end_users where user_id = 'exact-customer'`;
  await sql.end();
  expect(logs.length).toBe(80);
  let expected = 0;
  for (const row of logs) {
    const cost = row.prompt_tokens * IN + row.completion_tokens * OUT;
    expect(row.spend).toBeCloseTo(cost, 15);
    expected += cost;
  }
  const complete = logs.filter((r) => r.status === "success");
  expect(complete.length).toBe(60);
  for (const row of complete) expect([row.prompt_tokens, row.completion_tokens]).toEqual([10, 20]);
  const partial = logs.filter((r) => r.status === "client_disconnected");
  expect(partial.length).toBe(20);
  for (const row of partial) expect(row.spend).toBeGreaterThan(0);
  expect(key!.spend).toBeCloseTo(expected, 12);
  expect(user!.spend).toBeCloseTo(expected, 12);
  expect(customer!.spend).toBeCloseTo(30 * (10 * IN + 20 * OUT), 12);
});

test("a provider's impossible usage is not trusted: the request is counted from its text, spend never goes down, and every row is written", async () => {
  const created = (await (await fetch(`${gateway.url}/key/generate`, { method: "POST", headers: { authorization: "Bearer sk-1234" }, body: "{}" })).json()) as any;
  const impossible = [
    { prompt_tokens: -1_000_000, completion_tokens: -5 }, // would credit the key $1.30
    { prompt_tokens: 1e30, completion_tokens: 1 }, // an integer column cannot hold it: the batch used to fail forever
    { prompt_tokens: 12, completion_tokens: "3" },
    { prompt_tokens: Number.MAX_VALUE, completion_tokens: 0 },
  ];
  const call = (stream: boolean) =>
    fetch(`${gateway.url}/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${created.key}` },
      body: JSON.stringify({ model: "m", messages: [{ role: "user", content: "count my tokens" }], stream }),
    }).then((r) => r.text().then(() => r.status));
  const statuses: number[] = [];
  try {
    for (const usage of impossible) {
      upstream.set({ usage: usage as any, chunkDelayMs: 0 });
      statuses.push(await call(false), await call(true));
    }
  } finally {
    upstream.reset();
  }
  expect(statuses).toEqual(Array(8).fill(200));
  expect(await call(false)).toBe(200);
  await Bun.sleep(1500);
  const sql = postgres(dbUrl, { onnotice: () => {} });
  const logs = await sql`select prompt_tokens, completion_tokens, spend from spend_logs where api_key = ${created.token}`;
  const [key] = await sql`select spend from keys where token = ${created.token}`;
  await sql.end();
  expect(logs.length).toBe(9);
  for (const row of logs) {
    // Counted from the text: a handful of prompt tokens and the few words of the answer.
    expect(row.prompt_tokens).toBeGreaterThan(0);
    expect(row.prompt_tokens).toBeLessThan(100);
    expect(row.spend).toBeCloseTo(row.prompt_tokens * IN + row.completion_tokens * OUT, 15);
  }
  expect(key!.spend).toBeCloseTo(logs.reduce((sum, row) => sum + row.spend, 0), 12);
});

test("an answer without usage is counted from its text, the completion too; a client that did not ask gets no usage chunk", async () => {
  const created = (await (await fetch(`${gateway.url}/key/generate`, { method: "POST", headers: { authorization: "Bearer sk-1234" }, body: "{}" })).json()) as any;
  const call = (stream: boolean, extra: Record<string, unknown> = {}) =>
    fetch(`${gateway.url}/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${created.key}` },
      body: JSON.stringify({ model: "m", messages: [{ role: "user", content: "count my tokens" }], stream, ...extra }),
    }).then(async (r) => ({ status: r.status, text: await r.text() }));
  let countedUsage: any = null;
  try {
    upstream.set({ omitUsage: true, chunkDelayMs: 0, content: "one two three four five six seven eight nine ten eleven twelve" });
    expect((await call(false)).status).toBe(200);
    expect((await call(true)).status).toBe(200);
    upstream.set({ omitUsage: false });
    const quiet = await call(true);
    expect(quiet.text).toContain("data: [DONE]");
    expect(quiet.text).not.toContain('"usage":{');
    const asked = await call(true, { stream_options: { include_usage: true } });
    expect(asked.text).toContain('"usage":{');
    // Asked for, and the provider sends none: litegate's count, before [DONE], is what is charged.
    upstream.set({ omitUsage: true });
    const counted = await call(true, { stream_options: { include_usage: true } });
    const events = counted.text.split("\n\n").filter(Boolean).map((e) => e.slice("data: ".length));
    expect(events.at(-1)).toBe("[DONE]");
    countedUsage = JSON.parse(events.at(-2)!).usage;
    expect(countedUsage.completion_tokens).toBeGreaterThanOrEqual(12);
  } finally {
    upstream.reset();
  }
  await Bun.sleep(1500);
  const sql = postgres(dbUrl, { onnotice: () => {} });
  const logs = await sql`select prompt_tokens, completion_tokens from spend_logs where api_key = ${created.token} order by start_time`;
  await sql.end();
  expect(logs.length).toBe(5);
  expect({ prompt_tokens: logs[4]!.prompt_tokens, completion_tokens: logs[4]!.completion_tokens }).toEqual({ prompt_tokens: countedUsage.prompt_tokens, completion_tokens: countedUsage.completion_tokens });
  // The same twelve words, counted whether they came whole or streamed.
  expect(logs[0]!.completion_tokens).toBeGreaterThanOrEqual(12);
  expect(logs[1]!.completion_tokens).toBe(logs[0]!.completion_tokens);
});
