import type Redis from "ioredis";
import type { DeploymentUsage } from "../proxy/router";
import type { RedisKeys } from "./keys";

/** How often this instance's counts go to Redis and the others' come back: a deployment's caps are soft, seen this late. */
const TICK_MS = 100;
/** A minute's counts stay in Redis past their minute for instances whose clocks lag a little. */
const KEEP_MS = 120_000;

interface Count {
  requests: number;
  tokens: number;
}

/** One deployment's running minute, as this instance knows it. */
interface Minute {
  minute: number;
  /** Counted here, not sent to Redis yet. */
  pending: Count;
  /** Counted here and in Redis's total. */
  pushed: Count;
  /** The other instances' counts as of the last reply (Redis's total less this instance's). */
  others: Count;
  /** Last time the router asked about it or counted at it: read while either is recent. */
  usedAt: number;
}

const NONE: Count = Object.freeze({ requests: 0, tokens: 0 }) as Count;

/**
 * Requests and tokens of the running minute per capped deployment, summed over every instance on one
 * Redis, so that a deployment's `rpm`/`tpm` caps hold for the deployment rather than per instance (as
 * LiteLLM's router counts them in Redis). The request path only touches memory: a timer sends what
 * this instance counted and reads the totals, one pipeline per tick, only while capped deployments are in use.
 */
export class SharedDeploymentUsage implements DeploymentUsage {
  private readonly minutes = new Map<string, Minute>();
  /** Cooldowns heard of (this instance's own included): deployment id → until (ms). */
  private readonly cooldowns = new Map<string, number>();
  private readonly timer: Timer;
  private busy = false;
  /** Round trips to Redis, for the benchmarks' count. */
  roundTrips = 0;

  constructor(
    private readonly redis: Redis,
    private readonly keys: RedisKeys,
    private readonly now: () => number = Date.now,
  ) {
    this.timer = setInterval(() => void this.tick(), TICK_MS);
    this.timer.unref?.();
  }

  private current(id: string): Minute {
    const now = this.now();
    const minute = Math.floor(now / 60_000);
    let m = this.minutes.get(id);
    if (!m || m.minute !== minute) {
      m = { minute, pending: { requests: 0, tokens: 0 }, pushed: { requests: 0, tokens: 0 }, others: { requests: 0, tokens: 0 }, usedAt: now };
      this.minutes.set(id, m);
    }
    m.usedAt = now;
    return m;
  }

  add(id: string, requests: number, tokens: number): void {
    const m = this.current(id);
    m.pending.requests += requests;
    m.pending.tokens += tokens;
  }

  others(id: string): Count {
    const m = this.current(id);
    return m.others;
  }

  /**
   * A cooldown decided here: kept in Redis (for instances that start or reconnect later) and published
   * to the others at once; the failures that led to it start again from none. Redis unreachable: it
   * holds here alone.
   */
  cooled(id: string, until: number): void {
    this.note(id, until);
    const ms = Math.max(1, until - this.now());
    this.roundTrips++;
    this.redis.multi().hset(this.keys.cooldowns, id, String(until)).pexpire(this.keys.cooldowns, ms, "NX").pexpire(this.keys.cooldowns, ms, "GT")
      .del(this.keys.failures(id)).publish(this.keys.cooldowns, JSON.stringify([id, until])).exec().catch(() => {});
  }

  /**
   * A failure here, added to the deployment's shared list (one round trip, on failures only): the
   * failures of every instance in the window up to `at`. Each is its own entry, whichever instance and
   * whatever the time; the list goes a window after its last failure.
   */
  async failedAt(id: string, at: number, windowMs: number): Promise<number> {
    const key = this.keys.failures(id);
    this.roundTrips++;
    const replies = await this.redis.multi().zadd(key, at, `${at}:${crypto.randomUUID()}`).zremrangebyscore(key, "-inf", at - windowMs)
      .zcard(key).pexpire(key, windowMs).exec();
    const [error, count] = replies?.[2] ?? [new Error("no reply"), 0];
    if (error) throw error;
    return Number(count);
  }

  cooledUntil(id: string): number {
    return this.cooldowns.get(id) ?? 0;
  }

  /** A cooldown published on the cooldowns channel (`[id, until]`); anything else is ignored. */
  heard(text: string): void {
    let message: unknown;
    try {
      message = JSON.parse(text);
    } catch {
      return;
    }
    if (!Array.isArray(message)) return;
    const [id, until] = message;
    if (typeof id === "string" && typeof until === "number") this.note(id, until);
  }

  private note(id: string, until: number): void {
    if (Number.isFinite(until) && until > (this.cooldowns.get(id) ?? 0)) this.cooldowns.set(id, until);
  }

  /** The cooldowns Redis holds, read at start and after a break (those published meanwhile never arrived). */
  async loadCooldowns(): Promise<void> {
    try {
      this.roundTrips++;
      const held = await this.redis.hgetall(this.keys.cooldowns);
      for (const [id, until] of Object.entries(held)) this.note(id, Number(until));
    } catch {
      // Unreachable: read again when it is back.
    }
  }

  private async tick(): Promise<void> {
    if (this.busy) return;
    const now = this.now();
    for (const [id, until] of this.cooldowns) if (until <= now) this.cooldowns.delete(id);
    const minute = Math.floor(now / 60_000);
    const sent: Array<{ m: Minute; key: string; requests: number; tokens: number }> = [];
    for (const [id, m] of this.minutes) {
      if (m.minute !== minute || now - m.usedAt > 60_000) {
        this.minutes.delete(id);
        continue;
      }
      sent.push({ m, key: this.keys.deployment(id, minute), requests: m.pending.requests, tokens: m.pending.tokens });
      m.pending.requests = 0;
      m.pending.tokens = 0;
    }
    if (sent.length === 0) return;
    const pipeline = this.redis.pipeline();
    for (const { key, requests, tokens } of sent) {
      // What this instance counted (if anything), then the read: replies come back in order, the read last.
      if (requests > 0 || tokens > 0) pipeline.hincrby(key, "r", requests).hincrby(key, "t", tokens).pexpire(key, KEEP_MS);
      pipeline.hmget(key, "r", "t");
    }
    this.busy = true;
    this.roundTrips++;
    try {
      const replies = (await pipeline.exec()) ?? [];
      let at = 0;
      for (const { m, requests, tokens } of sent) {
        const wrote = requests > 0 || tokens > 0;
        const [r, t, , read] = wrote ? replies.slice(at, at + 4) : [null, null, null, replies[at]];
        at += wrote ? 4 : 1;
        if (!wrote || (r && !r[0])) m.pushed.requests += requests;
        else m.pending.requests += requests;
        if (!wrote || (t && !t[0])) m.pushed.tokens += tokens;
        else m.pending.tokens += tokens;
        if (!read || read[0]) continue;
        const [total, totalTokens] = (read[1] as Array<string | null>).map(Number);
        // Redis lost its data (restarted, emptied): what it has is less than this instance sent, and the others count from nothing.
        m.others = { requests: Math.max(0, (total || 0) - m.pushed.requests), tokens: Math.max(0, (totalTokens || 0) - m.pushed.tokens) };
      }
    } catch {
      // Redis unreachable: the counts go with a later tick; meanwhile the caps count this instance's alone.
      for (const { m, requests, tokens } of sent) {
        m.pending.requests += requests;
        m.pending.tokens += tokens;
        m.others = NONE;
      }
    } finally {
      this.busy = false;
    }
  }

  close(): void {
    clearInterval(this.timer);
  }
}
