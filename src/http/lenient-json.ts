/**
 * Request bodies as the LiteLLM documents write them. Strict JSON first (the common case, and the
 * cheapest); only when that fails, a tolerant reading of the quirks those documents contain:
 * trailing commas, `#` and `//` comments, bare words as strings, and a missing value as null.
 */
/** `strict` is false when the text needed the tolerant reading (it is then not valid JSON to forward). */
export type JsonResult = { ok: true; value: unknown; strict?: boolean } | { ok: false; message: string };

export const MAX_DEPTH = 64;

class Reader {
  pos = 0;
  constructor(private readonly text: string) {}

  fail(expected: string): never {
    const before = this.text.slice(0, this.pos);
    const line = before.split("\n").length;
    const column = this.pos - before.lastIndexOf("\n");
    throw new SyntaxError(`Invalid JSON at line ${line}, column ${column}: expected ${expected}`);
  }

  skip(): void {
    for (;;) {
      const c = this.text[this.pos];
      if (c === " " || c === "\t" || c === "\n" || c === "\r") this.pos++;
      else if (c === "#" || (c === "/" && this.text[this.pos + 1] === "/")) {
        while (this.pos < this.text.length && this.text[this.pos] !== "\n") this.pos++;
      } else return;
    }
  }

  value(depth: number): unknown {
    if (depth > MAX_DEPTH) throw new SyntaxError("JSON nested too deeply");
    this.skip();
    const c = this.text[this.pos];
    if (c === "{") return this.object(depth + 1);
    if (c === "[") return this.array(depth + 1);
    if (c === '"') return this.string();
    return this.bare();
  }

  object(depth: number): Record<string, unknown> {
    const out: Record<string, unknown> = Object.create(null);
    this.pos++;
    for (;;) {
      this.skip();
      if (this.text[this.pos] === "}") {
        this.pos++;
        return { ...out };
      }
      if (this.text[this.pos] !== '"') this.fail("a quoted key or '}'");
      const key = this.string();
      this.skip();
      if (this.text[this.pos] !== ":") this.fail("':'");
      this.pos++;
      this.skip();
      const next = this.text[this.pos];
      const value = next === "," || next === "}" ? null : this.value(depth);
      Object.defineProperty(out, key, { value, enumerable: true, writable: true, configurable: true });
      this.skip();
      if (this.text[this.pos] === ",") this.pos++;
      else if (this.text[this.pos] !== "}") this.fail("',' or '}'");
    }
  }

  array(depth: number): unknown[] {
    const out: unknown[] = [];
    this.pos++;
    for (;;) {
      this.skip();
      if (this.text[this.pos] === "]") {
        this.pos++;
        return out;
      }
      out.push(this.value(depth));
      this.skip();
      if (this.text[this.pos] === ",") this.pos++;
      else if (this.text[this.pos] !== "]") this.fail("',' or ']'");
    }
  }

  string(): string {
    const start = this.pos;
    this.pos++;
    while (this.pos < this.text.length) {
      const c = this.text[this.pos];
      if (c === "\\") this.pos += 2;
      else if (c === '"') {
        this.pos++;
        try {
          return JSON.parse(this.text.slice(start, this.pos));
        } catch {
          this.pos = start;
          this.fail("a valid string");
        }
      } else this.pos++;
    }
    this.pos = start;
    return this.fail("a closing '\"'");
  }

  bare(): unknown {
    const start = this.pos;
    while (this.pos < this.text.length && !/[\s,}\]#]/.test(this.text[this.pos]!)) this.pos++;
    const word = this.text.slice(start, this.pos);
    if (word === "") this.fail("a value");
    if (word === "true") return true;
    if (word === "false") return false;
    if (word === "null") return null;
    const number = Number(word);
    if (/^-?\d/.test(word) && Number.isFinite(number) && /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?$/.test(word)) return number;
    if (/^[\w.\-:/@]+$/.test(word)) return word;
    this.pos = start;
    return this.fail("a value");
  }
}

/** Text Postgres cannot store: the NUL character, or a lone UTF-16 surrogate (not Unicode at all). */
export const unstorable = (text: string) => text.includes("\0") || !text.isWellFormed();

/** How a body can spell such text: raw, or as a \u0000 or surrogate escape. */
const MAY_HOLD_UNSTORABLE = /\0|\\u0000|\\u[dD][89a-fA-F]/;

/**
 * Where a parsed body holds text Postgres cannot store (`"a.b[2]"`, `""` for the body itself), or
 * null: such a body is refused before anything of it is written. `text` is the body as received:
 * only a body that spells such a character is walked.
 */
export function unstorablePath(text: string, value: unknown): string | null {
  if (!MAY_HOLD_UNSTORABLE.test(text)) return null;
  const walk = (v: unknown, path: string): string | null => {
    if (typeof v === "string") return unstorable(v) ? path : null;
    if (Array.isArray(v)) {
      for (let i = 0; i < v.length; i++) {
        const found = walk(v[i], `${path}[${i}]`);
        if (found !== null) return found;
      }
    } else if (v && typeof v === "object") {
      for (const [key, item] of Object.entries(v)) {
        const found = unstorable(key) ? path : walk(item, path ? `${path}.${key}` : key);
        if (found !== null) return found;
      }
    }
    return null;
  };
  return walk(value, "");
}

export const UNSTORABLE_MESSAGE = "must be valid Unicode text without the NUL character (\\u0000), or it cannot be stored";

/**
 * The documents' bodies are a few hundred bytes. The tolerant reader runs at a few MB/s on the event
 * loop (a 4 MB body with trailing commas took a second), so larger bodies must be strict JSON.
 */
const TOLERANT_MAX_CHARS = 1_000_000;

/** The deepest nesting of objects and arrays in JSON text (brackets inside strings do not count). */
export function nestingDepth(text: string): number {
  let depth = 0;
  let deepest = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 92) i++; // a backslash escapes the next character
      else if (c === 34) inString = false;
    } else if (c === 34) inString = true;
    else if (c === 123 || c === 91) deepest = Math.max(deepest, ++depth);
    else if (c === 125 || c === 93) depth--;
  }
  return deepest;
}

export function parseJsonBody(text: string): JsonResult {
  try {
    return { ok: true, value: JSON.parse(text), strict: true };
  } catch (error) {
    // Not strict JSON (or nested beyond the engine's stack): the tolerant reading decides, for a body of a sane size.
    if (text.length > TOLERANT_MAX_CHARS) {
      const reason = error instanceof Error ? error.message : "not JSON";
      return { ok: false, message: `Invalid JSON (${reason}); a body over 1 MB must be strict JSON` };
    }
  }
  try {
    const reader = new Reader(text);
    const value = reader.value(0);
    reader.skip();
    if (reader.pos < text.length) reader.fail("end of input");
    return { ok: true, value, strict: false };
  } catch (error) {
    return { ok: false, message: error instanceof Error ? error.message : "Invalid JSON" };
  }
}
