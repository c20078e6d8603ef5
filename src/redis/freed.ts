import type { State } from "./lease";

type FreedListener = (key: string) => void;

/**
 * Room another instance gave back that this one asked it for (a message on `keys.freed`): admissions
 * waiting to ask Redis again for it ask now rather than at the end of their wait, and so do those who
 * listen for it (the deployment slots' waiting requests). A slot handed between two instances at a
 * deployment's cap goes in a round trip or two instead of the rest of a 25–50 ms wait.
 */
export class FreedRoom {
  private readonly listeners: FreedListener[] = [];

  /** Another instance freed room on the counter `key` (`s`: its state here, if any). */
  heard(key: string, s: State | undefined): void {
    if (s?.wakers) for (const wake of [...s.wakers]) wake();
    for (const listener of this.listeners) listener(key);
  }

  listen(listener: FreedListener): void {
    this.listeners.push(listener);
  }

  /** Waits `ms`, or until another instance frees room on one of `states`. */
  pause(ms: number, states: readonly State[]): Promise<void> {
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        for (const s of states) s.wakers?.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      for (const s of states) (s.wakers ??= new Set()).add(wake);
    });
  }
}
