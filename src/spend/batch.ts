import type { SpendTargets } from "../governance/policy";
import type { Usage } from "../providers/types";

/** One settled request, as the spend writer receives it. */
export interface SpendEvent {
  requestId: string;
  targets: SpendTargets;
  model: string;
  deployment: string | null;
  route: string;
  usage: Usage;
  cost: number;
  start: number;
  end: number;
  status: string;
  metadata: Record<string, unknown>;
}

/**
 * A spend delta for one stored row, the budget period it belongs to and the stored reset the period was
 * worked out from (see `SpendTargets`; undefined in batches saved before it was kept).
 */
export interface Delta {
  id: string;
  amount: number;
  period: number | null;
  base?: number | null;
  /** The period's fixed length in ms (null for months or none; undefined in batches saved before it was kept). */
  step?: number | null;
  /**
   * When the row the spend was planned from was made (ms; undefined when unknown): the write adds it
   * to that row only, not to one deleted and made again under the same id meanwhile.
   */
  born?: number;
}

/** Of two bases of one period, the earlier view of the row (none before any): the one a write can still find there. */
const earlier = (a: number | null | undefined, b: number | null | undefined) =>
  a === undefined ? b : b === undefined ? a : a === null || b === null ? null : Math.min(a, b);

/**
 * A stored spend an admin reset (spend set, budget_duration changed, or the row deleted): every
 * instance drops its budget counters and the spend it has not written for it. `keyModels` names a
 * key's token and means all of its per-model rows; `customerModels`, `userModels` and `teamModels` a
 * customer's, a user's and a team's, likewise.
 */
export interface SpendRow {
  table: "keys" | "users" | "teams" | "members" | "customers" | "keyModels" | "customerModels" | "userModels" | "teamModels";
  id: string;
  /**
   * The row was deleted: its requests still in flight settle on none of the counters made next under its
   * id (budgets, parallel slots), which belong to a row made again under it, if any.
   */
  deleted?: boolean;
}

/**
 * Deltas summed per row. A row gets one delta per batch: when a batch holds deltas of two periods
 * for one row and the older one had ended when the later spend was made, the older period's is
 * dropped (the newer period starts from zero anyway). Two periods neither of which had ended, or one
 * and none, come from an admin changing the duration mid-request: both are spend of the running
 * period, summed.
 */
export class DeltaMap {
  private readonly rows = new Map<string, Delta>();

  /** The amount held for `id` (0 if none). */
  amountOf(id: string): number {
    return this.rows.get(id)?.amount ?? 0;
  }

  add(id: string, amount: number, period: number | null, base: number | null | undefined, at: number, step?: number | null, born?: number): void {
    const current = this.rows.get(id);
    if (!current || (born !== undefined && current.born !== undefined && born > current.born)) {
      // A row made again under the id: what the deleted one had left has nowhere to go.
      this.rows.set(id, { id, amount, period, base, step, born });
      return;
    }
    if (born !== undefined && current.born !== undefined && born < current.born) return;
    current.born ??= born;
    if (period === current.period) {
      current.amount += amount;
      current.base = earlier(current.base, base);
      return;
    }
    // A row whose duration was taken away (or given) while requests were in flight: spend without a
    // period never ends, so nothing of either is dropped, and the sum adds to whatever is stored.
    if (period === null || current.period === null) {
      current.amount += amount;
      current.period = null;
      return;
    }
    const older = Math.min(period ?? -Infinity, current.period ?? -Infinity);
    const newer = Math.max(period ?? -Infinity, current.period ?? -Infinity);
    if (older > at) {
      current.amount += amount;
      if (period === newer) {
        current.base = base;
        current.step = step;
      }
      current.period = newer;
    } else if (period === newer) {
      this.rows.set(id, { id, amount, period, base, step, born: current.born });
    }
  }

  /** Drops the delta of `id`, or with `prefix` those of every id starting with `id`. */
  drop(id: string, prefix = false): void {
    if (!prefix) this.rows.delete(id);
    else for (const key of this.rows.keys()) if (key.startsWith(id)) this.rows.delete(key);
  }

  /** Moves the delta of `from`, or with `prefix` those of every id starting with it, to the same ids starting with `to`. */
  move(from: string, to: string, at: number, prefix = false): void {
    for (const delta of [...this.rows.values()]) {
      if (prefix ? !delta.id.startsWith(from) : delta.id !== from) continue;
      this.rows.delete(delta.id);
      this.add(to + delta.id.slice(from.length), delta.amount, delta.period, delta.base, at, delta.step, delta.born);
    }
  }

  /** Sorted by id, so that concurrent flushes lock rows in the same order and never deadlock. */
  sorted(): Delta[] {
    return [...this.rows.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  get size(): number {
    return this.rows.size;
  }
}

/** The tables of spend per model: a SpendRow of one names its owner, and means all of the owner's rows. */
export const PER_MODEL: readonly SpendRow["table"][] = ["keyModels", "customerModels", "userModels", "teamModels"];

/** Separator inside composite row ids (team+user, key+model, customer+model): chr(31), which ids do not contain. */
export const SEP = "\u001f";

/**
 * A batch being filled: deltas are summed as requests settle and each log row is serialised at once,
 * so a second of traffic is held as a few maps and strings rather than thousands of live objects.
 */
export class Batch {
  /** @param masterToken the master key's hash: the api_key of its requests' log rows. */
  constructor(private readonly masterToken: string | null = null) {}

  readonly id = crypto.randomUUID();
  private readonly rows = new RowBytes();
  readonly keys = new DeltaMap();
  readonly users = new DeltaMap();
  readonly teams = new DeltaMap();
  readonly members = new DeltaMap();
  readonly customers = new DeltaMap();
  readonly keyModels = new DeltaMap();
  readonly customerModels = new DeltaMap();
  readonly userModels = new DeltaMap();
  readonly teamModels = new DeltaMap();
  readonly gateway = new DeltaMap();

  /** The gateway's time of the latest spend in the batch: what the write compares periods with. */
  latest = 0;

  /** When its first write began (the gateway's time): from then on an admin's reset no longer takes spend out of it. */
  writingSince: number | null = null;

  add(event: SpendEvent): void {
    const { targets: t, cost, end: at } = event;
    if (at > this.latest) this.latest = at;
    if (t.token) this.keys.add(t.token, cost, t.keyPeriod, t.keyBase, at, t.keyStep, t.keyBorn);
    if (t.user) this.users.add(t.user.id, cost, t.user.period, t.user.base, at, t.user.step, t.user.born);
    if (t.team) this.teams.add(t.team.id, cost, t.team.period, t.team.base, at, t.team.step, t.team.born);
    if (t.member) this.members.add(t.member.teamId + SEP + t.member.userId, cost, t.member.period, t.member.base, at, t.member.step, t.member.born);
    if (t.customer) this.customers.add(t.customer.id, cost, t.customer.period, t.customer.base, at, t.customer.step, t.customer.born);
    if (t.token && t.keyModel) {
      this.keyModels.add(t.token + SEP + t.keyModel.model, cost, t.keyModel.period, t.keyModel.base, at, t.keyModel.step, t.keyModel.born);
    }
    if (t.customer && t.customerModel) {
      this.customerModels.add(t.customer.id + SEP + t.customerModel.model, cost, t.customerModel.period, t.customerModel.base, at, t.customerModel.step, t.customer.born);
    }
    if (t.userModel) this.userModels.add(t.userModel.id + SEP + t.userModel.model, cost, t.userModel.period, t.userModel.base, at, t.userModel.step, t.userModel.born);
    if (t.teamModel) this.teamModels.add(t.teamModel.id + SEP + t.teamModel.model, cost, t.teamModel.period, t.teamModel.base, at, t.teamModel.step, t.teamModel.born);
    this.gateway.add("gateway", cost, t.gatewayPeriod, t.gatewayBase, at, t.gatewayStep);
    this.rows.add(logLine(event, this.masterToken));
  }

  /**
   * A request refused before any provider: its log row alone. It holds no delta, not even of 0 (a delta
   * of a later period would start that period on the row), so nothing stored changes but spend_logs.
   */
  addRefused(event: SpendEvent): void {
    this.rows.add(logLine(event, this.masterToken));
  }

  get size(): number {
    return this.rows.count;
  }

  /** Drops the unwritten spend of a row an admin reset (the request log rows stay). */
  discard(row: SpendRow): void {
    if (PER_MODEL.includes(row.table)) this[row.table].drop(row.id + SEP, true);
    else this[row.table].drop(row.id);
  }

  /** Moves the unwritten spend of a key's old token to the key's token now (the request log rows stay). */
  moveKey(from: string, to: string): void {
    this.keys.move(from, to, this.latest);
    this.keyModels.move(from + SEP, to + SEP, this.latest, true);
  }

  /** The log rows in COPY's text format, in the order of `LOG_COLUMNS`, as UTF-8 pieces. */
  logRows(): readonly Uint8Array[] {
    return this.rows.pieces();
  }

  /** The log rows as one text (for a batch saved to a file). */
  rowsText(): string {
    return decoder.decode(Buffer.concat(this.rows.pieces()));
  }
}

/** Room a log row is written into: one allocation for a few hundred rows. */
const ROW_CHUNK_BYTES = 64 * 1024;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * Log rows as UTF-8 in chunks of their own, outside the collector's heap: a batch holds a quarter of a
 * second of them, long enough for a young collection to move each one, as a string, into the old
 * generation, where only a full collection frees it. Measured under load, that doubled what each young
 * collection kept, took the heap to 110 MB between full collections, and cost the COPY a join and a copy
 * of the whole text at each flush.
 */
class RowBytes {
  private readonly full: Uint8Array[] = [];
  private chunk: Uint8Array | null = null;
  private used = 0;
  count = 0;

  add(line: string): void {
    // A UTF-16 unit is at most 3 bytes of UTF-8: a row always fits the room it is checked against.
    const most = line.length * 3;
    if (this.chunk === null || this.chunk.length - this.used < most) {
      if (this.chunk !== null) this.full.push(this.chunk.subarray(0, this.used));
      this.chunk = new Uint8Array(Math.max(ROW_CHUNK_BYTES, most));
      this.used = 0;
    }
    this.used += encoder.encodeInto(line, this.chunk.subarray(this.used)).written;
    this.count++;
  }

  pieces(): Uint8Array[] {
    return this.chunk === null ? [] : [...this.full, this.chunk.subarray(0, this.used)];
  }
}

/** The spend_logs columns each log line fills, in order. */
export const LOG_COLUMNS = [
  "request_id", "api_key", "user_id", "team_id", "end_user", "model", "deployment", "route",
  "prompt_tokens", "completion_tokens", "total_tokens", "spend", "start_time", "end_time", "status", "metadata",
] as const;

const SPECIAL = /[\\\t\n\r\u0000]/;
/**
 * A value as COPY text reads it: `\N` for null; backslash, tab and line breaks escaped; the NUL
 * character, which no text column takes, dropped (a model name in the config may hold one).
 */
function field(value: string | null | undefined): string {
  if (value === null || value === undefined) return "\\N";
  if (!SPECIAL.test(value)) return value;
  return value.replace(/\\/g, "\\\\").replace(/\t/g, "\\t").replace(/\n/g, "\\n").replace(/\r/g, "\\r").replaceAll("\u0000", "");
}
/** `Date#toISOString` with the part up to the second remembered: log rows come in runs of the same second. */
let isoSecond = -1;
let isoPrefix = "";
function iso(ms: number): string {
  const second = Math.floor(ms / 1000);
  if (second !== isoSecond) {
    isoSecond = second;
    isoPrefix = new Date(second * 1000).toISOString().slice(0, 20); // 2026-01-02T03:04:05.
  }
  const millis = ms - second * 1000;
  return `${isoPrefix}${millis < 10 ? "00" : millis < 100 ? "0" : ""}${Math.floor(millis)}Z`;
}

/** Token counts are 32-bit integers in the table; an odd value must never make the batch unwritable. */
const count = (n: number) => (n >= 0 && n <= 2_147_483_647 ? String(Math.round(n)) : "0");

/**
 * The api_key, user_id, team_id and end_user columns: a kept plan hands the same targets object to
 * every request it serves, so these are escaped once per plan rather than once per request.
 */
const whoColumns = new WeakMap<SpendTargets, string>();
function who(t: SpendTargets, masterToken: string | null): string {
  let text = whoColumns.get(t);
  if (text === undefined) {
    text = `${field(t.token ?? masterToken ?? "master")}\t${field(t.user?.id ?? t.member?.userId ?? t.keyUser)}\t${field(t.team?.id)}\t${field(t.customer?.id)}`;
    whoColumns.set(t, text);
  }
  return text;
}

function metadataText(metadata: Record<string, unknown> | undefined): string {
  if (metadata === undefined) return "{}";
  for (const _ in metadata) {
    // jsonb refuses the NUL character and a lone surrogate (a provider's error text can hold one), which JSON
    // carries as \u0000 and \udXXX: the first goes, the other becomes U+FFFD (an escaped backslash before is text, kept).
    return field(JSON.stringify(metadata).replace(/(?<!\\)((?:\\\\)*)\\u(0000|d[89a-f][0-9a-f]{2})/g, (_, slashes: string, code: string) => code === "0000" ? slashes : `${slashes}\ufffd`));
  }
  return "{}";
}

/**
 * A request's log row in COPY's text format. Joined from an array, the row is one flat string, which the
 * encoder reads as it is (built with `+` and template literals it is a rope of some 20 pieces: 640 bytes
 * and 19 cells against 300 and 1, flattened again before it can be encoded).
 */
function logLine(x: SpendEvent, masterToken: string | null): string {
  return [
    field(x.requestId), who(x.targets, masterToken), field(x.model), field(x.deployment), field(x.route),
    count(x.usage.prompt_tokens), count(x.usage.completion_tokens), count(x.usage.total_tokens), Number.isFinite(x.cost) ? String(x.cost) : "0",
    iso(x.start), iso(x.end), field(x.status), `${metadataText(x.metadata)}\n`,
  ].join("\t");
}

export function buildBatch(id: string, events: SpendEvent[], masterToken: string | null = null): Batch {
  const batch = new Batch(masterToken);
  (batch as { id: string }).id = id;
  for (const event of events) batch.add(event);
  return batch;
}

/** A batch as saved to a file (set aside, or kept over a shutdown): what `batchFromSaved` reads back. */
export function savedBatch(batch: Batch, now: number, error: unknown) {
  return {
    batch_id: batch.id, saved_at: new Date(now).toISOString(), error: String(error), code: (error as { code?: unknown } | null)?.code,
    requests: batch.size, latest: batch.latest, writing_since: batch.writingSince, deltas: {
      keys: batch.keys.sorted(), users: batch.users.sorted(), teams: batch.teams.sorted(), team_members: batch.members.sorted(),
      customers: batch.customers.sorted(), key_models: batch.keyModels.sorted(), customer_models: batch.customerModels.sorted(),
      user_models: batch.userModels.sorted(), team_models: batch.teamModels.sorted(),
      gateway: batch.gateway.sorted(),
    },
    spend_logs: { columns: LOG_COLUMNS, copy_text: batch.rowsText() },
  };
}

/** What writing a batch reads of it. */
export interface WritableBatch {
  id: string;
  size: number;
  /** The gateway's time of the batch's latest spend (ms). */
  latest: number;
  /** Since when no admin's reset took spend out of it (ms); none for a batch no reset could reach. */
  writingSince?: number | null;
  keys: Pick<DeltaMap, "sorted" | "size">;
  users: Pick<DeltaMap, "sorted">;
  teams: Pick<DeltaMap, "sorted">;
  members: Pick<DeltaMap, "sorted">;
  customers: Pick<DeltaMap, "sorted">;
  keyModels: Pick<DeltaMap, "sorted">;
  customerModels: Pick<DeltaMap, "sorted">;
  userModels: Pick<DeltaMap, "sorted">;
  teamModels: Pick<DeltaMap, "sorted">;
  gateway: Pick<DeltaMap, "sorted">;
  /** The log rows in COPY's text format. */
  logRows(): string | readonly Uint8Array[];
}

/** A saved batch read back, for writing with its own id (so a batch already written is skipped). */
export function batchFromSaved(saved: ReturnType<typeof savedBatch>): WritableBatch {
  const d = saved.deltas;
  const map = (list: Delta[]) => ({ sorted: () => list, size: list.length });
  if (typeof saved.batch_id !== "string" || !d || typeof saved.spend_logs?.copy_text !== "string") throw new Error("not a saved spend batch");
  return {
    id: saved.batch_id, size: saved.requests, latest: typeof saved.latest === "number" ? saved.latest : Date.parse(saved.saved_at),
    // Saved, it was out of reach of the resets made since (and of those made while it was being written).
    writingSince: typeof saved.writing_since === "number" ? saved.writing_since : Date.parse(saved.saved_at) || null, keys: map(d.keys), users: map(d.users), teams: map(d.teams), members: map(d.team_members),
    customers: map(d.customers), keyModels: map(d.key_models),
    // Batches saved before customers' spend per model was kept have none.
    customerModels: map((d as { customer_models?: Delta[] }).customer_models ?? []),
    // And before users' and teams' was.
    userModels: map((d as { user_models?: Delta[] }).user_models ?? []), teamModels: map((d as { team_models?: Delta[] }).team_models ?? []),
    gateway: map(d.gateway), logRows: () => saved.spend_logs.copy_text,
  };
}
