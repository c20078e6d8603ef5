import { openAiUsage } from "../providers/anthropic/response";
import { errorStatus } from "../providers/error-status";
import { redact, usageOf } from "../providers/http";
import { MAX_EVENT_BYTES, SSE_DONE, sseData, usageChunkOf } from "../providers/sse";
import type { Usage } from "../providers/types";

const DONE_EVENT = sseData(SSE_DONE);
const BLANK_LINE = new TextEncoder().encode("\n\n");
const LF = 10;
const CR = 13;
const encoder = new TextEncoder();
const utf8 = new TextDecoder();

/** A stream's failure as its log row gives it (see `errorInformation` in refusals.ts). */
export interface StreamFailure {
  status: number;
  type: string;
  message: string;
}

/** What an error event's error (`{message, type, code}`, or a bare string) says, with the status its code or type names. */
function failureOf(error: any, secret: string | undefined): StreamFailure {
  const message = typeof error?.message === "string" ? error.message : typeof error === "string" ? error : "Upstream sent an error event";
  return { status: errorStatus(error) ?? 502, type: typeof error?.type === "string" ? error.type : "upstream_error", message: redact(message, secret) };
}

/**
 * What becomes of one event: passed on, kept from the client, passed on as `replacement` (a provider
 * error that names the provider key), or the end of a stream that cannot be trusted.
 */
type Verdict = "forward" | "drop" | "replace" | "malformed";

/**
 * A provider's SSE stream read event by event, as the SSE rules have it: lines end with LF, CRLF or
 * CR; an event ends at a blank line; its `data:` lines are joined. Each complete event's bytes are
 * passed on unchanged and in order; an unfinished event's are held until it is complete, so a client
 * never gets half an event. On the way: the usage, the text, and whether the provider said it was done.
 */
export class SseEvents {
  usage: Usage | null = null;
  text = "";
  /** `[DONE]` came. */
  done = false;
  /**
   * The provider's usage came with or after the finish of every choice: the answer and its usage are
   * all there is, whether or not `[DONE]` follows. (Usage sent earlier, as some providers send it with
   * their first chunk or with every chunk, is not the last word.)
   */
  usageFinal = false;
  /** Choices that sent content but no finish_reason yet, and those that sent their finish_reason. */
  private open = new Set<number>();
  private ended = new Set<number>();
  /** The provider sent an error event: the client has the provider's own word on why the stream failed. */
  providerError = false;
  /** What the provider's first error event said, for the request's log row (its key blanked out). */
  failure: StreamFailure | null = null;
  /** An event that is not JSON: the provider's stream cannot be trusted past it. */
  malformed = false;
  /** Bytes of the event in progress that came in earlier chunks, and how many. */
  private held: Uint8Array[] = [];
  private heldBytes = 0;
  /** The event in progress grew past MAX_EVENT_BYTES without ending: the stream is not read further. */
  oversized = false;
  /** Pieces of the line in progress that came in earlier chunks. */
  private line: Uint8Array[] = [];
  private data: string[] = [];
  /** The last chunk ended with CR: an LF opening the next one belongs to that line break. */
  private skipLF = false;
  /** The event being read has an `error` member. */
  private error = false;
  /** The `event:` name of the event being read (`error`), "" when it has none. */
  private eventName = "";
  /** What the client gets for an event whose verdict is "replace". */
  private replacement: Uint8Array = new Uint8Array(0);
  /** The last chunk read: a usage chunk litegate makes takes its id, object, created and model. */
  private last: any = null;
  /** The stream ended inside an event (no blank line after it). */
  private unterminated = false;
  /** An Anthropic stream's usage so far, as its events report it (running totals). */
  private reported: Record<string, number> | null = null;

  constructor(
    private readonly clientWantsUsage: boolean,
    private readonly secret?: string,
    private readonly countUsage?: (text: string) => Usage,
    private readonly choices = 1,
    /** The stream is Anthropic's Messages events (`/v1/messages`), not OpenAI chunks. */
    private readonly anthropic = false,
  ) {}

  /**
   * The provider ended the answer: `[DONE]`, or a finish_reason for each of the choices asked for (a
   * choice that has not started yet is not done).
   */
  get finished(): boolean {
    return this.done || (this.ended.size >= this.choices && this.open.size === 0);
  }

  /**
   * The client has had all the provider will send that counts: `[DONE]`, or every choice finished and
   * the usage chunk (which litegate asks the provider for either way, and which comes after them).
   */
  get delivered(): boolean {
    return this.done || (this.answered && this.usage !== null);
  }

  /**
   * Finished, or the provider sent its usage (which follows its last choice) with no choice left open:
   * a provider that ignores `n` answers one choice, and that is its whole answer.
   */
  get answered(): boolean {
    return this.finished || (this.usage !== null && this.open.size === 0 && this.ended.size > 0);
  }

  /** Reads a chunk; returns the bytes to pass on (complete events), empty when none. */
  push(chunk: Uint8Array): Uint8Array[] {
    const out: Uint8Array[] = [];
    let pos = 0;
    if (this.skipLF) {
      this.skipLF = false;
      if (chunk[0] === LF) pos = 1;
    }
    // A skipped LF still travels with the bytes around it (the event it ends, or the next one).
    let eventStart = 0;
    let emitStart = 0;
    // Where the next CR is, searched again only once passed: a stream without CRs is searched once.
    let nextCR = chunk.indexOf(CR, pos);
    while (pos < chunk.length) {
      if (nextCR >= 0 && nextCR < pos) nextCR = chunk.indexOf(CR, pos);
      const lf = chunk.indexOf(LF, pos);
      const end = nextCR < 0 ? lf : lf < 0 ? nextCR : Math.min(lf, nextCR);
      if (end < 0) {
        this.line.push(chunk.subarray(pos));
        break;
      }
      let next = end + 1;
      if (chunk[end] === CR) {
        if (next < chunk.length) {
          if (chunk[next] === LF) next++;
        } else {
          this.skipLF = true;
        }
      }
      const blank = end === pos && this.line.length === 0;
      if (!blank) this.field(this.lineText(chunk.subarray(pos, end)));
      pos = next;
      if (!blank) continue;
      const verdict = this.dispatch();
      if (verdict === "forward") {
        if (this.held.length > 0) out.push(...this.held);
      } else {
        if (eventStart > emitStart) out.push(chunk.subarray(emitStart, eventStart));
        if (verdict === "replace") out.push(this.replacement);
        emitStart = next;
      }
      this.held = [];
      this.heldBytes = 0;
      eventStart = next;
      if (verdict === "malformed") {
        this.malformed = true;
        return out;
      }
    }
    if (eventStart > emitStart) out.push(chunk.subarray(emitStart, eventStart));
    if (eventStart < chunk.length) {
      this.held.push(chunk.subarray(eventStart));
      this.heldBytes += chunk.length - eventStart;
      if (this.heldBytes > MAX_EVENT_BYTES) this.oversized = true;
    }
    return out;
  }

  /** The provider's stream ended: an event it did not end with a blank line still counts. */
  end(): Uint8Array[] {
    this.unterminated = this.line.length > 0 || this.data.length > 0 || this.held.length > 0;
    if (this.line.length > 0) this.field(this.lineText(new Uint8Array(0)));
    const verdict = this.data.length > 0 ? this.dispatch() : "forward";
    const out = verdict === "forward" ? this.held : verdict === "replace" ? [this.replacement] : [];
    this.held = [];
    if (verdict === "malformed") this.malformed = true;
    return out;
  }

  private lineText(tail: Uint8Array): string {
    if (this.line.length === 0) return utf8.decode(tail);
    const text = utf8.decode(Buffer.concat([...this.line, tail]));
    this.line = [];
    return text;
  }

  private field(line: string): void {
    if (line.startsWith("data:")) this.data.push(line.charCodeAt(5) === 32 ? line.slice(6) : line.slice(5));
    else if (line.startsWith("event:")) this.eventName = line.charCodeAt(6) === 32 ? line.slice(7) : line.slice(6);
    // Comments, id: and retry: say nothing litegate reads.
  }

  private dispatch(): Verdict {
    const data = this.data;
    if (data.length === 0) {
      // An event with no data is not dispatched: its name goes with it, as the SSE rules have it.
      this.eventName = "";
      return "forward";
    }
    this.data = [];
    this.error = false;
    const verdict = this.verdictOf(data);
    const name = this.eventName;
    this.eventName = "";
    return this.error && verdict === "forward" ? this.redacted(data, name) : verdict;
  }

  private verdictOf(data: string[]): Verdict {
    if (data.length === 1) return this.read(data[0]!);
    const joined = this.read(data.join("\n"));
    if (joined !== "malformed") return joined;
    // Some servers write one JSON chunk per data line with no blank line between: read each, and pass
    // each on as an event of its own, for a client joins an event's lines, which would not be JSON.
    const events: Uint8Array[] = [];
    for (const payload of data) {
      this.error = false;
      const verdict = this.read(payload);
      if (verdict === "malformed") return "malformed";
      if (verdict === "replace") events.push(this.replacement);
      else if (verdict === "forward") events.push(encoder.encode(`data: ${this.error ? redact(payload, this.secret) : payload}\n\n`));
    }
    this.replacement = Buffer.concat(events);
    return "replace";
  }

  /**
   * The provider's stream ended, complete, without `[DONE]` (every choice finished): the usage chunk a
   * client asked for and the provider did not send, and `[DONE]`, which clients reading to it wait for.
   * Null when `[DONE]` came.
   */
  closing(): Uint8Array | null {
    if (this.done) return null;
    const added = this.madeUsage() ?? DONE_EVENT;
    // After a last event the provider did not end with its blank line, the blank line first.
    return this.unterminated ? Buffer.concat([BLANK_LINE, added]) : added;
  }

  /**
   * The usage chunk the provider did not send, counted, then `[DONE]`, for a client that asked for usage
   * (that count is then the stream's usage); null when the client did not ask or the provider sent one.
   */
  private madeUsage(): Uint8Array | null {
    if (!this.clientWantsUsage || this.usage || !this.countUsage) return null;
    const usage = (this.usage = this.countUsage(this.text));
    const last = this.last;
    const chunk = usageChunkOf(last?.id ?? null, last?.model ?? null, last?.created ?? Math.floor(Date.now() / 1000),
      { prompt_tokens: usage.prompt_tokens, completion_tokens: usage.completion_tokens, total_tokens: usage.total_tokens });
    // A legacy completions stream's chunks are `text_completion`: the usage chunk is one of them.
    if (last?.object) chunk.object = last.object;
    return Buffer.concat([sseData(chunk), DONE_EVENT]);
  }

  /**
   * An event named `error` whose data has no `error` member (`{"message": …}`, Anthropic's bare
   * `{"type": "overloaded_error", …}`): passed on as the OpenAI envelope clients read an error from,
   * with the provider's words, its key blanked out.
   */
  private asError(chunk: any): Verdict {
    this.error = this.providerError = true;
    const failure = failureOf(chunk, this.secret);
    this.failure ??= failure;
    const error = { error: { message: failure.message, type: failure.type, param: null, code: String(failure.status) } };
    this.replacement = encoder.encode(`data: ${redact(JSON.stringify(error), this.secret)}\n\n`);
    return "replace";
  }

  /**
   * A provider's error event, with the provider key (or its masked echo) blanked out if it names it; its
   * name kept (Anthropic's SDK reads an error from an event named `error` only).
   */
  private redacted(data: string[], name: string): Verdict {
    const lines = data.map((line) => redact(line, this.secret));
    if (lines.every((line, i) => line === data[i])) return "forward";
    this.replacement = encoder.encode(`${name ? `event: ${name}\n` : ""}${lines.map((line) => `data: ${line}\n`).join("")}\n`);
    return "replace";
  }

  private read(payload: string): Verdict {
    const data = payload.trim();
    if (data === "") return "forward";
    if (data === "[DONE]") {
      this.done = true;
      const made = this.madeUsage();
      if (!made) return "forward";
      this.replacement = made;
      return "replace";
    }
    let chunk: any;
    try {
      chunk = JSON.parse(data);
    } catch {
      return "malformed";
    }
    this.last = chunk;
    // As in a JSON answer (see `errorInAnswer`), an `error` that is null, "" or false is none: some servers send `"error": null` in every chunk.
    const error = chunk?.error;
    const failed = error !== undefined && error !== null && error !== "" && error !== false;
    if (failed) {
      this.error = this.providerError = true;
      this.failure ??= failureOf(chunk.error, this.secret);
    } else if (this.eventName === "error") {
      // Passed on as it is to a client of Anthropic's API; as the OpenAI envelope to the others.
      if (!this.anthropic) return this.asError(chunk);
      this.error = this.providerError = true;
      this.failure ??= failureOf(chunk, this.secret);
    }
    if (this.anthropic) return this.readEvent(chunk);
    const usage = usageOf(chunk?.usage);
    if (usage) this.usage = usage;
    const choices = chunk?.choices;
    if (!Array.isArray(choices)) {
      if (usage && this.finished) this.usageFinal = true;
      // A usage chunk some servers send with no choices list at all: kept from a client that did not ask, as one with `[]` is.
      return usage && !this.clientWantsUsage && !failed ? "drop" : "forward";
    }
    for (const choice of choices) {
      const index = typeof choice?.index === "number" ? choice.index : 0;
      if (choice?.finish_reason) {
        this.ended.add(index);
        this.open.delete(index);
      } else {
        this.open.add(index);
      }
      this.text += typeof choice?.text === "string" ? choice.text : textOfAnswer(choice?.delta);
    }
    if (usage && this.finished) this.usageFinal = true;
    return usage && choices.length === 0 && !this.clientWantsUsage ? "drop" : "forward";
  }

  /**
   * An Anthropic Messages event: the usage of message_start and message_delta (running totals: a
   * count never goes down), the text of each delta and tool call, the end at message_stop.
   */
  private readEvent(event: any): Verdict {
    const type = event?.type;
    if (type === "message_start" || type === "message_delta") {
      const counts = (type === "message_start" ? event.message?.usage : event.usage) ?? {};
      const reported = (this.reported ??= {});
      for (const [name, value] of Object.entries(counts)) {
        if (typeof value === "number" && Number.isFinite(value) && !(value < (reported[name] ?? 0))) reported[name] = value;
      }
      this.usage = usageOf(openAiUsage(reported));
    } else if (type === "content_block_start" && event.content_block?.type === "tool_use") this.text += stringOr(event.content_block.name);
    else if (type === "content_block_delta") this.text += stringOr(event.delta?.text) + stringOr(event.delta?.thinking) + stringOr(event.delta?.partial_json);
    else if (type === "message_stop") this.done = true;
    return "forward";
  }
}

const stringOr = (value: unknown): string => (typeof value === "string" ? value : "");

/**
 * The text of a chat answer (a `message`, or a stream's `delta`) that the provider bills as completion
 * tokens: its content, a refusal, its reasoning, and the names and arguments of the tools or the
 * (legacy) function it calls.
 */
export function textOfAnswer(answer: any): string {
  if (!answer || typeof answer !== "object") return "";
  let text = stringOr(answer.content) + stringOr(answer.refusal);
  // Reasoning is billed as output. One text may come under several names (LiteLLM sends `reasoning_content`
  // and `thinking_blocks`, vLLM both spellings): the first given is counted, once. An answer without
  // reasoning costs three missed lookups.
  if (typeof answer.reasoning_content === "string") text += answer.reasoning_content;
  else if (typeof answer.reasoning === "string") text += answer.reasoning;
  else if (Array.isArray(answer.thinking_blocks)) for (const block of answer.thinking_blocks) text += stringOr(block?.thinking);
  const call = answer.function_call;
  if (call) text += stringOr(call.name) + stringOr(call.arguments);
  if (Array.isArray(answer.tool_calls)) for (const tool of answer.tool_calls) text += stringOr(tool?.function?.name) + stringOr(tool?.function?.arguments);
  return text;
}

/** The text of an answer the provider sent without usage, for counting its tokens. */
export function completionTextOf(body: string): string {
  let answer: any;
  try {
    answer = JSON.parse(body);
  } catch {
    return "";
  }
  let text = "";
  // An Anthropic message (`/v1/messages`): its text, thinking and tool uses.
  for (const block of Array.isArray(answer?.content) ? answer.content : []) {
    text += stringOr(block?.text) + stringOr(block?.thinking) + (block?.type === "tool_use" ? stringOr(block.name) + JSON.stringify(block.input ?? {}) : "");
  }
  for (const choice of Array.isArray(answer?.choices) ? answer.choices : []) {
    text += typeof choice?.text === "string" ? choice.text : textOfAnswer(choice?.message);
  }
  return text;
}
