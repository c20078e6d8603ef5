import { countPromptTokens, countTextTokens } from "../../tokens";
import type { UpstreamCall, UpstreamResult, Usage } from "../types";
import { chatRequestOf, cutToolNames, serverToolOf } from "./request";
import { messageOf } from "./response";
import { messagesStream } from "./stream";

export { chatRequestOf, textOfBlocks } from "./request";
export { anthropicEvent } from "./stream";

type Json = Record<string, any>;

const textOf = (value: unknown): string => (typeof value === "string" ? value : "");

/** The text of a chat answer the provider bills as output: its content and its tool calls. */
function answerText(completion: Json): string {
  const reply = Array.isArray(completion?.choices) ? completion.choices[0]?.message : undefined;
  let text = textOf(reply?.content);
  for (const call of Array.isArray(reply?.tool_calls) ? reply.tool_calls : []) text += textOf(call?.function?.name) + textOf(call?.function?.arguments);
  return text;
}

/** OpenAI's reasoning models (o1, o3, o4-mini, gpt-5…) refuse `max_tokens`: they are sent `max_completion_tokens`, as LiteLLM sends it them. */
const REASONING_MODEL = /^(?:o\d|gpt-5)/;

/**
 * A Messages request (`/v1/messages`) served by a deployment that speaks the OpenAI API: sent through
 * `send` as the chat request it amounts to, its answer (JSON or stream) made an Anthropic one. A
 * provider that reports no usage is charged, and tells the client, the tokens counted of the prompt and answer.
 */
export async function messagesViaChat(call: UpstreamCall, send: (chat: UpstreamCall) => Promise<UpstreamResult>): Promise<UpstreamResult> {
  const tool = serverToolOf(call.body);
  if (tool) {
    const name = String(tool?.name ?? tool?.type ?? "?");
    return {
      kind: "error", status: 400, type: "invalid_request_error", param: "tools",
      message: `tools: '${name}' is a tool Anthropic runs itself (no input_schema); model ${call.body.model} is served by an OpenAI-compatible provider, which has none`,
    };
  }
  const body = chatRequestOf(call.body);
  if (REASONING_MODEL.test(call.deployment.upstreamModel)) {
    body.max_completion_tokens = body.max_tokens;
    delete body.max_tokens;
  }
  const counted = (text: string): Usage => {
    const prompt = countPromptTokens("chat", body, true);
    const completion = text ? countTextTokens(text) : 0;
    return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
  };
  const result = await send({ ...call, route: "chat", body, rawBody: JSON.stringify(body) });
  const model = String(call.body.model);
  if (result.kind === "error") return result;
  const names = cutToolNames(call.body);
  if (result.kind === "json") {
    const completion = JSON.parse(result.body) as Json;
    const usage = result.usage ?? counted(answerText(completion));
    return { kind: "json", status: result.status, body: JSON.stringify(messageOf(completion, model, usage, names)), usage };
  }
  const stream = messagesStream(result.stream, model, counted, call.onRead, result.head, names);
  return { kind: "stream", status: result.status, stream, secret: result.secret };
}
