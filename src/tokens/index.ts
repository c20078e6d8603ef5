import type { Route } from "../providers/types";

/**
 * Token counts for when a provider reports none, and cheap estimates for budget reservations.
 *
 * The exact count uses the cl100k_base BPE: within a few percent of o200k for English, with half its
 * load time and memory, and no encoding is exact for every provider anyway. It is loaded on first use
 * only (about 50 ms and 50 MB), so starting the gateway does not pay for it.
 */

type Counter = (text: string) => number;

/** Loaded once per process; a module import is itself process-wide, this only remembers the outcome. */
let bpe: Counter | null | undefined;

function loadBpe(): Counter | null {
  try {
    const encoding = require("gpt-tokenizer/encoding/cl100k_base") as { countTokens(text: string, options?: object): number };
    // Text that looks like a special token (`<|endoftext|>`) is counted as the plain text it is.
    const options = { disallowedSpecial: new Set<string>() };
    return (text) => encoding.countTokens(text, options);
  } catch {
    return null;
  }
}

/** A linear estimate, no tokenizer: about four characters a token. */
export function estimateTokens(text: string): number {
  return Math.ceil(text.length / 4);
}

/** Characters one count tokenizes at most (5 to 30 ms); past them it extrapolates. */
export const EXACT_CHARS = 100_000;

/** A run of letters, digits or spaces longer than this is tokenized in pieces of this size. */
const RUN_PIECE = 128;
const LONG_RUN = new RegExp(`\\S{${RUN_PIECE + 1},}|\\s{${RUN_PIECE + 1},}`);
const LONG_RUNS = new RegExp(LONG_RUN.source, "g");

/**
 * Tokens of a text with the BPE tokenizer, or the estimate when it cannot be loaded. The tokenizer's
 * merges take time quadratic in the length of one unbroken run: 200,000 letters "a" in a row took 39 s
 * of the event loop, 50,000 CJK characters 16 s. Long runs are therefore counted in pieces (a piece
 * boundary may add a token: a few per thousand characters of such text, none in ordinary text).
 */
function bpeTokens(text: string): number {
  if (bpe === undefined) bpe = loadBpe();
  const count = bpe;
  if (!count) return estimateTokens(text);
  if (!LONG_RUN.test(text)) return count(text);
  let tokens = 0;
  let from = 0;
  for (const run of text.matchAll(LONG_RUNS)) {
    if (run.index > from) tokens += count(text.slice(from, run.index));
    const end = run.index + run[0].length;
    for (let at = run.index; at < end; ) {
      let cut = Math.min(at + RUN_PIECE, end);
      // Never between the two halves of a surrogate pair.
      if (cut < end && text.charCodeAt(cut - 1) >= 0xd800 && text.charCodeAt(cut - 1) <= 0xdbff) cut--;
      tokens += count(text.slice(at, cut));
      at = cut;
    }
    from = end;
  }
  if (from < text.length) tokens += count(text.slice(from));
  return tokens;
}

/**
 * A counter over the texts of one request: exact for the first EXACT_CHARS characters, then at the
 * tokens-per-character rate seen so far. The tokenizer runs on the event loop at about 20 MB/s: a
 * 30 MB prompt counted exactly would stall every request in flight for over a second.
 */
function boundedCounter(): Counter {
  let chars = 0;
  let tokens = 0;
  return (text) => {
    if (text === "") return 0;
    const exact = text.length <= EXACT_CHARS - chars ? text : text.slice(0, Math.max(0, EXACT_CHARS - chars));
    const counted = exact === "" ? 0 : bpeTokens(exact);
    chars += exact.length;
    tokens += counted;
    const rest = text.length - exact.length;
    return counted + (rest === 0 ? 0 : chars > 0 ? Math.ceil((rest * tokens) / chars) : estimateTokens(text));
  };
}

/** Tokens of a text with a real BPE tokenizer (sampled past EXACT_CHARS), or the estimate when it cannot be loaded. */
export function countTextTokens(text: string): number {
  return boundedCounter()(text);
}

/** Per-message framing (`<|start|>role … <|end|>`), as OpenAI's own counting guide describes it. */
const PER_MESSAGE = 3;
const PER_NAME = 1;
/** Every reply is primed with `<|start|>assistant<|message|>`. */
const REPLY_PRIMING = 3;

function contentText(content: unknown): string {
  if (typeof content === "string") return content;
  if (Array.isArray(content)) {
    let text = "";
    for (const part of content) {
      if (typeof part === "string") text += part;
      else if (typeof (part as { text?: unknown } | null)?.text === "string") text += (part as { text: string }).text;
    }
    return text;
  }
  return content == null ? "" : JSON.stringify(content);
}

/** Prompt tokens of a request body: chat messages, a completion prompt, or embedding input. */
export function countPromptTokens(route: Route, body: Record<string, unknown>, exact: boolean): number {
  const count = exact ? boundedCounter() : estimateTokens;
  if (route === "chat") {
    const messages = Array.isArray(body.messages) ? body.messages : [];
    let tokens = REPLY_PRIMING;
    for (const message of messages) {
      if (!message || typeof message !== "object") continue;
      const m = message as Record<string, unknown>;
      tokens += PER_MESSAGE + count(String(m.role ?? "")) + count(contentText(m.content));
      if (typeof m.name === "string") tokens += PER_NAME + count(m.name);
      if (m.tool_calls) tokens += count(JSON.stringify(m.tool_calls));
    }
    if (body.tools) tokens += count(JSON.stringify(body.tools));
    return tokens;
  }
  const input = route === "completions" ? body.prompt : body.input;
  if (!Array.isArray(input)) return count(contentText(input));
  // A flat array of numbers is a prompt already given as tokens; otherwise a batch of prompts.
  if (input.every((item) => typeof item === "number")) return input.length;
  let tokens = 0;
  for (const item of input) tokens += Array.isArray(item) ? item.length : count(contentText(item));
  return tokens;
}
