import { calcPrice } from "@pydantic/genai-prices";

/** USD per token, from the bundled genai-prices table (works offline). */
export interface TablePrice {
  input: number;
  output: number;
  cachedInput?: number;
  cacheWriteInput?: number;
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
    return { input: result.input_price / MILLION, output: result.output_price / MILLION, cachedInput, cacheWriteInput };
  } catch {
    return null;
  }
}
