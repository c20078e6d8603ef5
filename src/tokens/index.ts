import type { Route } from "../providers/types";

/**
 * Token counts for when a provider reports none (and for budget reservations). A cheap, linear
 * estimate: about four characters a token for English-like text, words and punctuation counted so
 * that short or symbol-heavy text is not undercounted.
 */
export function estimateTokens(text: string): number {
  if (text.length === 0) return 0;
  let words = 0;
  let inWord = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    const letter = (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c > 127;
    if (letter) {
      if (!inWord) words++;
      inWord = true;
    } else {
      inWord = false;
      if (c > 32) words++;
    }
  }
  return Math.max(1, Math.ceil(text.length / 4), Math.ceil(words * 0.75));
}

/** Tokens of the text a client received. */
export function countTextTokens(text: string): number {
  return estimateTokens(text);
}

const PER_MESSAGE = 4;

function contentText(content: unknown): string {
  if (typeof content === "string") return content;
  if (Array.isArray(content)) {
    let text = "";
    for (const part of content) {
      if (typeof part === "string") text += part;
      else if (part && typeof part === "object" && typeof (part as { text?: unknown }).text === "string") text += (part as { text: string }).text;
    }
    return text;
  }
  return content == null ? "" : JSON.stringify(content);
}

/** Prompt tokens of a request body: chat messages, a completion prompt, or embedding input. */
export function countPromptTokens(route: Route, body: Record<string, unknown>, _exact: boolean): number {
  if (route === "chat") {
    const messages = Array.isArray(body.messages) ? body.messages : [];
    let tokens = 3;
    for (const message of messages) {
      if (!message || typeof message !== "object") continue;
      const m = message as Record<string, unknown>;
      tokens += PER_MESSAGE + estimateTokens(contentText(m.content));
      if (typeof m.name === "string") tokens += estimateTokens(m.name);
      if (m.tool_calls) tokens += estimateTokens(JSON.stringify(m.tool_calls));
    }
    if (body.tools) tokens += estimateTokens(JSON.stringify(body.tools));
    return tokens;
  }
  const input = route === "completions" ? body.prompt : body.input;
  if (Array.isArray(input)) {
    let tokens = 0;
    for (const item of input) tokens += typeof item === "number" ? 1 : Array.isArray(item) ? item.length : estimateTokens(contentText(item));
    return tokens;
  }
  return estimateTokens(contentText(input));
}
