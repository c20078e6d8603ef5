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

/** Tokens of a text with a real BPE tokenizer, or the estimate when it cannot be loaded. */
export function countTextTokens(text: string): number {
  if (text === "") return 0;
  if (bpe === undefined) bpe = loadBpe();
  return bpe ? bpe(text) : estimateTokens(text);
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
  const count = exact ? countTextTokens : estimateTokens;
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
