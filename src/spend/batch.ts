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

/** A spend delta for one stored row and the budget period it belongs to. */
export interface Delta {
  id: string;
  amount: number;
  period: number | null;
}

/**
 * Deltas summed per row. A row gets one delta per batch: when a batch holds deltas of two periods
 * for one row, the older period's is dropped — the newer period starts from zero anyway.
 */
export class DeltaMap {
  private readonly rows = new Map<string, Delta>();

  add(id: string, amount: number, period: number | null): void {
    const current = this.rows.get(id);
    if (!current || (period ?? -Infinity) > (current.period ?? -Infinity)) {
      this.rows.set(id, { id, amount, period });
    } else if (period === current.period) {
      current.amount += amount;
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

/** Separator inside composite row ids (team+user, key+model): chr(31), which ids do not contain. */
export const SEP = "\u001f";

export interface Batch {
  id: string;
  events: SpendEvent[];
  keys: DeltaMap;
  users: DeltaMap;
  teams: DeltaMap;
  members: DeltaMap;
  customers: DeltaMap;
  keyModels: DeltaMap;
  gateway: DeltaMap;
}

export function buildBatch(id: string, events: SpendEvent[]): Batch {
  const batch: Batch = {
    id, events,
    keys: new DeltaMap(), users: new DeltaMap(), teams: new DeltaMap(), members: new DeltaMap(),
    customers: new DeltaMap(), keyModels: new DeltaMap(), gateway: new DeltaMap(),
  };
  for (const { targets: t, cost } of events) {
    if (t.token) batch.keys.add(t.token, cost, t.keyPeriod);
    if (t.user) batch.users.add(t.user.id, cost, t.user.period);
    if (t.team) batch.teams.add(t.team.id, cost, t.team.period);
    if (t.member) batch.members.add(t.member.teamId + SEP + t.member.userId, cost, t.member.period);
    if (t.customer) batch.customers.add(t.customer.id, cost, t.customer.period);
    if (t.token && t.keyModel) batch.keyModels.add(t.token + SEP + t.keyModel.model, cost, t.keyModel.period);
    batch.gateway.add("gateway", cost, t.gatewayPeriod);
  }
  return batch;
}
