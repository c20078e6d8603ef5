import postgres from "postgres";
import type { CopyRows, Database, Row, Sql } from "./types";

export interface PostgresOptions {
  url: string;
  maxConnections?: number;
}

/** Seconds before a connection is tried again after a failed one: a tenth more per failure, at most one. */
export const reconnectDelaySeconds = (failures: number) => Math.min(1, 0.1 * failures);

/** deadlock_detected and serialization_failure: the transaction was rolled back and may simply run again. */
const RETRYABLE = new Set(["40P01", "40001"]);
const TRANSACTION_ATTEMPTS = 4;
const retryable = (error: unknown, attempt: number) =>
  attempt < TRANSACTION_ATTEMPTS && RETRYABLE.has((error as { code?: string } | null)?.code ?? "");

/** Real Postgres through postgres.js. */
export function openPostgres(options: PostgresOptions): Database {
  const client = postgres(options.url, {
    max: options.maxConnections ?? 10,
    idle_timeout: 30,
    connect_timeout: 10,
    onnotice: () => {},
    // The driver waits longer after each failed connect, up to 20 s by default: after an outage of a
    // few seconds the spend writer's first flush once the server is back waited 2-16 s for it, and a
    // shutdown in that time gave up on the spend. The writer and the key loads pace their own retries.
    backoff: reconnectDelaySeconds,
    // bigint counts (count(*)) come back as numbers; money is double precision already
    types: { bigint: { to: 20, from: [20], serialize: (x: number) => String(x), parse: (x: string) => Number(x) } },
  });
  let statements = 0;

  const wrap = (handle: postgres.Sql | postgres.TransactionSql): Sql => ({
    async query<T extends Row>(text: string, params: readonly unknown[] = []) {
      // A statement of its own is a transaction of its own: one Postgres aborted for a deadlock (an
      // admin update meeting a spend flush that locks the same rows in another order) runs again.
      // Inside a transaction the whole transaction does (see `transaction`).
      for (let attempt = 1; ; attempt++) {
        statements++;
        try {
          return (await handle.unsafe(text, params as any[])) as unknown as T[];
        } catch (error) {
          if (handle !== client || !retryable(error, attempt)) throw error;
          await Bun.sleep(5 + Math.random() * 20 * attempt);
        }
      }
    },
    async exec(text: string) {
      statements++;
      await handle.unsafe(text);
    },
    async copyFrom(table: string, columns: readonly string[], rows: CopyRows) {
      statements++;
      const query = handle.unsafe(`copy ${table} (${columns.join(", ")}) from stdin`);
      const stream = await query.writable();
      await new Promise<void>((resolve, reject) => {
        refusalOf(query, reject);
        stream.on("error", reject);
        stream.on("finish", resolve);
        if (typeof rows === "string") stream.end(rows);
        else {
          for (const piece of rows) stream.write(piece);
          stream.end();
        }
      });
    },
    async transaction<T>(fn: (tx: Sql) => Promise<T>): Promise<T> {
      if ("savepoint" in handle) return handle.savepoint((tx) => fn(wrap(tx))) as Promise<T>;
      // Concurrent admin changes can lock the same rows in different orders; Postgres then aborts one
      // of them. It rolled back whole, so it runs again (a few times, after a short random pause).
      for (let attempt = 1; ; attempt++) {
        try {
          return (await (handle as postgres.Sql).begin((tx) => fn(wrap(tx)))) as T;
        } catch (error) {
          if (!retryable(error, attempt)) throw error;
          await Bun.sleep(5 + Math.random() * 20 * attempt);
        }
      }
    },
  });

  return {
    kind: "postgres",
    ...wrap(client),
    statements: () => statements,
    async ping(timeoutMs = 2000) {
      // A race, not probe.cancel(): cancelling needs a connection of its own, which an outage does not give.
      let timer: Timer | undefined;
      const timeout = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), timeoutMs)));
      const probe = client`select 1`.then(() => true, () => false);
      const alive = await Promise.race([probe, timeout]);
      clearTimeout(timer);
      return alive;
    },
    async close() {
      await client.end({ timeout: 5 });
    },
  };
}

/**
 * A COPY Postgres refuses once all its rows are sent (a row a constraint refuses, a full disk) never
 * finishes its stream in postgres.js 3.4: the client hands the refusal to the statement's promise, long
 * since resolved with the stream (porsager/postgres#1173). Unseen, it left the spend flush waiting
 * forever inside its transaction, holding the connection and every later batch. Taken from there, it
 * rejects the COPY with Postgres's own error, and the transaction rolls back.
 */
function refusalOf(query: object, reject: (error: unknown) => void): void {
  const statement = query as { reject?: (error: unknown) => void };
  const own = statement.reject;
  if (typeof own !== "function") return;
  statement.reject = (error) => {
    reject(error);
    own(error);
  };
}
