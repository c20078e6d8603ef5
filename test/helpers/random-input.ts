/** What tests that send seeded random or racing requests share. */

/** A linear congruential generator: the same seed gives the same requests on every run. */
export function generator(seed: number) {
  let state = seed;
  const next = () => {
    state = (state * 1103515245 + 12345) % 2147483648;
    return state / 2147483648;
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
