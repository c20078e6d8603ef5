import { describe, expect, test } from "bun:test";
import { chatRequestOf } from "../../src/providers/messages";
import { messageOf } from "../../src/providers/messages/response";
import { messagesStream } from "../../src/providers/messages/stream";

/** Anthropic Messages requests and answers translated for OpenAI-compatible deployments. */
const encoder = new TextEncoder();
const sse = (chunks: unknown[]) => chunks.map((c) => `data: ${typeof c === "string" ? c : JSON.stringify(c)}\n\n`).join("");
const streamOf = (text: string, pieceBytes = 7) => {
  const bytes = encoder.encode(text);
  return new ReadableStream<Uint8Array>({
    start(controller) {
      // Cut anywhere, as a network cuts it.
      for (let i = 0; i < bytes.length; i += pieceBytes) controller.enqueue(bytes.subarray(i, i + pieceBytes));
      controller.close();
    },
  });
};
const eventsOf = (text: string) => text.split("\n\n").filter((b) => b.trim()).map((b) => ({ event: b.split("\n")[0]!.slice(7), ...JSON.parse(b.split("\n")[1]!.slice(6)) }));
const delta = (d: Record<string, unknown>, finish: string | null = null) => ({ id: "chatcmpl-1", choices: [{ index: 0, delta: d, finish_reason: finish }] });
const counted = () => ({ prompt_tokens: 3, completion_tokens: 4, total_tokens: 7 });

describe("messagesStream", () => {
  test("text then two tool calls: a content block each, their arguments as input_json_delta, usage at the end", async () => {
    const upstream = sse([
      delta({ role: "assistant", content: "" }),
      delta({ content: "Let me look" }),
      delta({ tool_calls: [{ index: 0, id: "call_a", type: "function", function: { name: "weather", arguments: "" } }] }),
      delta({ tool_calls: [{ index: 0, function: { arguments: '{"city":' } }] }),
      delta({ tool_calls: [{ index: 0, function: { arguments: '"Paris"}' } }] }),
      delta({ tool_calls: [{ index: 1, id: "call_b", type: "function", function: { name: "time", arguments: "{}" } }] }),
      delta({}, "tool_calls"),
      { id: "chatcmpl-1", choices: [], usage: { prompt_tokens: 30, completion_tokens: 12, total_tokens: 42, prompt_tokens_details: { cached_tokens: 10 } } },
      "[DONE]",
    ]);
    const events = eventsOf(await new Response(messagesStream(streamOf(upstream), "m", counted)).text());
    for (const e of events) expect(e.event).toBe(e.type);
    expect(events.map((e) => e.type)).toEqual([
      "message_start", "content_block_start", "content_block_delta", "content_block_stop",
      "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop",
      "content_block_start", "content_block_delta", "content_block_stop", "message_delta", "message_stop",
    ]);
    expect(events[0]!.message).toMatchObject({ type: "message", role: "assistant", model: "m", content: [] });
    expect(events[4]).toMatchObject({ index: 1, content_block: { type: "tool_use", id: "call_a", name: "weather", input: {} } });
    expect(events[6]).toMatchObject({ index: 1, delta: { type: "input_json_delta", partial_json: '"Paris"}' } });
    expect(events[8]).toMatchObject({ index: 2, content_block: { type: "tool_use", id: "call_b", name: "time" } });
    expect(events[11]).toMatchObject({
      delta: { stop_reason: "tool_use" }, usage: { input_tokens: 20, cache_read_input_tokens: 10, output_tokens: 12 },
    });
  });

  test("a provider that sends no usage: the count stands in; one that ends before its finish fails the stream", async () => {
    const events = eventsOf(await new Response(messagesStream(streamOf(sse([delta({ content: "Hi" }), delta({}, "length")])), "m", counted)).text());
    expect(events.at(-2)).toMatchObject({ delta: { stop_reason: "max_tokens" }, usage: { input_tokens: 3, output_tokens: 4 } });
    const cut = new Response(messagesStream(streamOf(sse([delta({ content: "Hi" })])), "m", counted)).text();
    await expect(cut).rejects.toThrow("ended before the answer was complete");
  });
});

describe("chatRequestOf", () => {
  test("system blocks, images, tool results, tool_choice and the fields OpenAI has", () => {
    const chat = chatRequestOf({
      model: "m", max_tokens: 50, system: [{ type: "text", text: "A" }, { type: "text", text: "B" }], temperature: 0.2, top_k: 5, stream: true,
      metadata: { user_id: "u1" }, tool_choice: { type: "tool", name: "t", disable_parallel_tool_use: true },
      messages: [{ role: "user", content: [{ type: "image", source: { type: "base64", media_type: "image/png", data: "AAAA" } }, { type: "text", text: "What is it?" }] }],
    });
    expect(chat).toEqual({
      model: "m", max_tokens: 50, temperature: 0.2, stream: true, user: "u1",
      tool_choice: { type: "function", function: { name: "t" } }, parallel_tool_calls: false,
      messages: [
        { role: "system", content: "AB" },
        { role: "user", content: [{ type: "image_url", image_url: { url: "data:image/png;base64,AAAA" } }, { type: "text", text: "What is it?" }] },
      ],
    });
  });
});

describe("messageOf", () => {
  test("an answer without choices (a body of null included) is an empty message, not a failure", () => {
    for (const completion of [null, {}]) expect(messageOf(completion as any, "m", null)).toMatchObject({ type: "message", content: [], stop_reason: "end_turn" });
  });

  test("a tool call whose arguments are not JSON keeps them whole", () => {
    const completion = { id: "x", choices: [{ message: { content: "ok", tool_calls: [{ id: "c", function: { name: "f", arguments: "not json" } }] }, finish_reason: "tool_calls" }] };
    expect(messageOf(completion, "m", { prompt_tokens: 5, completion_tokens: 2, total_tokens: 7 })).toMatchObject({
      model: "m", stop_reason: "tool_use", usage: { input_tokens: 5, output_tokens: 2 },
      content: [{ type: "text", text: "ok" }, { type: "tool_use", id: "c", name: "f", input: { arguments: "not json" } }],
    });
  });
});
