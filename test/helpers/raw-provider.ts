import { afterAll, beforeAll } from "bun:test";
import postgres from "postgres";
import { type RunningGateway, started, startOnPostgres } from "./binary";

/**
 * For test files with a provider of their own (a raw Bun server answering as the case needs): the binary
 * on Postgres in front of it, a client on the binary's database, the chunks such a provider streams, and
 * the log rows a key's requests leave.
 */

/** A chat completion chunk of a stream, as JSON text. */
export const chatChunk = (delta: object, finish: string | null = null) =>
  JSON.stringify({ id: "c1", object: "chat.completion.chunk", created: 1, model: "m", choices: [{ index: 0, delta, finish_reason: finish }] });

/** A stream's usage chunk, as JSON text. */
export const usageChunk = (prompt: number, completion: number) =>
  JSON.stringify({ id: "c1", object: "chat.completion.chunk", created: 1, model: "m", choices: [], usage: { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion } });

export interface OnPostgres {
  readonly gateway: RunningGateway;
  readonly sql: postgres.Sql;
}

/**
 * For the test file that calls it: before its tests, `start` starts the provider and gives the config
 * (every section but general_settings), and the binary starts on a new database with it; after them the
 * binary is killed, the client closed and `stop` stops the provider.
 */
export function binaryOnPostgres(start: () => Promise<string> | string, stop: () => void): OnPostgres {
  let gateway: RunningGateway | undefined;
  let sql: postgres.Sql | undefined;
  beforeAll(async () => {
    const started = await startOnPostgres(await start());
    gateway = started.gateway;
    sql = postgres(started.dbUrl, { max: 1, onnotice: () => {} });
  }, 120_000);
  afterAll(async () => {
    await gateway?.stop("SIGKILL");
    await sql?.end();
    stop();
  });
  return {
    get gateway() {
      return started(gateway);
    },
    get sql() {
      return started(sql);
    },
  };
}

export interface LogRow {
  status: string;
  prompt_tokens: number;
  completion_tokens: number;
  spend: number;
}

/** A key's spend log rows, oldest first, once `n` are written (the binary writes spend every 250 ms; 10 s at most). */
export async function logRowsOf(sql: postgres.Sql, token: string, n: number): Promise<LogRow[]> {
  const read = () => sql<LogRow[]>`
    select status, prompt_tokens, completion_tokens, spend from spend_logs where api_key = ${token} order by start_time`;
  let rows = await read();
  for (let i = 0; i < 100 && rows.length < n; i++) {
    await Bun.sleep(100);
    rows = await read();
  }
  return rows.map((row) => ({ ...row }));
}
