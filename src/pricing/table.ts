import { calcPrice } from "@pydantic/genai-prices";

/** USD per token, from the bundled genai-prices table (works offline). */
export interface TablePrice {
  input: number;
  output: number;
  cachedInput?: number;
  cacheWriteInput?: number;
  /** The model's context window (tokens), which bounds what one answer can use. */
  contextWindow?: number;
}

const PROVIDERS: Record<string, string> = { openai: "openai", azure: "azure", anthropic: "anthropic" };
const MILLION = 1_000_000;

/** Looks a model up once; null when the table does not know it. */
export function tablePrice(provider: string, model: string): TablePrice | null {
  const providerId = PROVIDERS[provider] ?? provider;
  try {
    const result = calcPrice({ input_tokens: MILLION, output_tokens: MILLION } as never, model, { providerId });
    if (!result) return null;
    const cached = calcPrice({ input_tokens: MILLION, cache_read_tokens: MILLION } as never, model, { providerId });
    const cachedInput = cached && cached.input_price !== result.input_price ? cached.input_price / MILLION : undefined;
    const written = calcPrice({ input_tokens: MILLION, cache_write_tokens: MILLION } as never, model, { providerId });
    const cacheWriteInput = written && written.input_price !== result.input_price ? written.input_price / MILLION : undefined;
    const window = (result as { model?: { context_window?: unknown } }).model?.context_window;
    const contextWindow = typeof window === "number" && window > 0 ? window : undefined;
    return { input: result.input_price / MILLION, output: result.output_price / MILLION, cachedInput, cacheWriteInput, contextWindow };
  } catch {
    return null;
  }
}
