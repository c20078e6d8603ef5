/**
 * Cross-origin requests, allowed from any origin as LiteLLM allows them by default: browser clients
 * send the key themselves (an Authorization header, never a cookie), so no origin gains anything.
 */

/** The answer to a browser's preflight: the method and the headers it asks for are allowed. */
export function preflight(request: Request): Response {
  return new Response(null, {
    status: 204,
    headers: {
      "access-control-allow-origin": "*",
      "access-control-allow-methods": "GET, POST, PUT, PATCH, DELETE, OPTIONS",
      "access-control-allow-headers": request.headers.get("access-control-request-headers") ?? "authorization, content-type",
      "access-control-max-age": "600",
    },
  });
}

/** A response to a browser (a request with an Origin) may be read by it, its headers too. */
export function allowOrigin(request: Request, response: Response): Response {
  if (request.headers.get("origin") === null) return response;
  try {
    response.headers.set("access-control-allow-origin", "*");
    response.headers.set("access-control-expose-headers", "*");
  } catch {
    // A response whose headers cannot change (none the gateway makes) goes as it is.
  }
  return response;
}

/** A server's fallback fetch with CORS: preflights answered, every answer readable by the page. */
export function withCors(fetch: (request: Request) => Response | Promise<Response>) {
  return async (request: Request) => (request.method === "OPTIONS" ? preflight(request) : allowOrigin(request, await fetch(request)));
}
