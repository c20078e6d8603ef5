/** sha256 hex of a raw key: the only form a virtual key is stored or looked up in. */
export function hashKey(raw: string): string {
  return Bun.CryptoHasher.hash("sha256", raw, "hex");
}

/** `sk-` followed by 32 URL-safe characters from the cryptographic RNG (192 bits). */
export function generateKey(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(24));
  return "sk-" + Buffer.from(bytes).toString("base64url");
}

/** The display form stored beside the hash: `sk-...abcd`. */
export function keyName(raw: string): string {
  return `sk-...${raw.slice(-4)}`;
}

/** A header's key: after an optional `Bearer` (any case, then spaces or tabs, RFC 9110), trimmed; null when empty. */
function keyIn(value: string | null): string | null {
  if (!value) return null;
  const key = (/^bearer(?:[ \t]|$)/i.test(value) ? value.slice(6) : value).trim();
  return key || null;
}

/**
 * The caller's key from `x-litellm-api-key` (first, as LiteLLM reads it: a client may send a provider
 * key in `Authorization` beside it), `Authorization: Bearer`, `x-api-key` or `api-key`. With
 * `keyHeader` (`general_settings.litellm_key_header_name`) only that header is read, as LiteLLM reads
 * it: `Authorization` is then left to whatever sits in front of the gateway.
 */
export function readKey(headers: Headers, keyHeader?: string): string | null {
  if (keyHeader) return keyIn(headers.get(keyHeader));
  return keyIn(headers.get("x-litellm-api-key")) ?? keyIn(headers.get("authorization"))
    ?? (headers.get("x-api-key")?.trim() || headers.get("api-key")?.trim() || null);
}

/**
 * Compares two key hashes (`hashKey` output). Comparing digests rather than raw keys is what makes
 * this safe: how far a wrong digest matches says nothing about the raw key that would match it.
 */
export function sameToken(a: string, b: string): boolean {
  return a === b;
}
