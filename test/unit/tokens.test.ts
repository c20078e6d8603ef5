import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { EXACT_CHARS, countPromptTokens, countTextTokens, estimateTokens } from "../../src/tokens";
import { cl100kCounter } from "../../src/tokens/bpe";

describe("token counting", () => {
  test("countTextTokens uses a real BPE: known counts, not a character ratio", () => {
    expect(countTextTokens("")).toBe(0);
    expect(countTextTokens("hello world")).toBe(2);
    expect(countTextTokens("The quick brown fox jumps over the lazy dog.")).toBe(10);
    expect(countTextTokens("日本語のテキスト")).toBe(8);
  });

  test("text shaped like a special token is counted as text, not refused", () => {
    expect(countTextTokens("<|endoftext|>")).toBeGreaterThan(1);
  });

  test("estimateTokens stays at or above the tokenizer's count for prose and CJK, without a tokenizer", async () => {
    expect(estimateTokens("")).toBe(0);
    expect(estimateTokens("abc")).toBe(1);
    // ASCII: three characters a token.
    expect(estimateTokens("x".repeat(300))).toBe(100);
    // Each byte past a character's first adds half a token: CJK is 1.33 tokens a character.
    expect(estimateTokens("漢".repeat(300))).toBe(400);
    expect(estimateTokens("Ж".repeat(300))).toBe(250);
    const { countTokens: o200k } = await import("gpt-tokenizer/encoding/o200k_base");
    const texts = [
      "The quick brown fox jumps over the lazy dog, and budgets hold under concurrency. ",
      "预算超支测试请忽略",
      "人工智能是计算机科学的一个分支，它企图了解智能的实质。",
      "日本語のテキストはトークン数が多くなりがちです。東京都に住んでいる人々は毎日電車に乗ります。",
      "한국어 텍스트는 토큰이 많이 필요합니다. 서울에 사는 사람들은 매일 지하철을 탑니다.",
      "यह एक परीक्षण वाक्य है जो हिंदी में लिखा गया है और इसमें कई शब्द हैं।",
      "นี่คือประโยคทดสอบที่เขียนเป็นภาษาไทยและมีหลายคำอยู่ในนั้น",
      "Бюджет не должен быть превышен при одновременных запросах.",
      "Grüße aus München, die Straße ist schön und das Wetter ändert sich häufig.",
      "function f(x) { return x.map((y) => y * 2).filter(Boolean); } // comment\n",
    ];
    for (const text of texts) {
      const long = text.repeat(20);
      expect(`${text}: ${estimateTokens(long) >= countTextTokens(long)}`).toBe(`${text}: true`);
      expect(`${text}: ${estimateTokens(long) >= o200k(long)}`).toBe(`${text}: true`);
    }
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

  test("the estimate mode counts the text with the estimate", () => {
    const body = { messages: [{ role: "user", content: "x".repeat(3000) }] };
    expect(countPromptTokens("chat", body, false)).toBe(3 + 3 + 2 + 1000);
  });

  test("images, audio, legacy functions and response schemas count in the prompt, estimated and exact", () => {
    const text = { role: "user", content: "hello world" };
    for (const exact of [false, true]) {
      const base = countPromptTokens("chat", { messages: [text] }, exact);
      const withParts = (...parts: unknown[]) => countPromptTokens("chat", { messages: [{ role: "user", content: [{ type: "text", text: "hello world" }, ...parts] }] }, exact);
      expect(withParts()).toBe(base);
      expect(withParts({ type: "image_url", image_url: { url: "data:image/png;base64,AAAA", detail: "low" } })).toBe(base + 85);
      expect(withParts({ type: "image_url", image_url: { url: "https://example.com/a.png" } })).toBe(base + 2000);
      expect(withParts({ type: "image_url", image_url: { url: "https://example.com/a.png", detail: "high" } }, { type: "image_url", image_url: "https://example.com/b.png" })).toBe(base + 4000);
      // Ten seconds of 32 kbit/s mp3 (40,000 bytes): 100 tokens; of 8 kHz 16-bit WAV (160,000 bytes) too.
      const audio = (bytes: number, format: string) => ({ type: "input_audio", input_audio: { data: "A".repeat((bytes * 4) / 3), format } });
      expect(withParts(audio(40_000, "mp3"))).toBe(base + 100);
      expect(withParts(audio(160_000, "wav"))).toBe(base + 100);
      const functions = [{ name: "get_weather", description: "The weather in a city", parameters: { type: "object", properties: { city: { type: "string" } } } }];
      expect(countPromptTokens("chat", { messages: [text], functions }, exact)).toBeGreaterThan(base + 10);
      const called = { role: "assistant", content: null, function_call: { name: "get_weather", arguments: '{"city":"Paris"}' } };
      expect(countPromptTokens("chat", { messages: [text, called] }, exact)).toBeGreaterThan(countPromptTokens("chat", { messages: [text, { role: "assistant", content: null }] }, exact) + 5);
      const schema = { type: "json_schema", json_schema: { name: "answer", schema: { type: "object", properties: { city: { type: "string" } } } } };
      expect(countPromptTokens("chat", { messages: [text], response_format: schema }, exact)).toBeGreaterThan(base + 10);
      expect(countPromptTokens("chat", { messages: [text], response_format: { type: "json_object" } }, exact)).toBe(base);
    }
  });

  test("completion prompts and embedding inputs: strings, batches and token arrays", () => {
    expect(countPromptTokens("completions", { prompt: "hello world" }, true)).toBe(2);
    expect(countPromptTokens("completions", { prompt: ["hello world", "hello"] }, true)).toBe(3);
    expect(countPromptTokens("embeddings", { input: [15339, 1917, 0] }, true)).toBe(3);
    expect(countPromptTokens("embeddings", { input: [[1, 2], [3]] }, true)).toBe(3);
    expect(countPromptTokens("embeddings", { input: "hello world" }, false)).toBe(4);
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

describe("the cl100k_base counter", () => {
  const ROOT = join(import.meta.dir, "../..");

  test("counts exactly what the reference tokenizer counts: documents, code, and random mixes of scripts, emoji, whitespace and apostrophes", async () => {
    const { countTokens } = await import("gpt-tokenizer/encoding/cl100k_base");
    const reference = (text: string) => countTokens(text, { disallowedSpecial: new Set<string>() });
    const counter = cl100kCounter();
    const texts = ["README.md", "docs/performance.md", "src/proxy/inference.ts", "sql/0001_init.sql"].map((file) => readFileSync(join(ROOT, file), "utf8"));
    let seed = 7;
    const random = () => (seed = (Math.imul(seed, 1103515245) + 12345) & 0x7fffffff) / 0x80000000;
    // Lone surrogates too (JSON can carry them): both encode them as U+FFFD.
    const alphabet = [..."abcXYZ 019'\n\r\t\u00a0.,;!?-_{}()[]\"ßüéЖж漢字カナ한글🙂👍🏽\u200d\u0301ſ<|>", "\ud83d", "\ude42"];
    for (let i = 0; i < 2_000; i++) {
      let text = "";
      for (let n = 1 + Math.floor(random() * 60); n > 0; n--) text += alphabet[Math.floor(random() * alphabet.length)];
      texts.push(text);
    }
    texts.push("<|endoftext|> hi", "   \n\n  \n x", "'S 'll 'LL 'Re 'd", "\n".repeat(50), `${" ".repeat(40)}x`, "1234567", "x\r\n\r\ny  ", "a".repeat(300));
    const mismatches = texts.filter((text) => counter(text) !== reference(text)).map((text) => JSON.stringify(text.slice(0, 60)));
    expect(mismatches).toEqual([]);
  });

  test("its ranks are read from bytes at any offset, and a truncated file is refused", () => {
    const file = readFileSync(join(ROOT, "build/cl100k.bin"));
    // A Buffer, whose `slice` is a view at the same offset rather than a copy.
    const shifted = Buffer.alloc(file.length + 1).subarray(1);
    shifted.set(file);
    expect(shifted.byteOffset % 4).toBe(1);
    expect(cl100kCounter(shifted)("The quick brown fox jumps over the lazy dog.")).toBe(10);
    expect(() => cl100kCounter(file.subarray(0, file.length - 1))).toThrow("truncated");
  });

  test("its ranks live outside the JavaScript heap: loading adds a few thousand strings, not a hundred thousand", () => {
    const script = `
      const { heapStats } = require("bun:jsc");
      const strings = () => (Bun.gc(true), heapStats().objectTypeCounts.string ?? 0);
      const { countTextTokens } = require(${JSON.stringify(join(ROOT, "src/tokens/index.ts"))});
      const before = strings();
      const tokens = countTextTokens("The quick brown fox jumps over the lazy dog.");
      console.log(JSON.stringify({ tokens, added: strings() - before }));`;
    const run = Bun.spawnSync([process.execPath, "-e", script], { cwd: ROOT });
    const { tokens, added } = JSON.parse(run.stdout.toString()) as { tokens: number; added: number };
    expect(tokens).toBe(10);
    expect(added).toBeLessThan(5_000);
  });
});
