interface Waiter<V> {
  resolve: (value: V | null) => void;
  reject: (error: unknown) => void;
}

/**
 * Ids the cache does not hold, looked up together: the first goes at once; while its query is under
 * way, those that arrive wait and go in the next one. A flood of unknown keys then costs the database
 * one query at a time, each for many keys, rather than one query per request.
 */
export function batchedLookup<V>(loadMany: (ids: string[]) => Promise<Map<string, V>>, maxBatch = 500): (id: string) => Promise<V | null> {
  const waiting = new Map<string, Waiter<V>[]>();
  let running = false;

  async function run(): Promise<void> {
    running = true;
    while (waiting.size > 0) {
      const batch: [string, Waiter<V>[]][] = [];
      for (const entry of waiting) {
        batch.push(entry);
        waiting.delete(entry[0]);
        if (batch.length === maxBatch) break;
      }
      try {
        const found = await loadMany(batch.map(([id]) => id));
        for (const [id, waiters] of batch) for (const waiter of waiters) waiter.resolve(found.get(id) ?? null);
      } catch (error) {
        for (const [, waiters] of batch) for (const waiter of waiters) waiter.reject(error);
      }
    }
    running = false;
  }

  return (id) =>
    new Promise<V | null>((resolve, reject) => {
      const waiters = waiting.get(id);
      if (waiters) waiters.push({ resolve, reject });
      else waiting.set(id, [{ resolve, reject }]);
      if (!running) void run();
    });
}
