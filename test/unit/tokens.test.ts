import { describe, expect, test } from "bun:test";
import { countPromptTokens, countTextTokens, estimateTokens } from "../../src/tokens";

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
