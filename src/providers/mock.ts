import { countPromptTokens, estimateTokens } from "../tokens";
import { SSE_DONE, chunkOf, sseData, usageChunkOf } from "./sse";
import type { Provider, UpstreamCall, UpstreamResult } from "./types";

const DEFAULT_ANSWER = "This is a mock response from litegate.";

/** Answers locally (`litellm_params.mock_response`), with realistic usage: for offline use and tests. */
export function mockProvider(): Provider {
  return {
    async send(call: UpstreamCall): Promise<UpstreamResult> {
      const params = call.deployment.params;
      const delay = Number(params.mock_delay_ms ?? 0);
      const configured = params.mock_response;
      if (configured && typeof configured === "object") {
        const error = (configured as { error?: { status?: number; message?: string } }).error ?? (configured as { status?: number; message?: string });
        return { kind: "error", status: Number(error.status ?? 500), message: String(error.message ?? "mock error") };
      }
      const answer = typeof configured === "string" ? configured : DEFAULT_ANSWER;
      const model = String(call.body.model);
      const id = `chatcmpl-${crypto.randomUUID()}`;
      const created = Math.floor(Date.now() / 1000);
      const prompt = countPromptTokens(call.route, call.body, true);
      if (delay > 0 && !call.stream) await Bun.sleep(delay);
      if (call.route === "embeddings") {
        const inputs = Array.isArray(call.body.input) ? call.body.input : [call.body.input];
        const data = inputs.map((input, index) => ({ object: "embedding", index, embedding: vectorOf(String(input)) }));
        const body = { object: "list", model, data, usage: { prompt_tokens: prompt, total_tokens: prompt } };
        return { kind: "json", status: 200, body: JSON.stringify(body), usage: { prompt_tokens: prompt, completion_tokens: 0, total_tokens: prompt } };
      }
      const completion = estimateTokens(answer);
      const usage = { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
      if (!call.stream) {
        const body = call.route === "chat"
          ? { id, object: "chat.completion", created, model, choices: [{ index: 0, message: { role: "assistant", content: answer }, finish_reason: "stop" }], usage }
          : { id, object: "text_completion", created, model, choices: [{ index: 0, text: answer, finish_reason: "stop" }], usage };
        return { kind: "json", status: 200, body: JSON.stringify(body), usage };
      }
      const words = answer.split(/(?<= )/);
      const includeUsage = (call.body.stream_options as { include_usage?: boolean } | undefined)?.include_usage === true;
      const stream = new ReadableStream<Uint8Array>({
        async start(controller) {
          controller.enqueue(sseData(chunkOf(id, model, created, { role: "assistant", content: "" })));
          for (const word of words) {
            if (call.signal.aborted) return;
            if (delay > 0) await Bun.sleep(delay);
            controller.enqueue(sseData(call.route === "chat"
              ? chunkOf(id, model, created, { content: word })
              : { id, object: "text_completion", created, model, choices: [{ index: 0, text: word, finish_reason: null }] }));
          }
          controller.enqueue(sseData(chunkOf(id, model, created, {}, "stop")));
          if (includeUsage) controller.enqueue(sseData(usageChunkOf(id, model, created, usage)));
          controller.enqueue(sseData(SSE_DONE));
          controller.close();
        },
      });
      return { kind: "stream", status: 200, stream };
    },
  };
}

function vectorOf(text: string): number[] {
  const hash = new Bun.CryptoHasher("sha256").update(text).digest();
  return Array.from(hash.subarray(0, 8), (byte) => byte / 255 - 0.5);
}
