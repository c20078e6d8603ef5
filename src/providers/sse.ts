const encoder = new TextEncoder();

/** One Server-Sent Event line as OpenAI sends it. */
export function sseData(value: unknown): Uint8Array {
  return encoder.encode(`data: ${typeof value === "string" ? value : JSON.stringify(value)}\n\n`);
}

export const SSE_DONE = "[DONE]";

export function chunkOf(id: string, model: string, created: number, delta: Record<string, unknown>, finish: string | null = null) {
  return { id, object: "chat.completion.chunk", created, model, choices: [{ index: 0, delta, finish_reason: finish }] };
}

export function usageChunkOf(id: string | null, model: string | null, created: number, usage: object) {
  return { id, object: "chat.completion.chunk", created, model, choices: [], usage };
}

/**
 * The most of one stream event litegate holds while waiting for its end: a provider sending an event
 * that never ends would otherwise be held in memory without bound. OpenAI's largest chunks (a whole
 * tool call's arguments, a base64 image) are a few MB.
 */
export const MAX_EVENT_BYTES = 16 * 1024 * 1024;
