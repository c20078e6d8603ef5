import type { Clock } from "../clock";

interface Entry<V> {
  value: V;
  loadedAt: number;
}

export interface TtlCacheOptions<V> {
  /** Reloads many entries in one round trip; an id missing from the answer no longer exists. */
  reloadMany?: (ids: string[]) => Promise<Map<string, V>>;
  /** How long stale ids in use are gathered before one reload (ms). */
  reloadDelayMs?: number;
  onReloadError?: (error: unknown) => void;
  /** Whether a loaded value is stored (default: every value). */
  keep?: (value: V) => boolean;
}

/**
 * A size-bounded map whose entries go stale after `ttlMs`. Map order is insertion order, so the
 * first entry is the least recently loaded one and is evicted when the map is full.
 *
 * With `reloadMany`, a stale entry is still served while it is reloaded in the background, together
 * with every other stale entry in use: with thousands of keys going stale each minute, a request
 * never waits on the database for a key it already knows, and the database sees a few queries a
 * second rather than one per key.
 */
export class TtlCache<V> {
  private readonly entries = new Map<string, Entry<V>>();
  private readonly loading = new Map<string, Promise<V>>();
  private readonly stale = new Set<string>();
  private reloadTimer: Timer | null = null;
  /** Bumped by every delete and clear (see `generation`). */
  private epoch = 0;
  /**
   * The epoch of each id's last delete, and of the last clear, while loads are under way: a load that
   * started before one must not store what it read for that id (or any, after a clear). Another id's
   * delete does not void it: admin writes arriving all the time would otherwise keep stale entries
   * from ever being reloaded.
   */
  private readonly deletedAt = new Map<string, number>();
  private clearedAt = 0;
  private readsUnderWay = 0;

  constructor(
    private readonly max: number,
    private readonly ttlMs: number,
    private readonly clock: Clock,
    private readonly options: TtlCacheOptions<V> = {},
  ) {}

  get size(): number {
    return this.entries.size;
  }

  /** Changes with every delete and clear: what was read before a change may be out of date. */
  get generation(): number {
    return this.epoch;
  }

  /** The cached value (fresh or stale), whether it is still fresh, and its age in ms. */
  peek(id: string): { value: V; fresh: boolean; age: number } | undefined {
    const entry = this.entries.get(id);
    if (!entry) return undefined;
    const age = this.clock.now() - entry.loadedAt;
    return { value: entry.value, fresh: age < this.ttlMs, age };
  }

  set(id: string, value: V): void {
    this.entries.delete(id);
    this.entries.set(id, { value, loadedAt: this.clock.now() });
    if (this.entries.size > this.max) {
      const oldest = this.entries.keys().next().value;
      if (oldest !== undefined) this.entries.delete(oldest);
    }
  }

  /** Loads once per id even when many requests miss at the same time; stores what `keep` allows. */
  load(id: string, loader: () => Promise<V>): Promise<V> {
    const pending = this.loading.get(id);
    if (pending) return pending;
    const epoch = this.readStarts();
    const promise = loader()
      .then((value) => {
        if (this.unchangedSince(epoch, id) && (this.options.keep?.(value) ?? true)) this.set(id, value);
        return value;
      })
      .finally(() => {
        this.readEnds();
        if (this.loading.get(id) === promise) this.loading.delete(id);
      });
    this.loading.set(id, promise);
    return promise;
  }

  /**
   * Whether a stale entry may be served while it is reloaded (it is then queued for the next
   * batched reload). False without `reloadMany` or with a zero ttl: the caller loads it now.
   */
  serveStale(id: string): boolean {
    if (!this.options.reloadMany || this.ttlMs <= 0) return false;
    this.stale.add(id);
    this.scheduleReload();
    return true;
  }

  private scheduleReload(): void {
    if (this.reloadTimer) return;
    this.reloadTimer = setTimeout(() => void this.reloadStale(), this.options.reloadDelayMs ?? 200);
    this.reloadTimer.unref?.();
  }

  private async reloadStale(): Promise<void> {
    const ids = [...this.stale];
    this.stale.clear();
    const epoch = this.readStarts();
    try {
      const found = await this.options.reloadMany!(ids);
      for (const id of ids) {
        if (!this.unchangedSince(epoch, id)) continue;
        const value = found.get(id);
        if (value !== undefined) this.set(id, value);
        else this.entries.delete(id);
      }
    } catch (error) {
      // The entries stay as they were (stale, still served); their next use queues them again.
      this.options.onReloadError?.(error);
    } finally {
      this.readEnds();
      this.reloadTimer = null;
      // Ids that went stale while this reload was under way.
      if (this.stale.size > 0) this.scheduleReload();
    }
  }

  /** Forgets an entry; a load under way is not joined by the next callers (it may have read what was true before). */
  delete(id: string): void {
    this.epoch++;
    if (this.readsUnderWay > 0) this.deletedAt.set(id, this.epoch);
    this.entries.delete(id);
    this.loading.delete(id);
  }

  clear(): void {
    this.voidReads();
    this.entries.clear();
  }

  /**
   * Every entry is read again at its next use, as after `clear`, but stays to be served while the
   * database cannot answer (its age, see `peek`, is then infinite).
   */
  expireAll(): void {
    this.voidReads();
    for (const entry of this.entries.values()) entry.loadedAt = -Infinity;
  }

  /** What loads under way read may be out of date: they store nothing, and the next callers load again. */
  private voidReads(): void {
    this.epoch++;
    this.clearedAt = this.epoch;
    this.deletedAt.clear();
    this.loading.clear();
  }

  private readStarts(): number {
    this.readsUnderWay++;
    return this.epoch;
  }

  private readEnds(): void {
    // With no read under way, no delete can void one: what was kept for them goes.
    if (--this.readsUnderWay === 0) this.deletedAt.clear();
  }

  /** Whether what a read that started at `epoch` found for `id` may be stored. */
  private unchangedSince(epoch: number, id: string): boolean {
    return this.clearedAt <= epoch && (this.deletedAt.get(id) ?? 0) <= epoch;
  }

  values(): IterableIterator<Entry<V>> {
    return this.entries.values();
  }

  /** Up to `max` ids, the most recently loaded. */
  knownIds(max: number): string[] {
    return [...this.entries.keys()].slice(-max);
  }
}
