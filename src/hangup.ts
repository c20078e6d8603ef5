/**
 * A reload asked for (SIGHUP) while the gateway starts has nothing to reload yet, and by default the
 * signal ends the process: until main.ts puts the reload in its place, it is ignored. This module is
 * the first the program evaluates (early.ts imports it before anything else), so the handler is in
 * place as soon as JavaScript runs; before that, while the runtime itself starts, the signal's default
 * still applies (see ignoreHangupAcrossExec for the process early.ts starts in its place).
 */
import { FFIType, dlopen } from "bun:ffi";

let report: (message: string) => void = (message) => void process.stderr.write(`litegate: ${message}\n`);
/** Where an ignored SIGHUP is reported from now on: the gateway's logger once it has one (JSON logs stay JSON). */
export const reportHangupsTo = (write: (message: string) => void) => void (report = write);
export const hangupWhileStarting = () => report("SIGHUP while starting: ignored, the config being loaded is the current one");
process.on("SIGHUP", hangupWhileStarting);

const SIGHUP = 1;
const SIG_IGN = 1;

/**
 * Sets SIGHUP to ignored for the program this process is about to become (execve): a handler does not
 * survive execve, an ignored signal does, so the new process ignores it from its first instruction until
 * its own handler is installed, runtime start included. Returns what puts this process's handler back,
 * for when the execve did not happen. Without the C library at hand (not glibc), nothing changes.
 */
export function ignoreHangupAcrossExec(): () => void {
  let libc: ReturnType<typeof openLibc>;
  try {
    libc = openLibc();
  } catch {
    return () => {};
  }
  const previous = libc.symbols.signal(SIGHUP, SIG_IGN);
  return () => {
    libc.symbols.signal(SIGHUP, previous);
    libc.close();
  };
}

function openLibc() {
  return dlopen("libc.so.6", { signal: { args: [FFIType.i32, FFIType.ptr], returns: FFIType.ptr } });
}
