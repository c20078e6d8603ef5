/**
 * A fast local OpenAI-compatible upstream for benchmarks: fixed JSON answers and SSE streams with
 * usage, no delay. Run: `bun bench/upstream.ts PORT`.
 */
const port = Number(process.argv[2] ?? 0);
const completion = JSON.stringify({
  id: "chatcmpl-bench", object: "chat.completion", created: 1700000000, model: "bench-model",
  choices: [{ index: 0, message: { role: "assistant", content: "Hello from the benchmark upstream." }, finish_reason: "stop" }],
  usage: { prompt_tokens: 12, completion_tokens: 8, total_tokens: 20 },
});
const embedding = JSON.stringify({
  object: "list", model: "bench-embed", data: [{ object: "embedding", index: 0, embedding: [0.1, 0.2, 0.3, 0.4] }],
  usage: { prompt_tokens: 5, total_tokens: 5 },
});
const chunk = (content: string) =>
  `data: ${JSON.stringify({ id: "chatcmpl-bench", object: "chat.completion.chunk", created: 1700000000, model: "bench-model", choices: [{ index: 0, delta: { content }, finish_reason: null }] })}\n\n`;
const usageChunk = `data: ${JSON.stringify({ id: "chatcmpl-bench", object: "chat.completion.chunk", created: 1700000000, model: "bench-model", choices: [], usage: { prompt_tokens: 12, completion_tokens: 8, total_tokens: 20 } })}\n\n`;
const stream = ["Hello", " from", " the", " benchmark", " upstream."].map(chunk).join("") + usageChunk + "data: [DONE]\n\n";
const json = { "content-type": "application/json" };

const server = Bun.serve({
  port,
  hostname: "127.0.0.1",
  async fetch(request) {
    const path = new URL(request.url).pathname;
    if (path.endsWith("/embeddings")) return new Response(embedding, { headers: json });
    if (path.endsWith("/chat/completions") || path.endsWith("/completions")) {
      const body = await request.text();
      if (body.includes('"stream":true') || body.includes('"stream": true')) {
        return new Response(stream, { headers: { "content-type": "text/event-stream" } });
      }
      return new Response(completion, { headers: json });
    }
    if (path.endsWith("/models")) return Response.json({ object: "list", data: [{ id: "bench-model", object: "model" }] });
    return new Response("not found", { status: 404 });
  },
});
process.stdout.write(`upstream listening ${server.port}\n`);
export {};
