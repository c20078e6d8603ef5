import { PATHS, deadline, errorFrom, failureFrom, usageFrom } from "./http";
import type { Provider, UpstreamCall, UpstreamResult } from "./types";

const INCLUDE_USAGE = '"stream_options":{"include_usage":true}';

/**
 * The body to send: the client's bytes when nothing has to change; otherwise only the model name
 * and, for streams, a request for usage in the last chunk (so streamed spend is never $0).
 */
export function upstreamBody(call: UpstreamCall): string {
  const { body, rawBody, deployment, stream, route } = call;
  const sameModel = body.model === deployment.upstreamModel;
  const options = body.stream_options as Record<string, unknown> | undefined;
  const wantsUsage = stream && route !== "embeddings" && options?.include_usage !== true;
  if (sameModel && !wantsUsage) return rawBody;
  if (sameModel && !options) {
    const end = rawBody.lastIndexOf("}");
    return `${rawBody.slice(0, end)},${INCLUDE_USAGE}${rawBody.slice(end)}`;
  }
  const next: Record<string, unknown> = { ...body, model: deployment.upstreamModel };
  if (wantsUsage) next.stream_options = { ...options, include_usage: true };
  return JSON.stringify(next);
}

export interface OpenAiTarget {
  url: string;
  headers: Record<string, string>;
}

/** Sends an OpenAI-shaped request and reads the answer: JSON with usage, SSE untouched, or an error. */
export async function sendOpenAiShaped(call: UpstreamCall, target: OpenAiTarget, body: string = upstreamBody(call)): Promise<UpstreamResult> {
  const params = call.deployment.params;
  const { signal, timedOut } = deadline(call.signal, call.stream ? (params.stream_timeout ?? params.timeout) : params.timeout);
  const host = new URL(target.url).host;
  let response: Response;
  try {
    response = await fetch(target.url, { method: "POST", headers: { "content-type": "application/json", ...target.headers }, body, signal });
  } catch (error) {
    return failureFrom(error, timedOut(), host);
  }
  if (!response.ok) return errorFrom(response);
  const type = response.headers.get("content-type") ?? "";
  if (call.stream && type.includes("text/event-stream") && response.body) {
    return { kind: "stream", status: response.status, stream: response.body };
  }
  let text: string;
  try {
    text = await response.text();
  } catch (error) {
    return failureFrom(error, timedOut(), host);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return { kind: "error", status: 502, type: "upstream_error", message: `Upstream ${host} answered with invalid JSON` };
  }
  return { kind: "json", status: response.status, body: text, usage: usageFrom(parsed) };
}

export function openAiProvider(): Provider {
  return {
    send(call) {
      const params = call.deployment.params;
      const base = String(params.api_base ?? "https://api.openai.com/v1").replace(/\/+$/, "");
      const headers: Record<string, string> = {};
      if (typeof params.api_key === "string" && params.api_key) headers.authorization = `Bearer ${params.api_key}`;
      if (typeof params.organization === "string") headers["openai-organization"] = params.organization;
      return sendOpenAiShaped(call, { url: base + PATHS[call.route], headers });
    },
  };
}

export function azureProvider(): Provider {
  return {
    send(call) {
      const params = call.deployment.params;
      const base = String(params.api_base ?? "").replace(/\/+$/, "");
      const version = encodeURIComponent(String(params.api_version ?? "2024-06-01"));
      const url = `${base}/openai/deployments/${encodeURIComponent(call.deployment.upstreamModel)}${PATHS[call.route]}?api-version=${version}`;
      const headers: Record<string, string> = {};
      if (typeof params.api_key === "string" && params.api_key) headers["api-key"] = params.api_key;
      return sendOpenAiShaped(call, { url, headers });
    },
  };
}
