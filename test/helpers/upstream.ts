/**
 * A fake OpenAI-compatible provider (the only fake the tests use): JSON and SSE answers with known
 * usage, a configurable delay between chunks, and faults on demand. Behaviour can be set for the
 * whole server or per request with the `x-test-behaviour` header (JSON).
 */
export interface Behaviour {
  usage: { prompt_tokens: number; completion_tokens: number };
  content: string;
  chunks: number;
  chunkDelayMs: number;
  firstByteDelayMs: number;
  status?: number;
  errorMessage?: string;
  retryAfter?: number;
  cutStreamAfterChunks?: number;
  malformedJson?: boolean;
  malformedSse?: boolean;
  omitUsage?: boolean;
  /** A chat answer's `message`, instead of one with `content`. */
  message?: Record<string, unknown>;
  /** A stream of exactly these `data:` payloads (objects JSON-encoded), `chunkDelayMs` apart, instead of the generated one. */
  events?: unknown[];
  /** After a stream's last event, the connection stays open until the gateway leaves. */
  holdOpen?: boolean;
  /** Behaviour for requests naming a model, over the rest of this behaviour. */
  models?: Record<string, Partial<Behaviour>>;
}

export interface RecordedRequest {
  path: string;
  headers: Record<string, string>;
  body: any;
  raw: string;
}

const DEFAULTS: Behaviour = { usage: { prompt_tokens: 10, completion_tokens: 20 }, content: "Hello from the test upstream", chunks: 5, chunkDelayMs: 0, firstByteDelayMs: 0 };
const encoder = new TextEncoder();

export async function startUpstream(initial: Partial<Behaviour> = {}) {
  const requests: RecordedRequest[] = [];
  const state = { behaviour: { ...DEFAULTS, ...initial } as Behaviour, inFlight: 0, maxInFlight: 0, aborted: 0 };
  /** Tagged requests (a prompt's `tag:a,b,c` word names tags a, b and c): when each came and went, and whether it was left (its connection closed). */
  let spans: { tags: string[]; start: number; end: number; left: boolean }[] = [];
  const tagsOf = (body: any): string[] => {
    const messages = Array.isArray(body?.messages) ? body.messages : [];
    const text = typeof messages.at(-1)?.content === "string" ? messages.at(-1).content : "";
    return /(?:^|\s)tag:(\S+)/.exec(text)?.[1]?.split(",") ?? [];
  };

  const server = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    idleTimeout: 60,
    async fetch(request) {
      const url = new URL(request.url);
      if (request.method === "GET") return Response.json({ object: "list", data: [{ id: "test-model", object: "model" }] });
      const raw = await request.text();
      let body: any = null;
      try {
        body = JSON.parse(raw);
      } catch {
        return Response.json({ error: { message: "upstream got invalid JSON", type: "invalid_request_error" } }, { status: 400 });
      }
      requests.push({ path: url.pathname + url.search, headers: Object.fromEntries(request.headers), body, raw });
      const override = request.headers.get("x-test-behaviour");
      const b: Behaviour = { ...state.behaviour, ...state.behaviour.models?.[body?.model], ...(override ? JSON.parse(override) : {}) };
      state.inFlight++;
      state.maxInFlight = Math.max(state.maxInFlight, state.inFlight);
      const span = { tags: tagsOf(body), start: performance.now(), end: Infinity, left: false };
      if (span.tags.length > 0) spans.push(span);
      let finished = false;
      const done = () => {
        if (!finished) {
          finished = true;
          state.inFlight--;
          span.end = performance.now();
        }
      };
      request.signal.addEventListener("abort", () => {
        if (!finished) {
          state.aborted++;
          span.left = true;
        }
        done();
      });
      if (b.firstByteDelayMs) await Bun.sleep(b.firstByteDelayMs);
      if (b.status && b.status >= 400) {
        done();
        const headers: Record<string, string> = b.retryAfter !== undefined ? { "retry-after": String(b.retryAfter) } : {};
        return Response.json({ error: { message: b.errorMessage ?? `upstream error ${b.status}`, type: "upstream_test_error", code: null } }, { status: b.status, headers });
      }
      const usage = { ...b.usage, total_tokens: b.usage.prompt_tokens + b.usage.completion_tokens };
      const model = body?.model ?? "test-model";
      if (url.pathname.endsWith("/embeddings")) {
        done();
        return Response.json({ object: "list", model, data: [{ object: "embedding", index: 0, embedding: [0.1, 0.2, 0.3] }], usage: { prompt_tokens: usage.prompt_tokens, total_tokens: usage.prompt_tokens } });
      }
      if (b.malformedJson && !body?.stream) {
        done();
        return new Response("{not json", { headers: { "content-type": "application/json" } });
      }
      const isChat = url.pathname.endsWith("/chat/completions");
      if (!body?.stream) {
        done();
        const choice = isChat ? { index: 0, message: b.message ?? { role: "assistant", content: b.content }, finish_reason: "stop" } : { index: 0, text: b.content, finish_reason: "stop" };
        return Response.json({ id: "cmpl-test", object: isChat ? "chat.completion" : "text_completion", created: 1700000000, model, choices: [choice], ...(b.omitUsage ? {} : { usage }) });
      }
      const length = b.content.length;
      const pieces = Array.from({ length: b.chunks }, (_, i) => b.content.slice(Math.floor((i * length) / b.chunks), Math.floor(((i + 1) * length) / b.chunks)));
      const chunk = (content: string) => JSON.stringify(isChat
        ? { id: "cmpl-test", object: "chat.completion.chunk", created: 1700000000, model, choices: [{ index: 0, delta: { content }, finish_reason: null }] }
        : { id: "cmpl-test", object: "text_completion", created: 1700000000, model, choices: [{ index: 0, text: content, finish_reason: null }] });
      const includeUsage = body?.stream_options?.include_usage === true && !b.omitUsage;
      const stream = new ReadableStream<Uint8Array>({
        async start(controller) {
          try {
            if (b.events) {
              for (const [i, event] of b.events.entries()) {
                if (i > 0 && b.chunkDelayMs) await Bun.sleep(b.chunkDelayMs);
                if (request.signal.aborted) return;
                controller.enqueue(encoder.encode(`data: ${typeof event === "string" ? event : JSON.stringify(event)}\n\n`));
              }
              if (b.holdOpen && !request.signal.aborted) await new Promise((left) => request.signal.addEventListener("abort", left));
              else controller.close();
              return;
            }
            for (let i = 0; i < pieces.length; i++) {
              if (i > 0 && b.chunkDelayMs) await Bun.sleep(b.chunkDelayMs);
              if (request.signal.aborted) return;
              if (b.cutStreamAfterChunks !== undefined && i === b.cutStreamAfterChunks) {
                controller.error(new Error("cut"));
                done();
                return;
              }
              controller.enqueue(encoder.encode(b.malformedSse && i === 1 ? "data: {broken\n\n" : `data: ${chunk(pieces[i]!)}\n\n`));
            }
            if (includeUsage) {
              controller.enqueue(encoder.encode(`data: ${JSON.stringify({ id: "cmpl-test", object: "chat.completion.chunk", created: 1700000000, model, choices: [], usage })}\n\n`));
            }
            controller.enqueue(encoder.encode("data: [DONE]\n\n"));
            controller.close();
          } catch {
            // the client went away
          } finally {
            done();
          }
        },
      });
      return new Response(stream, { headers: { "content-type": "text/event-stream" } });
    },
  });

  return {
    url: `http://127.0.0.1:${server.port}/v1`,
    port: server.port,
    requests,
    get behaviour() {
      return state.behaviour;
    },
    set(behaviour: Partial<Behaviour>) {
      state.behaviour = { ...state.behaviour, ...behaviour };
    },
    reset() {
      state.behaviour = { ...DEFAULTS, ...initial };
      requests.length = 0;
      state.maxInFlight = state.inFlight;
      spans = spans.filter((span) => span.end === Infinity);
    },
    get inFlight() {
      return state.inFlight;
    },
    /** The most requests it held at once since it started or was reset. */
    get maxInFlight() {
      return state.maxInFlight;
    },
    get aborted() {
      return state.aborted;
    },
    /**
     * The most requests tagged `tag` it held at once since it started or was reset, and how many it holds
     * now. A request left (its connection closed by the client before the answer ended) counts as gone
     * `leftGraceMs` before it was seen to go: whoever left it may already count it as ended.
     */
    held(tag: string, leftGraceMs = 0): { now: number; max: number } {
      const mine = spans.filter((span) => span.tags.includes(tag));
      const changes = mine.map((span) => [span.start, span.left ? span.end - leftGraceMs : span.end] as const)
        .filter(([start, end]) => end > start)
        .flatMap(([start, end]) => [[start, 1], [end, -1]] as const)
        .sort((a, b) => a[0] - b[0] || a[1] - b[1]);
      let now = 0;
      let max = 0;
      for (const [, step] of changes) max = Math.max(max, (now += step));
      return { now: mine.filter((span) => span.end === Infinity).length, max };
    },
    stop: () => server.stop(true),
  };
}

export type Upstream = Awaited<ReturnType<typeof startUpstream>>;

/** Per test upstream answer (10 prompt + 20 completion tokens) at the prices of `pricedModels`: 5e-5. */
export const PRICED_COST = 10 * 0.000001 + 20 * 0.000002;

/** A `model_list` of two priced models, `m` and `other`, both served by the test upstream at `url`. */
export const pricedModels = (url: string) => `
model_list:
  - model_name: m
    litellm_params: {model: openai/m, api_base: "${url}", api_key: fake, input_cost_per_token: 0.000001, output_cost_per_token: 0.000002}
  - model_name: other
    litellm_params: {model: openai/other, api_base: "${url}", api_key: fake, input_cost_per_token: 0.000001, output_cost_per_token: 0.000002}`;
