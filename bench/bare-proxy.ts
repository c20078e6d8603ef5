/**
 * The ceiling: a bare Bun pass-through proxy with no checks at all.
 * Run: `bun bench/bare-proxy.ts PORT UPSTREAM_BASE` (e.g. http://127.0.0.1:9000).
 */
const port = Number(process.argv[2] ?? 0);
const upstream = process.argv[3] ?? "http://127.0.0.1:9000";

const server = Bun.serve({
  port,
  hostname: "127.0.0.1",
  async fetch(request) {
    const url = new URL(request.url);
    const response = await fetch(upstream + url.pathname, {
      method: request.method,
      headers: { "content-type": "application/json", authorization: request.headers.get("authorization") ?? "" },
      body: request.method === "POST" ? await request.text() : undefined,
    });
    return new Response(response.body, { status: response.status, headers: { "content-type": response.headers.get("content-type") ?? "application/json" } });
  },
});
process.stdout.write(`bare proxy listening ${server.port}\n`);
export {};
