import type { Route } from "../providers/types";
import { cl100kCounter } from "./bpe";

/**
 * Token counts for when a provider reports none, and cheap estimates for budget reservations.
 *
 * The exact count uses the cl100k_base BPE: within a few percent of o200k for English, and no encoding
 * is exact for every provider anyway. Its ranks are read on first use (a few milliseconds, about 2 MB).
 */

type Counter = (text: string) => number;

/** Loaded once per process; null when the ranks could not be read (the estimate stands in). */
let bpe: Counter | null | undefined;

function loadBpe(): Counter | null {
  try {
    return cl100kCounter();
  } catch {
    return null;
  }
}

/**
 * A cheap estimate meant to be at or above what a tokenizer counts, for reservations (a reservation
 * too low lets a burst overspend a budget). No tokenizer: one native UTF-8 length, about as cheap as
 * the length itself. ASCII counts a token per three characters (English prose is four to five in
 * cl100k, code about three). Each byte past the first of a character counts half a token more: a
 * two-byte character (Cyrillic, Greek, Arabic, accented Latin) 0.83 tokens, cl100k gives 0.4 to 0.85;
 * a three-byte one (CJK, kana, Hangul, Devanagari, Thai) 1.33, cl100k gives 1 to 1.26 (CJK 1.1) and
 * o200k less. Text it undercounts: base64, long digit runs and dense JSON (1.4 to 2 characters a
 * token), emoji (about 1.5 tokens per UTF-16 unit).
 */
export function estimateTokens(text: string): number {
  const extraBytes = Buffer.byteLength(text, "utf8") - text.length;
  return Math.ceil(text.length / 3 + extraBytes / 2);
}

/** Characters one count tokenizes at most (5 to 30 ms); past them it extrapolates. */
export const EXACT_CHARS = 100_000;

/** A run of letters, digits or spaces longer than this is tokenized in pieces of this size. */
const RUN_PIECE = 128;
const LONG_RUN = new RegExp(`\\S{${RUN_PIECE + 1},}|\\s{${RUN_PIECE + 1},}`);
const LONG_RUNS = new RegExp(LONG_RUN.source, "g");

/**
 * Tokens of a text with the BPE tokenizer, or the estimate when it cannot be loaded. The tokenizer's
 * merges take time quadratic in the length of one unbroken run: 50,000 letters "a" in a row take 1.3 s
 * of the event loop, 20,000 CJK characters 1 s. Long runs are therefore counted in pieces (a piece
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

/**
 * An image part, as the estimate and the count take it (the provider bills it however it scales it):
 * OpenAI's `detail: "low"` is 85 tokens; any other is the most a large one costs on the common models,
 * 2,000 (gpt-4o's high detail reaches 1,445 at 8 tiles, Claude about 1,600 at 1.15 megapixels, Gemini
 * 258 a tile). Models that bill images as far more tokens at a lower price (gpt-4o-mini) go past it.
 */
const IMAGE_LOW_DETAIL = 85;
const IMAGE = 2_000;
/**
 * Audio is billed about a token per 100 ms. Its length is guessed from its size at a low bitrate, so
 * the guess is high: WAV as 8 kHz 16-bit mono (1,600 bytes per 100 ms), any other format as compressed
 * speech at 32 kbit/s (400 bytes per 100 ms). Base64 holds three bytes in four characters.
 */
const WAV_BYTES_PER_TOKEN = 1_600;
const AUDIO_BYTES_PER_TOKEN = 400;

function audioTokens(audio: unknown): number {
  const a = audio as { data?: unknown; format?: unknown } | null;
  if (typeof a?.data !== "string") return 0;
  const bytes = (a.data.length * 3) / 4;
  return Math.ceil(bytes / (a.format === "wav" ? WAV_BYTES_PER_TOKEN : AUDIO_BYTES_PER_TOKEN));
}

function imageTokens(image: unknown): number {
  const detail = typeof image === "object" && image !== null ? (image as { detail?: unknown }).detail : undefined;
  return detail === "low" ? IMAGE_LOW_DETAIL : IMAGE;
}

/** The text of a message's content, and what its images and audio add, in tokens. */
function contentOf(content: unknown): { text: string; media: number } {
  if (typeof content === "string") return { text: content, media: 0 };
  if (Array.isArray(content)) {
    let text = "";
    let media = 0;
    for (const part of content) {
      if (typeof part === "string") {
        text += part;
        continue;
      }
      const p = part as Record<string, unknown> | null;
      if (typeof p?.text === "string") text += p.text;
      else if (typeof p?.refusal === "string") text += p.refusal;
      else if (p?.type === "image_url" || p?.type === "image") media += imageTokens(p.image_url);
      else if (p?.type === "input_audio") media += audioTokens(p.input_audio);
    }
    return { text, media };
  }
  return { text: content == null ? "" : JSON.stringify(content), media: 0 };
}

function contentTokens(content: unknown, count: Counter): number {
  const { text, media } = contentOf(content);
  return count(text) + media;
}

/** Request fields the provider writes into the prompt: tool and function definitions, a response schema. */
const DEFINITIONS = ["tools", "functions", "response_format"] as const;

/**
 * Prompt tokens of a request body: chat messages (their images and audio too), a completion prompt, or
 * embedding input. `exact` counts text with the tokenizer (to charge a request the provider gave no
 * usage for); otherwise with the estimate (to reserve before it is sent).
 */
export function countPromptTokens(route: Route, body: Record<string, unknown>, exact: boolean): number {
  const count = exact ? boundedCounter() : estimateTokens;
  if (route === "chat") {
    const messages = Array.isArray(body.messages) ? body.messages : [];
    let tokens = REPLY_PRIMING;
    for (const message of messages) {
      if (!message || typeof message !== "object") continue;
      const m = message as Record<string, unknown>;
      tokens += PER_MESSAGE + count(String(m.role ?? "")) + contentTokens(m.content, count);
      if (typeof m.name === "string") tokens += PER_NAME + count(m.name);
      if (m.tool_calls) tokens += count(JSON.stringify(m.tool_calls));
      if (m.function_call) tokens += count(JSON.stringify(m.function_call));
    }
    for (const field of DEFINITIONS) {
      const value = body[field];
      // A plain `{"type": "json_object"}` or "text" format adds nothing worth counting; a schema does.
      if (value && !(field === "response_format" && !(value as { json_schema?: unknown }).json_schema)) tokens += count(JSON.stringify(value));
    }
    return tokens;
  }
  const input = route === "completions" ? body.prompt : body.input;
  if (!Array.isArray(input)) return contentTokens(input, count);
  // A flat array of numbers is a prompt already given as tokens; otherwise a batch of prompts.
  if (input.every((item) => typeof item === "number")) return input.length;
  let tokens = 0;
  for (const item of input) tokens += Array.isArray(item) ? item.length : contentTokens(item, count);
  return tokens;
}
