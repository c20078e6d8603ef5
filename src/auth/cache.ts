import type { Clock } from "../clock";

interface Entry<V> {
  value: V;
  loadedAt: number;
}

/**
 * A size-bounded map whose entries go stale after `ttlMs`. Map order is insertion order, so the
 * first entry is the least recently loaded one and is evicted when the map is full.
 */
export class TtlCache<V> {
  private readonly entries = new Map<string, Entry<V>>();
  private readonly loading = new Map<string, Promise<V>>();

  constructor(
    private readonly max: number,
    private readonly ttlMs: number,
    private readonly clock: Clock,
  ) {}

  get size(): number {
    return this.entries.size;
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

  /** Loads once per id even when many requests miss at the same time. */
  load(id: string, loader: () => Promise<V>): Promise<V> {
    const pending = this.loading.get(id);
    if (pending) return pending;
    const promise = loader()
      .then((value) => {
        this.set(id, value);
        return value;
      })
      .finally(() => this.loading.delete(id));
    this.loading.set(id, promise);
    return promise;
  }

  delete(id: string): void {
    this.entries.delete(id);
  }

  clear(): void {
    this.entries.clear();
  }

  values(): IterableIterator<Entry<V>> {
    return this.entries.values();
  }
}
