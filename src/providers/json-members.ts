/** Where a top-level member's value lies in strict JSON object text: `text.slice(start, end)`. */
export interface Span {
  start: number;
  end: number;
  /** What to cut to remove the member, key and value, with one comma next to it (the object stays JSON). */
  member?: { start: number; end: number };
}

const WHITESPACE = new Set([" ", "\t", "\n", "\r"]);
const STRUCTURE = /["{}[\]]/g;
const SCALAR_END = /[\s,}\]]/g;

function skipWhitespace(text: string, at: number): number {
  while (WHITESPACE.has(text[at]!)) at++;
  return at;
}

/** The index after the string that opens at `at`, or -1. */
function stringEnd(text: string, at: number): number {
  let from = at + 1;
  for (;;) {
    const quote = text.indexOf('"', from);
    if (quote < 0) return -1;
    let backslashes = 0;
    while (text.charCodeAt(quote - 1 - backslashes) === 92) backslashes++;
    if (backslashes % 2 === 0) return quote + 1;
    from = quote + 1;
  }
}

/** The index after the value that starts at `at`, or -1: strings and nesting skipped by searching, not char by char. */
function valueEnd(text: string, at: number): number {
  const first = text[at];
  if (first === '"') return stringEnd(text, at);
  if (first === "{" || first === "[") {
    let depth = 0;
    STRUCTURE.lastIndex = at;
    for (;;) {
      const found = STRUCTURE.exec(text);
      if (!found) return -1;
      const char = found[0];
      if (char === '"') {
        const end = stringEnd(text, found.index);
        if (end < 0) return -1;
        STRUCTURE.lastIndex = end;
      } else if (char === "{" || char === "[") {
        depth++;
      } else if (--depth === 0) {
        return found.index + 1;
      }
    }
  }
  SCALAR_END.lastIndex = at;
  const found = SCALAR_END.exec(text);
  return found ? found.index : text.length;
}

/**
 * The spans of the named top-level members' values, or null when the text is not a JSON object this
 * reading understands, or names one of them twice (`{"model":"a","model":"b"}`: litegate checks
 * and prices the last, as JSON.parse keeps it, while a provider might read the first). Lets a body be changed in
 * place — a value swapped, a member added — so that nothing else in it is re-serialised (numbers
 * past double precision, spacing and key order reach the provider as the client wrote them).
 */
export function memberSpans(text: string, names: readonly string[]): Map<string, Span> | null {
  const spans = new Map<string, Span>();
  let at = skipWhitespace(text, 0);
  if (text[at] !== "{") return null;
  at = skipWhitespace(text, at + 1);
  if (text[at] === "}") return spans;
  let comma = -1;
  for (;;) {
    if (text[at] !== '"') return null;
    const keyStart = at;
    const keyEnd = stringEnd(text, at);
    if (keyEnd < 0) return null;
    const rawKey = text.slice(at + 1, keyEnd - 1);
    const key = rawKey.includes("\\") ? (JSON.parse(text.slice(at, keyEnd)) as string) : rawKey;
    at = skipWhitespace(text, keyEnd);
    if (text[at] !== ":") return null;
    at = skipWhitespace(text, at + 1);
    const end = valueEnd(text, at);
    if (end < 0 || end === at) return null;
    const after = skipWhitespace(text, end);
    const followed = text[after] === ",";
    if (names.includes(key)) {
      if (spans.has(key)) return null;
      // Up to the next member when one follows, else from the comma before it (or alone, the only member).
      const member = followed ? { start: keyStart, end: skipWhitespace(text, after + 1) } : { start: comma >= 0 ? comma : keyStart, end };
      spans.set(key, { start: at, end, member });
    }
    at = after;
    if (followed) {
      comma = at;
      at = skipWhitespace(text, at + 1);
      continue;
    }
    return text[at] === "}" ? spans : null;
  }
}

/** The index of the object's closing brace, where a member can be added. */
export function closingBrace(text: string): number {
  return text.lastIndexOf("}");
}
