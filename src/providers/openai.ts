import { PATHS, type Target, baseUrl, errorFrom, invalidJson, isError, isEventStream, makeTarget, paramOrEnv, post, usageFrom } from "./http";
import type { Deployment, Provider, UpstreamCall, UpstreamResult } from "./types";

const INCLUDE_USAGE = '"stream_options":{"include_usage":true}';

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value);

/**
 * The client's text with the top-level model name swapped, without parsing it again; null when the
 * spot is ambiguous. A string-valued `"model": <name>` pair can only be an object key in valid JSON,
 * and the top-level one is among the matches: a single match is therefore the top-level one.
 */
function swapModel(raw: string, from: string, to: string): string | null {
  const pattern = new RegExp(`(?<!\\\\)"model"\\s*:\\s*${JSON.stringify(from).replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}`, "g");
  const first = pattern.exec(raw);
  if (!first || pattern.exec(raw)) return null;
  return `${raw.slice(0, first.index)}"model":${JSON.stringify(to)}${raw.slice(first.index + first[0].length)}`;
}

/**
 * The body to send: the client's bytes when nothing has to change; otherwise only the model name and,
 * for streams, a request for usage in the last chunk (so a streamed answer is never free).
 */
export function upstreamBody(call: UpstreamCall): string {
  const { body, rawBody, deployment, stream, route } = call;
  const options = body.stream_options;
  const wantsUsage = stream && route !== "embeddings" && !(isObject(options) && options.include_usage === true);
  const sameModel = body.model === deployment.upstreamModel;
  if (sameModel && !wantsUsage) return rawBody;
  if (!wantsUsage || options === undefined) {
    const text = sameModel ? rawBody : swapModel(rawBody, String(body.model), deployment.upstreamModel);
    if (text !== null) {
      if (!wantsUsage) return text;
      const end = text.lastIndexOf("}");
      if (end > 0) return `${text.slice(0, end)},${INCLUDE_USAGE}${text.slice(end)}`;
    }
  }
  const next: Record<string, unknown> = { ...body, model: deployment.upstreamModel };
  if (wantsUsage) next.stream_options = { ...(isObject(options) ? options : {}), include_usage: true };
  return JSON.stringify(next);
}

/** Sends an OpenAI-shaped request and reads the answer: JSON with its usage, SSE untouched, or an error. */
export async function sendOpenAiShaped(call: UpstreamCall, target: Target): Promise<UpstreamResult> {
  const answer = await post(call, target, upstreamBody(call));
  if (isError(answer)) return answer;
  const { response, host } = answer;
  if (!response.ok) return errorFrom(answer, target.secret);
  if (call.stream && response.body && isEventStream(response)) {
    return { kind: "stream", status: response.status, stream: response.body };
  }
  const text = await answer.text();
  if (isError(text)) return text;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return invalidJson(host);
  }
  return { kind: "json", status: response.status, body: text, usage: usageFrom(parsed) };
}

/** OpenAI, or any server speaking its API at `api_base` (vLLM, Ollama, Groq, LM Studio…). */
export function openAiAdapter(deployment: Deployment, env: Record<string, string | undefined>): Provider {
  const params = deployment.params;
  const base = baseUrl(params.api_base ?? (deployment.provider === "openai" ? env.OPENAI_API_BASE : undefined), "https://api.openai.com/v1", deployment);
  const key = paramOrEnv(params, "api_key", deployment.provider === "openai" ? env : {}, "OPENAI_API_KEY");
  const headers: Record<string, string> = {};
  if (key) headers.authorization = `Bearer ${key}`;
  if (typeof params.organization === "string" && params.organization) headers["openai-organization"] = params.organization;
  const targets = {
    chat: makeTarget(base + PATHS.chat, headers, key),
    completions: makeTarget(base + PATHS.completions, headers, key),
    embeddings: makeTarget(base + PATHS.embeddings, headers, key),
  };
  return { send: (call) => sendOpenAiShaped(call, targets[call.route]) };
}
