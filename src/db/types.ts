/** The small database interface that both real Postgres and embedded PGlite satisfy. */

export type Row = Record<string, any>;

/** COPY input: text, or UTF-8 pieces of it (a piece need not end at a row's end). */
export type CopyRows = string | readonly Uint8Array[];

/** A handle that runs SQL: the database itself or a transaction. Repos take one as a parameter. */
export interface Sql {
  /** One statement with `$1`-style parameters. JSON values are passed as text and cast (`$1::text::jsonb`). */
  query<T extends Row = Row>(text: string, params?: readonly unknown[]): Promise<T[]>;
  /** Several statements, no parameters (migrations). */
  exec(text: string): Promise<void>;
  /**
   * Loads rows with COPY: `rows` are rows in COPY's text format (tab-separated, `\N` for null, one
   * line per row), as text or as UTF-8 pieces sent in order — the cheapest way into a table, for the
   * per-request spend logs.
   */
  copyFrom(table: string, columns: readonly string[], rows: CopyRows): Promise<void>;
  /** Runs `fn` in a transaction: committed when it resolves, rolled back when it throws. */
  transaction<T>(fn: (tx: Sql) => Promise<T>): Promise<T>;
}

export interface Database extends Sql {
  readonly kind: "postgres" | "pglite";
  /** Statements sent since start, for benchmarks that prove the hot path does not query. */
  readonly statements: () => number;
  /** True when a trivial query answers within `timeoutMs`. */
  ping(timeoutMs?: number): Promise<boolean>;
  /** True while the database is still being opened behind a serving gateway (see ../warm.ts). */
  opening?(): boolean;
  close(): Promise<void>;
}
