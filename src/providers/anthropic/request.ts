/** OpenAI chat request → Anthropic Messages request. */

type Json = Record<string, any>;

export const DEFAULT_MAX_TOKENS = 4096;

/** The tool an OpenAI `response_format` becomes: Anthropic answers through it, and the answer is its input. */
export const JSON_TOOL = "json_tool_call";

/** Thinking budgets for OpenAI's `reasoning_effort`, as LiteLLM maps them (Anthropic's minimum is 1024). */
const THINKING_BUDGET: Record<string, number> = { minimal: 1024, low: 1024, medium: 2048, high: 4096 };

/** Anthropic's prompt-cache marker, kept where a client put it (a part, a message or a tool). */
const withCache = (block: Json, from: unknown): Json =>
  from && typeof from === "object" && (from as Json).cache_control ? { ...block, cache_control: (from as Json).cache_control } : block;

function textOf(content: unknown): string {
  if (typeof content === "string") return content;
  if (Array.isArray(content)) return content.map((part) => (typeof part?.text === "string" ? part.text : "")).join("");
  return "";
}

function imageBlock(url: string): Json {
  const inline = /^data:([^;,]+);base64,(.*)$/s.exec(url);
  return inline
    ? { type: "image", source: { type: "base64", media_type: inline[1], data: inline[2] } }
    : { type: "image", source: { type: "url", url } };
}

/** Content blocks of an OpenAI message: text and images; parts Anthropic has no equivalent for are left out. */
function blocksOf(content: unknown): Json[] {
  if (typeof content === "string") return content === "" ? [] : [{ type: "text", text: content }];
  if (!Array.isArray(content)) return [];
  const blocks: Json[] = [];
  for (const part of content) {
    if (typeof part === "string") blocks.push({ type: "text", text: part });
    else if (part?.type === "image_url") {
      const url = typeof part.image_url === "string" ? part.image_url : part.image_url?.url;
      if (typeof url === "string") blocks.push(withCache(imageBlock(url), part));
    } else if (typeof part?.text === "string") blocks.push(withCache({ type: "text", text: part.text }, part));
  }
  return blocks;
}

/** A message's blocks, with a `cache_control` set on the whole message carried by its last block. */
function messageBlocks(m: Json, blocks: Json[]): Json[] {
  if (m.cache_control && blocks.length > 0) blocks[blocks.length - 1] = withCache(blocks[blocks.length - 1], m);
  return blocks;
}

/** Thinking blocks an assistant turn carries back (LiteLLM's `thinking_blocks`), first as Anthropic wants them. */
const thinkingBlocksOf = (m: Json): Json[] =>
  Array.isArray(m.thinking_blocks) ? m.thinking_blocks.filter((b: Json) => b?.type === "thinking" || b?.type === "redacted_thinking") : [];

function toolUseBlock(call: Json): Json {
  let input: unknown = {};
  try {
    input = JSON.parse(call.function?.arguments || "{}");
  } catch {
    // Arguments a model produced as broken JSON: sent as a raw string so nothing is lost.
    input = { arguments: call.function?.arguments };
  }
  return { type: "tool_use", id: call.id, name: call.function?.name, input };
}

/** Anthropic wants alternating turns: consecutive messages of one role (a run of tool results) become one. */
function appendTurn(messages: Json[], role: "user" | "assistant", blocks: Json[]): void {
  const last = messages.at(-1);
  if (last && last.role === role) last.content.push(...blocks);
  else messages.push({ role, content: blocks });
}

function toolChoiceOf(body: Json): Json | undefined {
  const choice = body.tool_choice;
  let out: Json | undefined;
  if (choice === "auto") out = { type: "auto" };
  else if (choice === "required") out = { type: "any" };
  else if (choice === "none") out = { type: "none" };
  else if (choice?.type === "function" && choice.function?.name) out = { type: "tool", name: choice.function.name };
  if (body.parallel_tool_calls === false && out?.type !== "none") out = { ...(out ?? { type: "auto" }), disable_parallel_tool_use: true };
  return out;
}

const named = (value: unknown): boolean => typeof value === "object" && value !== null && typeof (value as Json).name === "string" && (value as Json).name !== "";

/**
 * What in an OpenAI chat body cannot become a Messages request: a function tool or a tool call without a
 * function name (OpenAI refuses those too). Null when the body translates.
 */
export function malformedForAnthropic(body: Json): { param: string; message: string } | null {
  if (Array.isArray(body.tools)) {
    for (let i = 0; i < body.tools.length; i++) {
      const tool = body.tools[i];
      if (typeof tool !== "object" || tool === null) return { param: `tools[${i}]`, message: `tools[${i}]: must be an object` };
      if ((tool.type === "function" || tool.function !== undefined) && !named(tool.function)) {
        return { param: `tools[${i}].function.name`, message: `tools[${i}].function.name: required, a non-empty string` };
      }
    }
  }
  const messages = Array.isArray(body.messages) ? body.messages : [];
  for (let i = 0; i < messages.length; i++) {
    const calls = messages[i]?.tool_calls;
    if (calls === undefined || calls === null) continue;
    if (!Array.isArray(calls)) return { param: `messages[${i}].tool_calls`, message: `messages[${i}].tool_calls: must be an array` };
    for (let j = 0; j < calls.length; j++) {
      if (!named(calls[j]?.function)) {
        return { param: `messages[${i}].tool_calls[${j}].function.name`, message: `messages[${i}].tool_calls[${j}].function.name: required, a non-empty string` };
      }
    }
  }
  return null;
}

/** The Messages API body for an OpenAI chat body, sent as `model`. */
export function toAnthropic(body: Json, model: string): Json {
  const system: Json[] = [];
  const messages: Json[] = [];
  for (const m of (Array.isArray(body.messages) ? body.messages : []) as Json[]) {
    if (m.role === "system" || m.role === "developer") {
      system.push(...messageBlocks(m, blocksOf(m.content).filter((b) => b.type === "text")));
    } else if (m.role === "tool" || m.role === "function") {
      appendTurn(messages, "user", messageBlocks(m, [{ type: "tool_result", tool_use_id: m.tool_call_id ?? m.name, content: textOf(m.content) }]));
    } else if (m.role === "assistant") {
      const blocks = [...thinkingBlocksOf(m), ...blocksOf(m.content)];
      if (Array.isArray(m.tool_calls)) for (const call of m.tool_calls) blocks.push(toolUseBlock(call));
      // An empty assistant turn (`content: ""`, no calls) is one Anthropic refuses: it is left out.
      if (blocks.length > 0) appendTurn(messages, "assistant", messageBlocks(m, blocks));
    } else {
      appendTurn(messages, "user", messageBlocks(m, blocksOf(m.content)));
    }
  }
  const thinking = thinkingOf(body);
  const out: Json = { model, messages, max_tokens: body.max_tokens ?? body.max_completion_tokens ?? defaultMaxTokens(body) };
  if (thinking) out.thinking = thinking;
  // A plain string unless a block is marked for the prompt cache, which only the block form can carry.
  if (system.length > 0) out.system = system.some((b) => b.cache_control) ? system : system.map((b) => b.text).join("\n\n");
  if (typeof body.stop === "string") out.stop_sequences = [body.stop];
  else if (Array.isArray(body.stop)) out.stop_sequences = body.stop;
  for (const field of ["temperature", "top_p", "top_k"]) if (typeof body[field] === "number") out[field] = body[field];
  if (body.stream === true) out.stream = true;
  if (typeof body.user === "string" && body.user !== "") out.metadata = { user_id: body.user };
  if (Array.isArray(body.tools)) {
    out.tools = body.tools
      .filter((tool: Json) => tool?.type === "function" || tool?.function)
      .map((tool: Json) => withCache({
        name: tool.function.name,
        ...(tool.function.description ? { description: tool.function.description } : {}),
        input_schema: tool.function.parameters ?? { type: "object", properties: {} },
      }, tool));
  }
  const choice = toolChoiceOf(body);
  if (choice && out.tools?.length) out.tool_choice = choice;
  const schema = jsonSchemaOf(body.response_format);
  if (schema) {
    // LiteLLM's way to structured output on Anthropic: one tool whose input is the answer, forced unless thinking is on
    // (Anthropic refuses a forced tool with thinking).
    out.tools = [...(out.tools ?? []), { name: JSON_TOOL, description: "Answer with JSON matching this schema.", input_schema: schema }];
    out.tool_choice = thinking ? { type: "auto" } : { type: "tool", name: JSON_TOOL };
  }
  return out;
}

/**
 * The max_tokens sent for a request that gives none (Anthropic requires one). Thinking counts against
 * it, and it must exceed the thinking budget: the default leaves room for the answer.
 */
export function defaultMaxTokens(body: Json): number {
  const thinking = thinkingOf(body);
  return thinking ? thinking.budget_tokens + DEFAULT_MAX_TOKENS : DEFAULT_MAX_TOKENS;
}

/** Anthropic's `thinking` for a request: as the client sent it, or from OpenAI's `reasoning_effort`. */
function thinkingOf(body: Json): { type: "enabled"; budget_tokens: number } | undefined {
  const given = body.thinking;
  if (given?.type === "enabled" && typeof given.budget_tokens === "number") return { type: "enabled", budget_tokens: given.budget_tokens };
  const budget = typeof body.reasoning_effort === "string" ? THINKING_BUDGET[body.reasoning_effort] : undefined;
  return budget ? { type: "enabled", budget_tokens: budget } : undefined;
}

/** The JSON schema an OpenAI `response_format` asks for (any object for `json_object`); none for text. */
export function jsonSchemaOf(format: unknown): Json | undefined {
  const f = format as Json | undefined;
  if (f?.type === "json_schema") {
    const schema = f.json_schema?.schema;
    return schema && typeof schema === "object" ? schema : { type: "object" };
  }
  return f?.type === "json_object" ? { type: "object" } : undefined;
}
