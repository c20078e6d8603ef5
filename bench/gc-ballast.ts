/**
 * Preloaded into the bare proxy by `bench/gc-pauses.ts` (`bun --preload`): gives it what the gateway
 * carries, one thing at a time, to see what makes the collector's young pauses longer.
 * - GC_SPIN_US: a busy wait of that many µs in every request (the gateway's extra CPU, without its heap).
 * - GC_BALLAST=kind:count: objects kept alive for the process's life. Kinds: `called` (functions, each
 *   called once, so each has compiled code), `uncalled` (functions never called), `shapes` (objects of as
 *   many different shapes), `objects` (objects of one shape).
 * - GC_IMPORTS=a,b: packages imported and kept (their module code and what their top level makes).
 */
const spinUs = Number(process.env.GC_SPIN_US ?? 0);
const [kind, countText] = (process.env.GC_BALLAST ?? ":0").split(":");
const count = Number(countText);
const kept: unknown[] = [];

function functions(n: number, call: boolean): void {
  const names = Array.from({ length: n }, (_, i) => `f${i}`);
  const source = names.map((name, i) => `function ${name}(a) { return a + ${i}; }`).join("\n");
  const made = new Function(`${source}\nreturn [${names.join(",")}];`)() as ((a: number) => number)[];
  if (call) for (const f of made) f(1);
  kept.push(made);
}

if (kind === "called" || kind === "uncalled") functions(count, kind === "called");
if (kind === "shapes") for (let i = 0; i < count; i++) kept.push({ [`p${i}`]: i });
if (kind === "objects") for (let i = 0; i < count; i++) kept.push({ p: i });
for (const name of (process.env.GC_IMPORTS ?? "").split(",").filter(Boolean)) kept.push(await import(name));
(globalThis as Record<string, unknown>).gcBallast = kept;

if (spinUs > 0) {
  const serve = Bun.serve;
  Bun.serve = ((options: { fetch: (request: Request) => unknown }) => serve({
    ...options,
    fetch(request: Request) {
      const until = performance.now() + spinUs / 1000;
      while (performance.now() < until) {
        // the gateway's own work, as CPU time only
      }
      return options.fetch(request);
    },
  } as Parameters<typeof serve>[0])) as typeof Bun.serve;
}

export {};
