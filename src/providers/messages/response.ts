/** OpenAI chat answers → Anthropic Messages answers (JSON). */

import type { Usage } from "../types";

type Json = Record<string, any>;

const STOP: Record<string, string> = { stop: "end_turn", length: "max_tokens", tool_calls: "tool_use", function_call: "tool_use", content_filter: "refusal" };

export const stopReasonOf = (finish: unknown): string => STOP[String(finish)] ?? "end_turn";

/** Anthropic's usage from a Usage: its `input_tokens` leave out the prompt read from the cache, counted apart. */
export function anthropicUsage(usage: Usage | null): Json {
  const cached = usage?.cached_tokens ?? 0;
  const written = usage?.cache_write_tokens ?? 0;
  return {
    input_tokens: Math.max(0, (usage?.prompt_tokens ?? 0) - cached - written),
    output_tokens: usage?.completion_tokens ?? 0,
    cache_creation_input_tokens: written,
    cache_read_input_tokens: cached,
  };
}

/** A tool call's arguments as the `input` object Anthropic gives; text that is not a JSON object is kept whole. */
export function inputOf(args: unknown): unknown {
  if (typeof args !== "string" || args.trim() === "") return {};
  try {
    const parsed = JSON.parse(args);
    return typeof parsed === "object" && parsed !== null && !Array.isArray(parsed) ? parsed : { value: parsed };
  } catch {
    return { arguments: args };
  }
}

/** A tool call's name as the client named the tool (see `cutToolNames`). */
export const toolNameOf = (name: unknown, names?: Map<string, string>): string => {
  const called = String(name ?? "");
  return names?.get(called) ?? called;
};

export const messageId = (id: unknown) => (typeof id === "string" && id.startsWith("msg_") ? id : `msg_${crypto.randomUUID().replaceAll("-", "")}`);

/** An OpenAI `chat.completion` as an Anthropic message, named after the model the client asked for; its tools by the client's names (see `cutToolNames`). */
export function messageOf(completion: Json, model: string, usage: Usage | null, names?: Map<string, string>): Json {
  const choice = Array.isArray(completion?.choices) ? completion.choices[0] : undefined;
  const reply = choice?.message ?? {};
  const content: Json[] = [];
  const text = typeof reply.content === "string" ? reply.content : "";
  if (text) content.push({ type: "text", text });
  for (const call of Array.isArray(reply.tool_calls) ? reply.tool_calls : []) {
    content.push({ type: "tool_use", id: String(call?.id ?? `toolu_${crypto.randomUUID()}`), name: toolNameOf(call?.function?.name, names), input: inputOf(call?.function?.arguments) });
  }
  return {
    id: messageId(completion?.id), type: "message", role: "assistant", model, content,
    stop_reason: stopReasonOf(choice?.finish_reason), stop_sequence: null, usage: anthropicUsage(usage),
  };
}
