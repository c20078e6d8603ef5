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

/** The caller's key from `Authorization: Bearer`, `x-api-key` or `api-key`. */
export function readKey(headers: Headers): string | null {
  const authorization = headers.get("authorization");
  if (authorization) {
    // The scheme is case-insensitive and may be followed by any run of spaces or tabs (RFC 9110).
    const value = /^bearer(?:[ \t]|$)/i.test(authorization) ? authorization.slice(6) : authorization;
    const trimmed = value.trim();
    if (trimmed) return trimmed;
  }
  return headers.get("x-api-key")?.trim() || headers.get("api-key")?.trim() || null;
}

/**
 * Compares two key hashes (`hashKey` output). Comparing digests rather than raw keys is what makes
 * this safe: how far a wrong digest matches says nothing about the raw key that would match it.
 */
export function sameToken(a: string, b: string): boolean {
  return a === b;
}
