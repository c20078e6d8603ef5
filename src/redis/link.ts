import type Redis from "ioredis";
import type { Logger } from "../log";
import { HEARTBEAT_REPLIES, Heartbeat, generationOf } from "./heartbeat";
import { reclaimMessage } from "./keys";
import { type State, type Sync, type SyncReply, addTickSyncs, admissionSync, applyTickReplies, replyAt, synced, tickSync, unpushed } from "./lease";
import SYNC_SCRIPT from "./sync.lua" with { type: "text" };

export interface RedisLinkOptions {
  redis: Redis;
  heartbeat: Heartbeat;
  instanceId: string;
  log: Logger;
  now: () => number;
  tickMs: number;
  /** Redis lost its data since the last round trip: every lease this instance holds is void. */
  lostData: () => void;
}

/**
 * One instance's round trips to the shared counters: each opens with the heartbeat, and tells whether
 * Redis answers (the instance is degraded while it does not) and whether it lost its data.
 */
export class RedisLink {
  degraded = false;
  failures = 0;
  /** Round trips to Redis: one per tick with something to sync, one per admission Redis decides. */
  roundTrips = 0;
  /** Counters synced: a tick's round trip syncs many. */
  counterSyncs = 0;

  constructor(private readonly options: RedisLinkOptions) {
    // Any number of counters per call: the first argument is how many keys follow.
    options.redis.defineCommand("litegateSync", { lua: SYNC_SCRIPT });
  }

  /**
   * The syncs of an admission's counters that Redis decides, in one round trip (each counter is decided
   * on its own, `need` being the request's reservation on it): their replies in order, or null when
   * Redis did not answer (the instance is then degraded).
   */
  async syncForAdmission(counters: readonly { s: State; need: number }[]): Promise<SyncReply[] | null> {
    const { redis, heartbeat, instanceId, now, tickMs } = this.options;
    const sent = counters.map(({ s, need }) => admissionSync(s, need, now()));
    this.roundTrips++;
    this.counterSyncs += sent.length;
    try {
      const keys = sent.map(({ s }) => heartbeat.keys.counter(s.check.key));
      const { replies, answer } = await heartbeat.syncOne(redis, keys.length, ...keys, instanceId, heartbeat.keys.alivePrefix, ...sent.flatMap(({ args }) => args));
      this.checkEpoch(replies);
      const generation = generationOf(replies);
      const decided = sent.map((one, i) => {
        const reply = replyAt(answer, i);
        synced(one, reply, now(), tickMs, generation);
        return reply;
      });
      this.healthy();
      return decided;
    } catch (error) {
      for (const { s, push } of sent) unpushed(s, push);
      this.unhealthy(error);
      return null;
    }
  }

  /** A tick's counters synced in one pipelined round trip; false when Redis did not answer (what was on its way goes with a later sync). */
  async syncMany(chosen: readonly State[], now: number): Promise<boolean> {
    const { redis, heartbeat, instanceId, tickMs } = this.options;
    let sent: Sync[] = [];
    try {
      const pipeline = redis.pipeline();
      heartbeat.add(pipeline);
      sent = chosen.map((s) => tickSync(s, now));
      addTickSyncs(pipeline, sent, instanceId, heartbeat.keys);
      this.roundTrips++;
      this.counterSyncs += sent.length;
      const done = pipeline.exec();
      for (const { s } of sent) s.busy = done;
      const all = await done;
      for (const { s } of sent) s.busy = null;
      if (!all) throw new Error("pipeline returned nothing");
      this.checkEpoch(all);
      const generation = generationOf(all);
      const replies = all.slice(HEARTBEAT_REPLIES);
      const answered = sent;
      sent = [];
      for (const error of applyTickReplies(answered, replies, this.options.now(), tickMs, generation)) this.unhealthy(error);
      if (replies.some(([error]) => !error)) this.healthy();
      return true;
    } catch (error) {
      for (const s of chosen) s.busy = null;
      for (const { s, push } of sent) unpushed(s, push);
      this.unhealthy(error);
      return false;
    }
  }

  /** The heartbeat alone: the instance stays alive (its leases stay valid) when no counter needs a sync. */
  async ping(): Promise<void> {
    this.roundTrips++;
    await this.options.heartbeat.ping(this.options.redis).then((replies) => (this.checkEpoch(replies), this.healthy()), (e) => this.unhealthy(e));
  }

  /** Tells the other instances that a request was refused for the room they hold on `key`. */
  askBack(key: string): void {
    this.roundTrips++;
    this.options.redis.publish(this.options.heartbeat.keys.reclaim, reclaimMessage.of(this.options.instanceId, key)).catch(() => {});
  }

  /** Tells the other instances that room they asked for on `key` is back in Redis (see `SharedCounters.tick`). */
  freed(key: string): void {
    this.roundTrips++;
    this.options.redis.publish(this.options.heartbeat.keys.freed, reclaimMessage.of(this.options.instanceId, key)).catch(() => {});
  }

  private healthy(): void {
    if (this.degraded) this.options.log.info("redis reachable again: counters shared across instances");
    this.degraded = false;
    this.options.log.clearOnce("redis-down");
  }

  private unhealthy(error: unknown): void {
    this.failures++;
    if (!this.degraded) {
      this.options.log.once("error", "redis-down", "redis unreachable: enforcing limits per instance until it returns", { error: String(error) });
    }
    this.degraded = true;
  }

  /**
   * After Redis lost its data every lease this instance holds is void (other instances' are gone from
   * Redis, so room would be granted twice): each counter syncs again before admitting more on its own.
   */
  private checkEpoch(replies: [Error | null, unknown][]): void {
    if (!this.options.heartbeat.lostData(replies)) return;
    this.options.lostData();
    this.options.log.warn("redis lost its data: counters synced again from what this instance last saw");
  }
}
