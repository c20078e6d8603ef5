import type Redis from "ioredis";
import { type RedisKeys, redisKeys } from "./keys";

type Pipeline = ReturnType<Redis["pipeline"]>;

/** A round trip this often (ms) keeps an instance alive; one admitting on its lease learns as fast that Redis lost it. */
export const ALIVE_MS = 500;
export const ALIVE_ADMITTING_MS = 25;

/** Replies of the heartbeat that opens every round trip's pipeline (see `Heartbeat.add`). */
export const HEARTBEAT_REPLIES = 3;

/**
 * What every round trip to Redis carries first: this instance is alive (its leases stay valid), and
 * Redis's data generation (`redisKeys.epoch`), set by whichever instance finds it missing. A new
 * generation means Redis lost its data (restarted without it, or emptied) since the last round trip.
 */
export class Heartbeat {
  /** The generation as last seen; null before the first answer. */
  private seen: string | null = null;

  constructor(
    private readonly instanceId: string,
    private readonly ttlMs: number,
    readonly keys: RedisKeys = redisKeys,
  ) {}

  add(pipeline: Pipeline): void {
    pipeline.set(this.keys.alive(this.instanceId), "1", "PX", this.ttlMs);
    // A new value every time: one this instance set before cannot be mistaken for the data surviving.
    pipeline.set(this.keys.epoch, crypto.randomUUID(), "NX");
    pipeline.get(this.keys.epoch);
  }

  /** The heartbeat alone: the pipeline's replies. A command that failed (timed out: Redis hangs) fails it. */
  async ping(redis: Redis): Promise<[Error | null, unknown][]> {
    const pipeline = redis.pipeline();
    this.add(pipeline);
    const replies = (await pipeline.exec()) ?? [];
    const failed = replies.find(([error]) => error);
    if (failed || replies.length === 0) throw failed?.[0] ?? new Error("pipeline returned nothing");
    return replies;
  }

  /** One call of the sync script behind the heartbeat: the pipeline's replies, and the script's answer (a failed call throws). */
  async syncOne(redis: Redis, ...script: unknown[]): Promise<{ replies: [Error | null, unknown][]; answer: unknown[] }> {
    const pipeline = redis.pipeline();
    this.add(pipeline);
    (pipeline as any).litegateSync(...script);
    const replies = await pipeline.exec();
    const [error, answer] = replies?.[HEARTBEAT_REPLIES] ?? [new Error("pipeline returned nothing"), null];
    if (error) throw error;
    return { replies: replies!, answer: answer as unknown[] };
  }

  /** Reads the heartbeat's replies (the pipeline's first ones): whether Redis lost its data since the last. */
  lostData(replies: readonly [Error | null, unknown][]): boolean {
    const generation = generationOf(replies);
    if (generation === null) return false;
    const lost = this.seen !== null && this.seen !== generation;
    this.seen = generation;
    return lost;
  }
}

/** The data generation a pipeline opened by the heartbeat read; null when Redis did not answer it. */
export function generationOf(replies: readonly [Error | null, unknown][]): string | null {
  const generation = replies[2]?.[1];
  return typeof generation === "string" ? generation : null;
}
