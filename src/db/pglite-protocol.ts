import type { CopyRows } from "./types";

/** Messages between the gateway and the worker thread that owns the embedded database. */
export type Request =
  | { id: number; kind: "open"; dataDir: string }
  | { id: number; kind: "query"; text: string; params: unknown[]; tx?: number }
  | { id: number; kind: "exec"; text: string; tx?: number }
  | { id: number; kind: "copy"; table: string; columns: string[]; rows: CopyRows; tx?: number }
  | { id: number; kind: "begin" }
  | { id: number; kind: "end"; tx: number; commit: boolean }
  | { id: number; kind: "close" };

export type Reply =
  | { id: number; ok: true; rows?: unknown[]; tx?: number }
  | { id: number; ok: false; message: string; code?: string };
