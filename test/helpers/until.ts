/** Polls `condition` every `everyMs` until it holds; fails naming `what` after `ms`. */
export async function until(what: string, condition: () => Promise<boolean> | boolean, ms = 5000, everyMs = 20): Promise<void> {
  const end = Date.now() + ms;
  while (!(await condition())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what} (${ms} ms)`);
    await Bun.sleep(everyMs);
  }
}

/** Waits for the next 60 s rate window when less than `ms` is left of this one: what a test counts in one window stays in it. */
export async function windowLeft(ms: number): Promise<void> {
  const left = 60_000 - (Date.now() % 60_000);
  if (left < ms) await Bun.sleep(left + 50);
}
