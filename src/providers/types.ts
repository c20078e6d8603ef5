/**
 * The contract between the proxy orchestrator and provider adapters.
 * Providers only use fetch: no Elysia, no database, no Redis.
 */

/** The inference routes; `messages` is Anthropic's Messages API, its body and answers in Anthropic's shape. */
export type Route = "chat" | "completions" | "embeddings" | "messages";

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  /** Prompt tokens served from the provider's prompt cache, when reported. */
  cached_tokens?: number;
  /** Prompt tokens written to the provider's prompt cache (Anthropic's cache_creation_input_tokens). */
  cache_write_tokens?: number;
}

/** One `model_list` entry, resolved. */
export interface Deployment {
  /** Stable id: `model_info.id` or `<model_name>#<index>`. */
  id: string;
  /** Public name clients ask for (`model_name`). */
  modelName: string;
  /** Provider prefix of `litellm_params.model` ("openai" when none is given). */
  provider: string;
  /** Model name sent upstream (the part after `provider/`). */
  upstreamModel: string;
  /** `litellm_params` as written in config.yaml (env references already substituted). */
  params: Record<string, unknown>;
  /** `model_info` as written in config.yaml. */
  modelInfo: Record<string, unknown>;
  /** Its `api_base` as a client may see it (see `plainBase`), for /model/info and x-litellm-model-api-base. */
  apiBase?: string;
  /** Set on a deployment made from a wildcard entry (`openai/*`) for one model name: priced for that model. */
  wildcardMatch?: string;
}

export interface UpstreamCall {
  route: Route;
  deployment: Deployment;
  /** The client's body, parsed. Providers must not mutate it. */
  body: Record<string, unknown>;
  /** The client's body exactly as received: forward it when nothing needs to change. */
  rawBody: string;
  stream: boolean;
  /** Aborted when the client goes away or the request times out. */
  signal: AbortSignal;
  /**
   * Called for every piece of a streamed answer read from the provider, whether or not it makes anything
   * for the client (keep-alive pings do not): the provider is still sending.
   */
  onRead?: () => void;
  /** The client's `anthropic-beta` header on a Messages request: the features it asks Anthropic for go with it. */
  betas?: string;
}

export type UpstreamResult =
  | {
      kind: "json";
      status: number;
      /** OpenAI-shaped response body, serialised. */
      body: string;
      usage: Usage | null;
    }
  | {
      kind: "stream";
      status: number;
      /** OpenAI-shaped Server-Sent Events, bytes as they come (`data: {...}\n\n` … `data: [DONE]\n\n`). */
      stream: ReadableStream<Uint8Array>;
      /** The stream's first bytes, already read from it (to see whether it opened with an error): they come before `stream`'s. */
      head?: Uint8Array;
      /** The provider key, blanked out of any error the stream carries. */
      secret?: string;
      /**
       * What the provider reported of its usage before the end (Anthropic's `message_start` has the
       * prompt as it bills it): a stream cut short is charged from it rather than from a count.
       */
      usageSoFar?: () => Usage | null;
    }
  | {
      kind: "error";
      /** Provider status, or 502/504 for connection failures and timeouts. */
      status: number;
      message: string;
      /** OpenAI error type when the provider gave one. */
      type?: string;
      /** The request field the provider's error names, when it named one. */
      param?: string;
      /** Seconds, from the provider's `retry-after` header. */
      retryAfter?: number;
      /**
       * True when the client left, a deadline passed, or the provider broke off its stream, while it had
       * the request: it bills the prompt.
       */
      abandoned?: boolean;
      /** True when the provider was never reached (connection refused, DNS, TLS). */
      connectionError?: boolean;
    };

export interface Provider {
  send(call: UpstreamCall): Promise<UpstreamResult>;
  /** A Messages request's input tokens as the provider counts them (Anthropic's count_tokens), where it can. */
  countTokens?(call: UpstreamCall): Promise<number | Extract<UpstreamResult, { kind: "error" }>>;
}
