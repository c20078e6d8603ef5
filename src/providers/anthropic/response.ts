/** Anthropic Messages answers → OpenAI chat completions. */

import { JSON_TOOL } from "./request";

type Json = Record<string, any>;

const FINISH: Record<string, string> = { end_turn: "stop", stop_sequence: "stop", max_tokens: "length", tool_use: "tool_calls" };

export const finishReasonOf = (stopReason: unknown): string => FINISH[String(stopReason)] ?? "stop";

/**
 * OpenAI usage from Anthropic's: cache reads and writes are prompt tokens too, named as LiteLLM names
 * them (`prompt_tokens_details.cached_tokens`, `cache_creation_input_tokens`) so each has its price.
 */
export function openAiUsage(u: Json | undefined) {
  const cacheRead = u?.cache_read_input_tokens ?? 0;
  const cacheWrite = u?.cache_creation_input_tokens ?? 0;
  const prompt = (u?.input_tokens ?? 0) + cacheRead + cacheWrite;
  const completion = u?.output_tokens ?? 0;
  return {
    prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion,
    prompt_tokens_details: { cached_tokens: cacheRead }, cache_creation_input_tokens: cacheWrite, cache_read_input_tokens: cacheRead,
  };
}

/**
 * An Anthropic message as an OpenAI `chat.completion`, named after the model the client asked for.
 * With `jsonAnswer` (the request had a `response_format`), the answer tool's input is the content.
 * Thinking comes back as LiteLLM gives it: `reasoning_content` and `thinking_blocks`.
 */
export function fromAnthropic(message: Json, model: string, created = Math.floor(Date.now() / 1000), jsonAnswer = false): Json {
  let text = "";
  let reasoning = "";
  const toolCalls: Json[] = [];
  const thinking: Json[] = [];
  let answered = false;
  for (const part of (Array.isArray(message.content) ? message.content : []) as Json[]) {
    if (part?.type === "text") text += part.text;
    else if (part?.type === "thinking" || part?.type === "redacted_thinking") {
      thinking.push(part);
      if (typeof part.thinking === "string") reasoning += part.thinking;
    } else if (part?.type === "tool_use" && jsonAnswer && part.name === JSON_TOOL) {
      text += JSON.stringify(part.input ?? {});
      answered = true;
    } else if (part?.type === "tool_use") {
      toolCalls.push({ id: part.id, type: "function", function: { name: part.name, arguments: JSON.stringify(part.input ?? {}) } });
    }
  }
  const reply: Json = { role: "assistant", content: text === "" && toolCalls.length > 0 ? null : text };
  if (toolCalls.length > 0) reply.tool_calls = toolCalls;
  if (thinking.length > 0) Object.assign(reply, { reasoning_content: reasoning, thinking_blocks: thinking });
  const stop = answered && toolCalls.length === 0 && message.stop_reason === "tool_use" ? "end_turn" : message.stop_reason;
  return {
    id: message.id ?? `chatcmpl-${crypto.randomUUID()}`,
    object: "chat.completion",
    created,
    model,
    choices: [{ index: 0, message: reply, finish_reason: finishReasonOf(stop) }],
    usage: openAiUsage(message.usage),
  };
}
