import type { Database, Sql } from "./types";

/** A call still waiting this long has the server asked whether it answers at all. */
const CHECK_MS = 4000;
/** How long that question may take: a server busy with slow statements still answers it. */
const PING_MS = 3000;

/**
 * The server stopped answering (a stalled server or a cut network holds a statement on an open
 * connection for ever, with no error): answered 503. A change sent may still apply if it resumes.
 */
export class DatabaseUnanswered extends Error {
  readonly code = "ETIMEDOUT";
  constructor() {
    super("the database stopped answering");
  }
}

/**
 * `work`, or a DatabaseUnanswered once it has waited CHECK_MS and the server does not answer a ping
 * either; a slow statement on a server that answers is waited for, however long. The statement
 * itself is not cancelled (cancelling needs a connection the outage does not give).
 */
export function watch<T>(db: Pick<Database, "ping">, work: Promise<T>): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let done = false;
    let timer: Timer | undefined;
    const check = async () => {
      const alive = await db.ping(PING_MS);
      if (done) return;
      if (alive) timer = setTimeout(check, CHECK_MS);
      else {
        done = true;
        reject(new DatabaseUnanswered());
      }
    };
    timer = setTimeout(check, CHECK_MS);
    const finish = () => {
      done = true;
      clearTimeout(timer);
    };
    work.then((value) => (finish(), resolve(value)), (error: unknown) => (finish(), reject(error)));
  });
}

/**
 * The database as admin calls use it on Postgres: each statement and transaction watched (see
 * `watch`), so an admin call on a hung server is answered 503 within seconds rather than held. The
 * embedded database runs in this process and cannot hang so; a long statement there holds its one
 * connection, and a ping would only wait behind it.
 */
export function watched(db: Database): Database {
  if (db.kind !== "postgres") return db;
  const sql: Sql = {
    query: (text, params) => watch(db, db.query(text, params)),
    exec: (text) => watch(db, db.exec(text)),
    copyFrom: (table, columns, rows) => watch(db, db.copyFrom(table, columns, rows)),
    transaction: (fn) => watch(db, db.transaction(fn)),
  };
  return Object.assign(Object.create(db) as Database, sql);
}
