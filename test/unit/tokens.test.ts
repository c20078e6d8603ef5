import { describe, expect, test } from "bun:test";
import { EXACT_CHARS, countPromptTokens, countTextTokens, estimateTokens } from "../../src/tokens";

describe("token counting", () => {
  test("countTextTokens uses a real BPE: known counts, not a character ratio", () => {
    expect(countTextTokens("")).toBe(0);
    expect(countTextTokens("hello world")).toBe(2);
    expect(countTextTokens("The quick brown fox jumps over the lazy dog.")).toBe(10);
    expect(countTextTokens("日本語のテキスト")).toBeGreaterThan(estimateTokens("日本語のテキスト"));
    expect(countTextTokens("The quick brown fox jumps over the lazy dog.")).not.toBe(estimateTokens("The quick brown fox jumps over the lazy dog."));
  });

  test("text shaped like a special token is counted as text, not refused", () => {
    expect(countTextTokens("<|endoftext|>")).toBeGreaterThan(1);
  });

  test("estimateTokens is about four characters a token", () => {
    expect(estimateTokens("")).toBe(0);
    expect(estimateTokens("abc")).toBe(1);
    expect(estimateTokens("x".repeat(400))).toBe(100);
  });

  test("chat prompts: message framing, roles, names and contents", () => {
    const one = countPromptTokens("chat", { messages: [{ role: "user", content: "hello world" }] }, true);
    // 3 priming + 3 framing + "user" (1) + "hello world" (2)
    expect(one).toBe(9);
    const named = countPromptTokens("chat", { messages: [{ role: "user", name: "bob", content: "hello world" }] }, true);
    expect(named).toBe(one + 1 + countTextTokens("bob"));
    const parts = countPromptTokens("chat", { messages: [{ role: "user", content: [{ type: "text", text: "hello" }, { type: "text", text: " world" }] }] }, true);
    expect(parts).toBe(one);
    const two = countPromptTokens("chat", { messages: [{ role: "system", content: "Be brief." }, { role: "user", content: "hello world" }] }, true);
    expect(two).toBe(one + 3 + countTextTokens("system") + countTextTokens("Be brief."));
    const withTools = countPromptTokens("chat", { messages: [{ role: "user", content: "hello world" }], tools: [{ type: "function", function: { name: "get_weather" } }] }, true);
    expect(withTools).toBeGreaterThan(one + 5);
  });

  test("the estimate mode follows the text length, about four characters a token", () => {
    const body = { messages: [{ role: "user", content: "x".repeat(4000) }] };
    expect(countPromptTokens("chat", body, false)).toBe(3 + 3 + 1 + 1000);
  });

  test("completion prompts and embedding inputs: strings, batches and token arrays", () => {
    expect(countPromptTokens("completions", { prompt: "hello world" }, true)).toBe(2);
    expect(countPromptTokens("completions", { prompt: ["hello world", "hello"] }, true)).toBe(3);
    expect(countPromptTokens("embeddings", { input: [15339, 1917, 0] }, true)).toBe(3);
    expect(countPromptTokens("embeddings", { input: [[1, 2], [3]] }, true)).toBe(3);
    expect(countPromptTokens("embeddings", { input: "hello world" }, false)).toBe(3);
  });
});

describe("long texts", () => {
  test("past EXACT_CHARS characters the count extrapolates from an exact count of the start, within 1% on even text", async () => {
    const { countTokens } = await import("gpt-tokenizer/encoding/cl100k_base");
    const words = "Budgets hold under concurrency: 12 keys, 3 teams, ünïcödé and 漢字 too. ";
    const text = words.repeat(Math.ceil(1_000_000 / words.length)).slice(0, 1_000_000);
    const exact = countTokens(text);
    expect(Math.abs(countTextTokens(text) - exact) / exact).toBeLessThan(0.01);
    // The same bound over one request's messages together: their first EXACT_CHARS characters are counted exactly.
    const messages = Array.from({ length: 50 }, (_, i) => ({ role: "user", content: text.slice(i * 20_000, (i + 1) * 20_000) }));
    const prompt = countPromptTokens("chat", { messages }, true);
    const exactPrompt = 3 + messages.reduce((sum, m) => sum + 3 + countTokens(m.role) + countTokens(m.content), 0);
    expect(Math.abs(prompt - exactPrompt) / exactPrompt).toBeLessThan(0.01);
    // Shorter texts are exact.
    expect(countTextTokens(text.slice(0, EXACT_CHARS))).toBe(countTokens(text.slice(0, EXACT_CHARS)));
    // The tokenizer reads only the start (it runs on the event loop, ~20 MB/s): the rest is counted at its rate,
    // even where the rest is a different kind of text.
    const start = "plain words ".repeat(EXACT_CHARS).slice(0, EXACT_CHARS);
    const mixed = start + "漢".repeat(1_000_000);
    expect(countTextTokens(mixed)).toBe(countTokens(start) + Math.ceil((1_000_000 * countTokens(start)) / start.length));
  });

  test("unbroken runs (the tokenizer is quadratic in their length) are counted in pieces, exactly for repeated text", async () => {
    const { countTokens } = await import("gpt-tokenizer/encoding/cl100k_base");
    // Exactly: 20,000 letters "a" are 2,500 tokens, 20,000 CJK characters 40,000, as the whole run counted at once.
    for (const run of ["a".repeat(20_000), "漢".repeat(20_000), " ".repeat(20_000)]) expect(countTextTokens(run)).toBe(countTokens(run));
    // Astral characters (never cut in half), within ordinary text: a piece boundary may add a token.
    const emoji = `hello ${"🙂".repeat(3_001)} world`;
    expect(Math.abs(countTextTokens(emoji) - countTokens(emoji))).toBeLessThanOrEqual(emoji.length / 128);
    // A run of random text is counted in pieces, within 2% of the whole (which took seconds at 50,000 characters).
    const b64 = Buffer.from(new Uint8Array(15_000).map((_, i) => (i * 7919) % 251)).toString("base64");
    const whole = countTokens(b64);
    expect(Math.abs(countTextTokens(b64) - whole) / whole).toBeLessThan(0.02);
  });
});
