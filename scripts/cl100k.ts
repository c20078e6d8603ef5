/**
 * Packs the cl100k_base token ranks into the compact file the binary embeds (build/cl100k.bin), so that
 * counting tokens never loads a hundred thousand strings into the JavaScript heap.
 *
 * Layout, little-endian: u32 count, u32 offsets[count + 1], then every token's bytes back to back, in
 * rank order (token r is bytes[offsets[r] .. offsets[r + 1])).
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const { default: ranks } = (await import("gpt-tokenizer/esm/bpeRanks/cl100k_base.js" as string)) as { default: (string | number[])[] };
const encoder = new TextEncoder();
const tokens = ranks.map((token) => (typeof token === "string" ? encoder.encode(token) : Uint8Array.from(token)));
const size = tokens.reduce((sum, t) => sum + t.length, 0);
const header = new Uint32Array(2 + tokens.length);
header[0] = tokens.length;
const bytes = new Uint8Array(size);
let at = 0;
tokens.forEach((token, rank) => {
  header[1 + rank] = at;
  bytes.set(token, at);
  at += token.length;
});
header[1 + tokens.length] = at;
// Every rank is a distinct byte string, and every single byte is one: what the merge relies on.
const seen = new Set(tokens.map((t) => Buffer.from(t).toString("latin1")));
if (seen.size !== tokens.length || tokens.filter((t) => t.length === 1).length !== 256) throw new Error("unexpected cl100k_base ranks");
const out = join(import.meta.dir, "../build/cl100k.bin");
mkdirSync(join(import.meta.dir, "../build"), { recursive: true });
writeFileSync(out, Buffer.concat([new Uint8Array(header.buffer), bytes]));
process.stdout.write(`token ranks: ${out} (${tokens.length} tokens, ${Math.round((header.byteLength + size) / 1024)} KiB)\n`);
