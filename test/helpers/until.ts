/** Polls `condition` every `everyMs` until it holds; fails naming `what` after `ms`. */
export async function until(what: string, condition: () => Promise<boolean> | boolean, ms = 5000, everyMs = 20): Promise<void> {
  const end = Date.now() + ms;
  while (!(await condition())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what} (${ms} ms)`);
    await Bun.sleep(everyMs);
  }
}
