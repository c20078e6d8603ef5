import { deadline, errorFrom, failureFrom } from "./http";
import { SSE_DONE, chunkOf, sseData, usageChunkOf } from "./sse";
import type { Provider, UpstreamCall, UpstreamResult } from "./types";

type Json = Record<string, any>;

const FINISH: Record<string, string> = { end_turn: "stop", stop_sequence: "stop", max_tokens: "length", tool_use: "tool_calls" };

function textOf(content: unknown): string {
  if (typeof content === "string") return content;
  if (Array.isArray(content)) return content.map((part) => (typeof part?.text === "string" ? part.text : "")).join("");
  return "";
}

function contentParts(content: unknown): unknown {
  if (!Array.isArray(content)) return typeof content === "string" ? content : textOf(content);
  return content.map((part: Json) => {
    if (part?.type === "image_url") {
      const url: string = part.image_url?.url ?? "";
      const match = /^data:([^;]+);base64,(.*)$/.exec(url);
      return match
        ? { type: "image", source: { type: "base64", media_type: match[1], data: match[2] } }
        : { type: "image", source: { type: "url", url } };
    }
    return { type: "text", text: String(part?.text ?? "") };
  });
}

/** OpenAI chat body → Anthropic messages body. */
export function toAnthropic(body: Json, model: string): Json {
  const system: string[] = [];
  const messages: Json[] = [];
  for (const m of (body.messages ?? []) as Json[]) {
    if (m.role === "system" || m.role === "developer") system.push(textOf(m.content));
    else if (m.role === "tool") {
      messages.push({ role: "user", content: [{ type: "tool_result", tool_use_id: m.tool_call_id, content: textOf(m.content) }] });
    } else if (m.role === "assistant" && Array.isArray(m.tool_calls)) {
      const parts: Json[] = m.content ? [{ type: "text", text: textOf(m.content) }] : [];
      for (const call of m.tool_calls) {
        let input: unknown = {};
        try {
          input = JSON.parse(call.function?.arguments ?? "{}");
        } catch {
          input = {};
        }
        parts.push({ type: "tool_use", id: call.id, name: call.function?.name, input });
      }
      messages.push({ role: "assistant", content: parts });
    } else messages.push({ role: m.role === "assistant" ? "assistant" : "user", content: contentParts(m.content) });
  }
  const out: Json = { model, messages, max_tokens: body.max_tokens ?? body.max_completion_tokens ?? 4096 };
  if (system.length > 0) out.system = system.join("\n");
  if (body.stop !== undefined) out.stop_sequences = Array.isArray(body.stop) ? body.stop : [body.stop];
  for (const field of ["temperature", "top_p", "top_k", "stream"]) if (body[field] !== undefined) out[field] = body[field];
  if (typeof body.user === "string") out.metadata = { user_id: body.user };
  if (Array.isArray(body.tools)) {
    out.tools = body.tools.map((tool: Json) => ({
      name: tool.function?.name, description: tool.function?.description, input_schema: tool.function?.parameters ?? { type: "object" },
    }));
  }
  return out;
}

/** Anthropic message → OpenAI chat.completion. */
export function fromAnthropic(message: Json, model: string): Json {
  let text = "";
  const toolCalls: Json[] = [];
  for (const part of (message.content ?? []) as Json[]) {
    if (part.type === "text") text += part.text;
    else if (part.type === "tool_use") toolCalls.push({ id: part.id, type: "function", function: { name: part.name, arguments: JSON.stringify(part.input ?? {}) } });
  }
  const u = message.usage ?? {};
  const prompt = (u.input_tokens ?? 0) + (u.cache_read_input_tokens ?? 0) + (u.cache_creation_input_tokens ?? 0);
  const completion = u.output_tokens ?? 0;
  return {
    id: message.id ?? `chatcmpl-${crypto.randomUUID()}`,
    object: "chat.completion",
    created: Math.floor(Date.now() / 1000),
    model,
    choices: [{
      index: 0,
      message: { role: "assistant", content: text || null, ...(toolCalls.length > 0 ? { tool_calls: toolCalls } : {}) },
      finish_reason: FINISH[message.stop_reason] ?? "stop",
    }],
    usage: { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion, prompt_tokens_details: { cached_tokens: u.cache_read_input_tokens ?? 0 } },
  };
}

/** Anthropic SSE events → OpenAI chunks, each emitted as soon as its event arrives; usage last. */
export function translateStream(source: ReadableStream<Uint8Array>, model: string): ReadableStream<Uint8Array> {
  const reader = source.getReader();
  const decoder = new TextDecoder();
  const created = Math.floor(Date.now() / 1000);
  let id = `chatcmpl-${crypto.randomUUID()}`;
  let pending = "";
  let prompt = 0;
  let completion = 0;
  let tool = -1;
  let finished = false;
  const handle = (event: Json, emit: (value: unknown) => void) => {
    switch (event.type) {
      case "message_start": {
        const u = event.message?.usage ?? {};
        id = event.message?.id ?? id;
        prompt = (u.input_tokens ?? 0) + (u.cache_read_input_tokens ?? 0) + (u.cache_creation_input_tokens ?? 0);
        emit(chunkOf(id, model, created, { role: "assistant", content: "" }));
        break;
      }
      case "content_block_start":
        if (event.content_block?.type === "tool_use") {
          tool++;
          emit(chunkOf(id, model, created, { tool_calls: [{ index: tool, id: event.content_block.id, type: "function", function: { name: event.content_block.name, arguments: "" } }] }));
        }
        break;
      case "content_block_delta":
        if (event.delta?.type === "text_delta") emit(chunkOf(id, model, created, { content: event.delta.text }));
        else if (event.delta?.type === "input_json_delta") emit(chunkOf(id, model, created, { tool_calls: [{ index: tool, function: { arguments: event.delta.partial_json } }] }));
        break;
      case "message_delta":
        completion = event.usage?.output_tokens ?? completion;
        if (event.delta?.stop_reason) emit(chunkOf(id, model, created, {}, FINISH[event.delta.stop_reason] ?? "stop"));
        break;
      case "message_stop":
        finished = true;
        emit(usageChunkOf(id, model, created, { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion }));
        emit(SSE_DONE);
        break;
      case "error":
        emit({ error: { message: event.error?.message ?? "provider stream error", type: event.error?.type ?? "upstream_error", param: null, code: "502" } });
        break;
    }
  };
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      // A pull must enqueue something before it returns, or some consumers never pull again.
      let produced = false;
      const emit = (value: unknown) => {
        controller.enqueue(sseData(value));
        produced = true;
      };
      for (;;) {
        const { done, value } = await reader.read();
        if (done) {
          if (!finished) throw new Error("provider stream ended before message_stop");
          controller.close();
          return;
        }
        pending += decoder.decode(value, { stream: true });
        let boundary = pending.indexOf("\n\n");
        while (boundary >= 0) {
          const block = pending.slice(0, boundary);
          pending = pending.slice(boundary + 2);
          const data = block.split("\n").filter((line) => line.startsWith("data:")).map((line) => line.slice(5).trim()).join("");
          if (data) {
            try {
              handle(JSON.parse(data), emit);
            } catch {
              // a malformed event is skipped; the stream goes on
            }
          }
          boundary = pending.indexOf("\n\n");
        }
        if (produced) return;
      }
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  });
}

export function anthropicProvider(): Provider {
  return {
    async send(call: UpstreamCall): Promise<UpstreamResult> {
      if (call.route !== "chat") {
        return { kind: "error", status: 400, type: "invalid_request_error", message: `${call.route} is not supported by provider anthropic` };
      }
      const params = call.deployment.params;
      const base = String(params.api_base ?? "https://api.anthropic.com").replace(/\/+$/, "").replace(/\/v1$/, "");
      const model = String(call.body.model);
      const headers: Record<string, string> = { "content-type": "application/json", "anthropic-version": "2023-06-01" };
      if (typeof params.api_key === "string" && params.api_key) headers["x-api-key"] = params.api_key;
      const { signal, timedOut } = deadline(call.signal, call.stream ? (params.stream_timeout ?? params.timeout) : params.timeout);
      const host = new URL(base).host;
      let response: Response;
      try {
        response = await fetch(`${base}/v1/messages`, {
          method: "POST", headers, signal, body: JSON.stringify(toAnthropic(call.body, call.deployment.upstreamModel)),
        });
      } catch (error) {
        return failureFrom(error, timedOut(), host);
      }
      if (!response.ok) return errorFrom(response);
      if (call.stream && response.body) return { kind: "stream", status: 200, stream: translateStream(response.body, model) };
      try {
        const translated = fromAnthropic((await response.json()) as Json, model);
        return { kind: "json", status: 200, body: JSON.stringify(translated), usage: translated.usage };
      } catch {
        return { kind: "error", status: 502, type: "upstream_error", message: `Upstream ${host} answered with invalid JSON` };
      }
    },
  };
}
