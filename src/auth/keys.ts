import { timingSafeEqual } from "node:crypto";

/** sha256 hex of a raw key: the only form a virtual key is stored or looked up in. */
export function hashKey(raw: string): string {
  return new Bun.CryptoHasher("sha256").update(raw).digest("hex");
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
    const value = authorization.startsWith("Bearer ") || authorization.startsWith("bearer ")
      ? authorization.slice(7)
      : authorization;
    const trimmed = value.trim();
    if (trimmed) return trimmed;
  }
  return headers.get("x-api-key")?.trim() || headers.get("api-key")?.trim() || null;
}

/** Constant-time comparison of two key hashes (`hashKey` output: equal lengths, so nothing leaks). */
export function sameToken(a: string, b: string): boolean {
  return a.length === b.length && timingSafeEqual(Buffer.from(a, "latin1"), Buffer.from(b, "latin1"));
}
