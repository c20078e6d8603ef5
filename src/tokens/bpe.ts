import { readFileSync } from "node:fs";
import ranksPath from "../../build/cl100k.bin" with { type: "file" };

/**
 * The cl100k_base byte-pair encoding, counting only. Its 100,256 token ranks are kept as one block of
 * bytes and an open-addressing hash table over it (about 2 MB all told, read in a few milliseconds),
 * not as a hundred thousand strings and map entries in the JavaScript heap (about 50 MB, and a third
 * of a second of the event loop to load).
 */

/**
 * How cl100k_base splits text before merging: tiktoken's pattern, written for JavaScript (its
 * possessive quantifiers dropped, which cannot change a match here; `(?i:…)` spelled out).
 */
const PIECES = /'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s+$|\s*[\r\n]|\s+(?!\S)|\s/gu;

const NONE = 0x7fffffff;

/** The ranks, looked up by a slice of bytes. */
class Ranks {
  private readonly offsets: Uint32Array;
  private readonly bytes: Uint8Array;
  private readonly slots: Int32Array;
  private readonly mask: number;

  constructor(file: Uint8Array) {
    // The header is read as 32-bit words: a copy when the file's bytes are not aligned for it (a
    // Buffer's `slice` would be a view at the same offset).
    const aligned = file.byteOffset % 4 === 0 ? file : new Uint8Array(file);
    const count = new Uint32Array(aligned.buffer, aligned.byteOffset, 1)[0]!;
    this.offsets = new Uint32Array(aligned.buffer, aligned.byteOffset + 4, count + 1);
    this.bytes = aligned.subarray(4 * (count + 2));
    if (this.bytes.length !== this.offsets[count]) throw new Error("token ranks: truncated file");
    let size = 1;
    while (size < count * 2) size *= 2;
    this.mask = size - 1;
    this.slots = new Int32Array(size).fill(-1);
    for (let rank = 0; rank < count; rank++) {
      let slot = hash(this.bytes, this.offsets[rank]!, this.offsets[rank + 1]!) & this.mask;
      while (this.slots[slot] !== -1) slot = (slot + 1) & this.mask;
      this.slots[slot] = rank;
    }
  }

  /** The rank of `buf[start, end)`, or NONE when it is no token. */
  rankOf(buf: Uint8Array, start: number, end: number): number {
    const length = end - start;
    for (let slot = hash(buf, start, end) & this.mask; ; slot = (slot + 1) & this.mask) {
      const rank = this.slots[slot]!;
      if (rank === -1) return NONE;
      const from = this.offsets[rank]!;
      if (this.offsets[rank + 1]! - from !== length) continue;
      let i = 0;
      while (i < length && this.bytes[from + i] === buf[start + i]) i++;
      if (i === length) return rank;
    }
  }
}

/** FNV-1a over `buf[start, end)`. */
function hash(buf: Uint8Array, start: number, end: number): number {
  let h = 0x811c9dc5;
  for (let i = start; i < end; i++) h = Math.imul(h ^ buf[i]!, 0x01000193);
  return h >>> 0;
}

/** Counts the tokens of a text, with the ranks the binary embeds unless given. Throws when they cannot be read. */
export function cl100kCounter(file: Uint8Array = readFileSync(ranksPath)): (text: string) => number {
  const ranks = new Ranks(file);
  const encoder = new TextEncoder();
  let bytes = new Uint8Array(1024);
  // Where each part of the piece starts, and the rank of it merged with the next (NONE: no such token).
  let starts = new Int32Array(1024);
  let pairRanks = new Int32Array(1024);

  /** The tokens of one piece's `n` bytes: merging, lowest rank first, the adjacent parts that make a token. */
  function pieceTokens(n: number): number {
    if (n === 1 || ranks.rankOf(bytes, 0, n) !== NONE) return 1;
    if (starts.length < n + 1) {
      starts = new Int32Array(2 * n + 1);
      pairRanks = new Int32Array(2 * n + 1);
    }
    let parts = n;
    for (let i = 0; i <= n; i++) starts[i] = i;
    for (let i = 0; i < n - 1; i++) pairRanks[i] = ranks.rankOf(bytes, i, i + 2);
    pairRanks[n - 1] = NONE;
    for (;;) {
      let best = NONE;
      let at = -1;
      for (let i = 0; i < parts - 1; i++) {
        if (pairRanks[i]! < best) {
          best = pairRanks[i]!;
          at = i;
        }
      }
      if (at === -1) return parts;
      // Part `at` absorbs part `at + 1`.
      starts.copyWithin(at + 1, at + 2, parts + 1);
      pairRanks.copyWithin(at + 1, at + 2, parts);
      parts--;
      pairRanks[at] = at + 1 < parts ? ranks.rankOf(bytes, starts[at]!, starts[at + 2]!) : NONE;
      if (at > 0) pairRanks[at - 1] = ranks.rankOf(bytes, starts[at - 1]!, starts[at + 1]!);
    }
  }

  return (text) => {
    let tokens = 0;
    for (const match of text.matchAll(PIECES)) {
      const piece = match[0];
      if (bytes.length < piece.length * 3) bytes = new Uint8Array(piece.length * 3);
      tokens += pieceTokens(encoder.encodeInto(piece, bytes).written);
    }
    return tokens;
  };
}
