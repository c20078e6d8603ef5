/** What tests that send seeded random or racing requests share. */

/**
 * A seeded generator: the same seed gives the same requests on every run. Each draw mixes a Weyl
 * sequence's next value through multiplications and shifts, so that consecutive draws are independent of
 * each other (a plain linear congruential generator ties a draw to the one before it: a key picked from
 * six then decides much of the kind of request picked next).
 */
export function generator(seed: number) {
  let state = seed >>> 0;
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let z = state;
    z = Math.imul(z ^ (z >>> 15), z | 1);
    z ^= z + Math.imul(z ^ (z >>> 7), z | 61);
    return ((z ^ (z >>> 14)) >>> 0) / 4294967296;
  };
  return { next, pick: <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)] };
}

/**
 * What is wrong with an answer, if anything: a 5xx, a stream that does not end as its API ends one, a body
 * that is not JSON, or a refusal not in the envelope.
 */
export function answerFault(status: number, text: string, type: string | null = "application/json"): string | undefined {
  if (status >= 500) return "server error";
  if (status < 400 && type?.startsWith("text/event-stream")) {
    return /data: \[DONE\]\n\n$|event: message_stop\ndata: .*\n\n$/.test(text) ? undefined : "stream not ended";
  }
  let body: any;
  try {
    body = JSON.parse(text);
  } catch {
    return "not JSON";
  }
  if (status < 400) return undefined;
  if (typeof body?.error?.message !== "string") return "no error envelope";
  if (body.error.code !== String(status)) return `envelope code ${body.error.code}`;
  return undefined;
}
