/**
 * Anthropic Messages request → OpenAI chat request, for deployments that speak the OpenAI API: text,
 * images, tool definitions, tool calls and their results. Thinking blocks and `thinking`, `top_k` and
 * Anthropic's server tools have no OpenAI equivalent: the blocks and fields are left out, a server tool is refused.
 */

import { createHash } from "node:crypto";

type Json = Record<string, any>;

const isObject = (value: unknown): value is Json => typeof value === "object" && value !== null && !Array.isArray(value);

/** The text of a string or of a list of blocks (text blocks only). */
export function textOfBlocks(content: unknown): string {
  if (typeof content === "string") return content;
  if (!Array.isArray(content)) return "";
  return content.map((block) => (block?.type === "text" && typeof block.text === "string" ? block.text : "")).join("");
}

function imagePart(block: Json): Json | null {
  const source = block.source;
  if (source?.type === "base64") return { type: "image_url", image_url: { url: `data:${source.media_type};base64,${source.data}` } };
  if (source?.type === "url" && typeof source.url === "string") return { type: "image_url", image_url: { url: source.url } };
  return null;
}

/** A user turn: its tool results first (each a `tool` message, as OpenAI wants them), then its text and images. */
function userMessages(content: unknown): Json[] {
  if (typeof content === "string") return [{ role: "user", content }];
  const out: Json[] = [];
  const parts: Json[] = [];
  for (const block of content as Json[]) {
    if (block.type === "tool_result") {
      const text = textOfBlocks(block.content);
      out.push({ role: "tool", tool_call_id: String(block.tool_use_id ?? ""), content: block.is_error === true ? `Error: ${text}` : text });
    } else if (block.type === "text" && typeof block.text === "string") parts.push({ type: "text", text: block.text });
    else if (block.type === "image") {
      const image = imagePart(block);
      if (image) parts.push(image);
    }
  }
  if (parts.length > 0) out.push({ role: "user", content: parts.every((p) => p.type === "text") ? parts.map((p) => p.text).join("") : parts });
  return out;
}

/** The longest tool name OpenAI takes; Anthropic takes longer ones (MCP tools' often are). */
const MAX_TOOL_NAME = 64;

/** A tool's name as OpenAI takes it: a longer one is cut to 55 characters and a hash of the whole, as LiteLLM cuts it. */
export function openAiToolName(name: string): string {
  if (name.length <= MAX_TOOL_NAME) return name;
  return `${name.slice(0, MAX_TOOL_NAME - 9)}_${createHash("sha256").update(name).digest("hex").slice(0, 8)}`;
}

/** The names of a request's tools that were cut for OpenAI, by the name the provider knows them by: its tool calls are answered under the client's. */
export function cutToolNames(body: Json): Map<string, string> | undefined {
  let names: Map<string, string> | undefined;
  for (const tool of Array.isArray(body.tools) ? body.tools : []) {
    const name = String(tool?.name ?? "");
    if (name.length > MAX_TOOL_NAME) (names ??= new Map()).set(openAiToolName(name), name);
  }
  return names;
}

/** An assistant turn: its text, and its tool uses as tool calls. */
function assistantMessage(content: unknown): Json {
  if (typeof content === "string") return { role: "assistant", content };
  const calls = (content as Json[])
    .filter((block) => block.type === "tool_use")
    .map((block) => ({ id: String(block.id ?? ""), type: "function", function: { name: openAiToolName(String(block.name ?? "")), arguments: JSON.stringify(block.input ?? {}) } }));
  const message: Json = { role: "assistant", content: textOfBlocks(content) || (calls.length > 0 ? null : "") };
  if (calls.length > 0) message.tool_calls = calls;
  return message;
}

function toolChoiceOf(choice: Json): unknown {
  if (choice.type === "any") return "required";
  if (choice.type === "tool") return { type: "function", function: { name: typeof choice.name === "string" ? openAiToolName(choice.name) : choice.name } };
  if (choice.type === "none") return "none";
  return "auto";
}

/** A tool Anthropic runs itself (`web_search_…`, `bash_…`): nothing an OpenAI-compatible model can be given. */
export const serverToolOf = (body: Json): Json | undefined =>
  Array.isArray(body.tools) ? body.tools.find((tool: unknown) => !isObject(tool) || !isObject(tool.input_schema)) : undefined;

/** The OpenAI chat request for an Anthropic Messages request (its `model` kept: the adapter names the upstream one). */
export function chatRequestOf(body: Json): Json {
  const messages: Json[] = [];
  const system = textOfBlocks(body.system);
  if (system) messages.push({ role: "system", content: system });
  for (const m of Array.isArray(body.messages) ? body.messages : []) {
    if (!isObject(m)) continue;
    if (m.role === "assistant") messages.push(assistantMessage(m.content));
    else messages.push(...userMessages(m.content));
  }
  const chat: Json = { model: body.model, messages, max_tokens: body.max_tokens };
  for (const field of ["temperature", "top_p", "stream"]) if (body[field] !== undefined) chat[field] = body[field];
  if (Array.isArray(body.stop_sequences)) chat.stop = body.stop_sequences;
  if (typeof body.metadata?.user_id === "string") chat.user = body.metadata.user_id;
  if (Array.isArray(body.tools) && body.tools.length > 0) {
    chat.tools = body.tools.map((tool: Json) => ({ type: "function", function: { name: typeof tool.name === "string" ? openAiToolName(tool.name) : tool.name, description: tool.description, parameters: tool.input_schema } }));
  }
  if (isObject(body.tool_choice)) {
    chat.tool_choice = toolChoiceOf(body.tool_choice);
    if (body.tool_choice.disable_parallel_tool_use === true) chat.parallel_tool_calls = false;
  }
  return chat;
}
