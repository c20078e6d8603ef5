/** OpenAI chat request → Anthropic Messages request. */

type Json = Record<string, any>;

export const DEFAULT_MAX_TOKENS = 4096;

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
      if (typeof url === "string") blocks.push(imageBlock(url));
    } else if (typeof part?.text === "string") blocks.push({ type: "text", text: part.text });
  }
  return blocks;
}

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

/** The Messages API body for an OpenAI chat body, sent as `model`. */
export function toAnthropic(body: Json, model: string): Json {
  const system: string[] = [];
  const messages: Json[] = [];
  for (const m of (Array.isArray(body.messages) ? body.messages : []) as Json[]) {
    if (m.role === "system" || m.role === "developer") {
      system.push(textOf(m.content));
    } else if (m.role === "tool" || m.role === "function") {
      appendTurn(messages, "user", [{ type: "tool_result", tool_use_id: m.tool_call_id ?? m.name, content: textOf(m.content) }]);
    } else if (m.role === "assistant") {
      const blocks = blocksOf(m.content);
      if (Array.isArray(m.tool_calls)) for (const call of m.tool_calls) blocks.push(toolUseBlock(call));
      appendTurn(messages, "assistant", blocks);
    } else {
      appendTurn(messages, "user", blocksOf(m.content));
    }
  }
  const out: Json = { model, messages, max_tokens: body.max_tokens ?? body.max_completion_tokens ?? DEFAULT_MAX_TOKENS };
  if (system.length > 0) out.system = system.join("\n\n");
  if (typeof body.stop === "string") out.stop_sequences = [body.stop];
  else if (Array.isArray(body.stop)) out.stop_sequences = body.stop;
  for (const field of ["temperature", "top_p", "top_k"]) if (typeof body[field] === "number") out[field] = body[field];
  if (body.stream === true) out.stream = true;
  if (typeof body.user === "string" && body.user !== "") out.metadata = { user_id: body.user };
  if (Array.isArray(body.tools)) {
    out.tools = body.tools
      .filter((tool: Json) => tool?.type === "function" || tool?.function)
      .map((tool: Json) => ({
        name: tool.function.name,
        ...(tool.function.description ? { description: tool.function.description } : {}),
        input_schema: tool.function.parameters ?? { type: "object", properties: {} },
      }));
  }
  const choice = toolChoiceOf(body);
  if (choice && out.tools?.length) out.tool_choice = choice;
  return out;
}
