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

/**
 * The request with a host long enough for the framework's router, which looks for the path's
 * first `/` from the 12th character of the URL: under a Host of three characters or fewer
 * (`Host: gw`) it took `/key/list` for `/list` and `/v1/key/list` for `/key/list`. Such a request
 * is given the host `localhost` (nothing reads the host); any other goes as it is.
 */
export function withRoutableHost(request: Request): Request {
  const url = request.url;
  const pathStart = url.indexOf("/", url.indexOf("://") + 3);
  if (pathStart >= 11 || pathStart < 0) return request;
  return new Request(`http://localhost${url.slice(pathStart)}`, request);
}
