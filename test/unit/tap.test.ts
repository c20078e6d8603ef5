import { describe, expect, test } from "bun:test";
import { type StreamOutcome, tapStream } from "../../src/proxy/tap";

const encoder = new TextEncoder();
const event = (data: unknown) => `data: ${JSON.stringify(data)}\r\n\r\n`;
const SSE =
  event({ choices: [{ index: 0, delta: { content: "Grüße, " } }] }) +
  ": a comment line\n\n" +
  event({ choices: [{ index: 0, delta: { content: "漢字 🙂" } }] }) +
  event({ choices: [{ index: 0, delta: { tool_calls: [{ function: { arguments: '{"a":1}' } }] } }] }) +
  event({ choices: [], usage: { prompt_tokens: 11, completion_tokens: 7, total_tokens: 18 } }) +
  "data: [DONE]\n\n";

/** Runs bytes through the tap in the given pieces; returns what came out and how it ended. */
async function tap(pieces: Uint8Array[], clientWantsUsage = true, secret?: string, failWith?: Error): Promise<{ out: Uint8Array; outcome: StreamOutcome }> {
  const source = new ReadableStream<Uint8Array>({
    start(controller) {
      for (const piece of pieces) controller.enqueue(piece);
      if (failWith) controller.error(failWith);
      else controller.close();
    },
  });
  let outcome: StreamOutcome | undefined;
  const out = new Uint8Array(await new Response(tapStream(source, { clientWantsUsage, secret }, (o) => (outcome = o))).arrayBuffer());
  return { out, outcome: outcome! };
}

describe("the stream tap", () => {
  test("usage and text are read wherever the provider's pieces split the events, and every byte passes unchanged", async () => {
    const bytes = encoder.encode(SSE);
    // Every split point, including inside multi-byte characters, "data:" and the CRLF pairs.
    for (let at = 1; at < bytes.length; at++) {
      const { out, outcome } = await tap([bytes.slice(0, at), bytes.slice(at)]);
      expect(out).toEqual(bytes);
      expect(`${at}: ${JSON.stringify(outcome)}`).toBe(
        `${at}: ${JSON.stringify({ end: "complete", usage: { prompt_tokens: 11, completion_tokens: 7, total_tokens: 18 }, text: 'Grüße, 漢字 🙂{"a":1}', providerError: false, failure: null })}`,
      );
    }
    // Byte by byte.
    const { outcome } = await tap(Array.from(bytes, (b) => new Uint8Array([b])));
    expect(outcome.usage?.total_tokens).toBe(18);
  });

  test("an event of several JSON chunks, one per data line, reaches the client as one event each, the provider key blanked out", async () => {
    const lines = [{ choices: [{ index: 0, delta: { content: "a" } }] }, { error: { message: "bad key sk-secret-123456" } }, { choices: [], usage: { prompt_tokens: 1, completion_tokens: 1 } }].map((c) => `data:${JSON.stringify(c)}\n`).join("");
    const bytes = encoder.encode(`${lines}\ndata: [DONE]\n\n`);
    for (let at = 1; at < bytes.length; at++) {
      const { out, outcome } = await tap([bytes.slice(0, at), bytes.slice(at)], false, "sk-secret-123456");
      expect(new TextDecoder().decode(out)).toBe(`data: {"choices":[{"index":0,"delta":{"content":"a"}}]}\n\ndata: {"error":{"message":"bad key [redacted]"}}\n\ndata: [DONE]\n\n`);
      expect(outcome).toMatchObject({ end: "failed", text: "a", providerError: true, usage: { total_tokens: 2 } });
      expect(outcome.failure).toEqual({ status: 502, type: "upstream_error", message: "bad key [redacted]" });
    }
  });

  test("a line megabytes long arriving in small pieces is read once", async () => {
    const long = event({ choices: [{ delta: { content: "x".repeat(3_000_000) } }] }) + event({ choices: [], usage: { prompt_tokens: 1, completion_tokens: 2 } }) + "data: [DONE]\n\n";
    const bytes = encoder.encode(long);
    const pieces: Uint8Array[] = [];
    for (let i = 0; i < bytes.length; i += 4096) pieces.push(bytes.slice(i, i + 4096));
    const { out, outcome } = await tap(pieces);
    expect(out.length).toBe(bytes.length);
    expect(outcome.text.length).toBe(3_000_000);
    expect(outcome.usage).toEqual({ prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 });
  });

  const text = (out: Uint8Array) => new TextDecoder().decode(out);
  const usageEvent = event({ choices: [], usage: { prompt_tokens: 11, completion_tokens: 7, total_tokens: 18 } });

  test("the usage chunk litegate asked for is kept from a client that did not ask, wherever the pieces split", async () => {
    const bytes = encoder.encode(SSE);
    const expected = SSE.replace(usageEvent, "");
    for (let at = 1; at < bytes.length; at += 7) {
      const { out, outcome } = await tap([bytes.slice(0, at), bytes.slice(at)], false);
      expect(text(out)).toBe(expected);
      expect(outcome.usage?.total_tokens).toBe(18);
      expect(outcome.end).toBe("complete");
    }
  });

  test("a usage chunk without a choices list (missing or null) is kept from a client that did not ask too; an error with usage is not", async () => {
    for (const usage of [{ usage: { prompt_tokens: 11, completion_tokens: 7 } }, { choices: null, usage: { prompt_tokens: 11, completion_tokens: 7 } }]) {
      const sse = SSE.replace(usageEvent, event(usage));
      const { out, outcome } = await tap([encoder.encode(sse)], false);
      expect(text(out)).toBe(SSE.replace(usageEvent, ""));
      expect(outcome.usage?.total_tokens).toBe(18);
      expect((await tap([encoder.encode(sse)], true)).out).toEqual(encoder.encode(sse));
    }
    const failed = event({ error: { message: "cut" }, usage: { prompt_tokens: 11, completion_tokens: 7 } });
    expect(text((await tap([encoder.encode(SSE.replace(usageEvent, failed))], false)).out)).toContain('"cut"');
  });

  test("a client that asked for usage gets a usage chunk counted by litegate before [DONE] when the provider sent none", async () => {
    const noUsage = SSE.replace(usageEvent, "").replace(/"choices"/g, '"id":"chatcmpl-7","object":"chat.completion.chunk","created":1700000000,"model":"m-1","choices"');
    const bytes = encoder.encode(noUsage);
    const counted = { prompt_tokens: 5, completion_tokens: 9, total_tokens: 14 };
    for (let at = 1; at < bytes.length; at += 5) {
      let outcome: StreamOutcome | undefined;
      const texts: string[] = [];
      const source = new ReadableStream<Uint8Array>({ start(c) { c.enqueue(bytes.slice(0, at)); c.enqueue(bytes.slice(at)); c.close(); } });
      const out = await new Response(tapStream(source, { clientWantsUsage: true, countUsage: (t) => (texts.push(t), counted) }, (o) => (outcome = o))).text();
      const usageChunk = { id: "chatcmpl-7", object: "chat.completion.chunk", created: 1700000000, model: "m-1", choices: [], usage: counted };
      expect(out).toBe(noUsage.replace("data: [DONE]\n\n", `data: ${JSON.stringify(usageChunk)}\n\ndata: [DONE]\n\n`));
      expect(texts).toEqual(['Grüße, 漢字 🙂{"a":1}']);
      // That count is what the stream is charged.
      expect(outcome).toEqual({ end: "complete", usage: counted, text: 'Grüße, 漢字 🙂{"a":1}', providerError: false, failure: null });
    }
    // A provider that ends every choice but sends no [DONE]: the chunk and [DONE] close the stream.
    const finishing = event({ id: "c-2", object: "chat.completion.chunk", created: 1, model: "m-2", choices: [{ index: 0, delta: { content: "Hi" } }] }) +
      event({ id: "c-2", object: "chat.completion.chunk", created: 1, model: "m-2", choices: [{ index: 0, delta: {}, finish_reason: "stop" }] });
    let ended: StreamOutcome | undefined;
    const cut = new ReadableStream<Uint8Array>({ start(c) { c.enqueue(encoder.encode(finishing)); c.close(); } });
    const closed = await new Response(tapStream(cut, { clientWantsUsage: true, countUsage: () => counted }, (o) => (ended = o))).text();
    expect(closed).toBe(`${finishing}data: ${JSON.stringify({ id: "c-2", object: "chat.completion.chunk", created: 1, model: "m-2", choices: [], usage: counted })}\n\ndata: [DONE]\n\n`);
    expect(ended).toEqual({ end: "complete", usage: counted, text: "Hi", providerError: false, failure: null });
    // A client that did not ask: the provider's bytes, and the [DONE] it left out.
    const plain = new ReadableStream<Uint8Array>({ start(c) { c.enqueue(encoder.encode(finishing)); c.close(); } });
    expect(await new Response(tapStream(plain, { clientWantsUsage: false, countUsage: () => counted }, () => {})).text()).toBe(`${finishing}data: [DONE]\n\n`);
    // A provider that sent usage: nothing is counted or added.
    const source = new ReadableStream<Uint8Array>({ start(c) { c.enqueue(encoder.encode(SSE)); c.close(); } });
    const out = await new Response(tapStream(source, { clientWantsUsage: true, countUsage: () => { throw new Error("not counted"); } }, () => {})).text();
    expect(out).toBe(SSE);
  });

  test("the text counted when no usage comes: content, refusals, tool and legacy function names and arguments", async () => {
    const sse = event({ choices: [{ index: 0, delta: { role: "assistant", content: null, function_call: { name: "get_weather", arguments: "" } } }] }) +
      event({ choices: [{ index: 0, delta: { function_call: { arguments: '{"city":' } } }] }) +
      event({ choices: [{ index: 0, delta: { function_call: { arguments: '"Paris"}' } } }] }) +
      event({ choices: [{ index: 0, delta: { tool_calls: [{ index: 0, id: "t1", type: "function", function: { name: "lookup", arguments: "" } }] } }] }) +
      event({ choices: [{ index: 0, delta: { tool_calls: [{ index: 0, function: { arguments: '{"q":1}' } }] } }] }) +
      event({ choices: [{ index: 0, delta: { refusal: "I cannot." } }] }) +
      event({ choices: [{ index: 0, delta: {}, finish_reason: "function_call" }] }) +
      "data: [DONE]\n\n";
    const { outcome } = await tap([encoder.encode(sse)]);
    expect(outcome).toEqual({ end: "complete", usage: null, text: 'get_weather{"city":"Paris"}lookup{"q":1}I cannot.', providerError: false, failure: null });
  });

  test("events as the SSE rules write them: several data lines, CR line ends, a last event without its blank line", async () => {
    const chunk = { choices: [{ index: 0, delta: { content: "hi" }, finish_reason: "stop" }] };
    const usage = { choices: [], usage: { prompt_tokens: 3, completion_tokens: 4, total_tokens: 7 } };
    const split = `data: {"choices":[{"index":0,\ndata: "delta":{"content":"hi"},"finish_reason":"stop"}]}\n\n${event(usage)}data: [DONE]\n\n`;
    const cr = `data: ${JSON.stringify(chunk)}\r\rdata: ${JSON.stringify(usage)}\r\rdata: [DONE]\r\r`;
    const unterminated = `${event(chunk)}data: ${JSON.stringify(usage)}`;
    const perLine = `data: ${JSON.stringify(chunk)}\ndata: ${JSON.stringify(usage)}\ndata: [DONE]\n\n`;
    for (const sse of [split, cr, unterminated, perLine]) {
      const bytes = encoder.encode(sse);
      const { out, outcome } = await tap([bytes.slice(0, 20), bytes.slice(20)]);
      // The one without [DONE] gets its blank line and the [DONE] the provider left out; one chunk per
      // data line, an event each (a client joins an event's lines, which would not be JSON).
      const expected = sse === unterminated ? `${sse}\n\ndata: [DONE]\n\n` : sse === perLine ? `${event(chunk)}${event(usage)}data: [DONE]\n\n`.replaceAll("\r", "") : sse;
      expect(text(out)).toBe(expected);
      expect(outcome).toEqual({ end: "complete", usage: { prompt_tokens: 3, completion_tokens: 4, total_tokens: 7 }, text: "hi", providerError: false, failure: null });
    }
  });

  test("a malformed event ends the stream after the events before it; nothing after it is read", async () => {
    const a = event({ choices: [{ index: 0, delta: { content: "A" } }] });
    const b = event({ choices: [{ index: 0, delta: { content: "B" } }] });
    const rest = "data: {broken\n\n" + usageEvent + "data: [DONE]\n\n";
    const { out, outcome } = await tap([encoder.encode(a), encoder.encode(b + rest)]);
    expect(text(out).startsWith(a + b)).toBe(true);
    expect(text(out)).toContain("malformed stream event");
    expect(text(out)).not.toContain("broken");
    expect(outcome).toEqual({ end: "failed", usage: null, text: "AB", providerError: false,
      failure: { status: 502, type: "upstream_error", message: "Upstream sent a malformed stream event; the stream was ended" } });
  });

  test("a stream the provider closes before saying it is done ends with an error event, not silently", async () => {
    const a = event({ choices: [{ index: 0, delta: { content: "A" } }] });
    const { out, outcome } = await tap([encoder.encode(a + a)]);
    expect(text(out).startsWith(a + a)).toBe(true);
    expect(text(out)).toContain("closed the stream before the answer was complete");
    expect(outcome.end).toBe("failed");
    expect(outcome.text).toBe("AA");
    // A finish_reason without [DONE] is a finished answer, once every choice has one (n > 1).
    const done = event({ choices: [{ index: 0, delta: {}, finish_reason: "length" }] });
    expect((await tap([encoder.encode(a + done)])).outcome.end).toBe("complete");
    const second = event({ choices: [{ index: 1, delta: { content: "B" } }] });
    expect((await tap([encoder.encode(a + second + done)])).outcome.end).toBe("failed");
    const secondDone = event({ choices: [{ index: 1, delta: {}, finish_reason: "stop" }] });
    expect((await tap([encoder.encode(a + second + done + secondDone)])).outcome.end).toBe("complete");
  });

  test("with n choices asked for, the answer is done once n have finished, not when the ones begun have", async () => {
    const first = event({ choices: [{ index: 0, delta: { content: "A" } }] }) + event({ choices: [{ index: 0, delta: {}, finish_reason: "stop" }] });
    const second = event({ choices: [{ index: 1, delta: { content: "B" } }] }) + event({ choices: [{ index: 1, delta: {}, finish_reason: "stop" }] });
    const run = async (sse: string, choices: number) => {
      let outcome: StreamOutcome | undefined;
      const source = new ReadableStream<Uint8Array>({ start(c) { c.enqueue(encoder.encode(sse)); c.close(); } });
      const out = await new Response(tapStream(source, { clientWantsUsage: false, choices }, (o) => (outcome = o))).text();
      return { out, end: outcome!.end };
    };
    // The provider ends after choice 0 (of 2): cut short, the client told so.
    const cut = await run(first, 2);
    expect(cut.end).toBe("failed");
    expect(cut.out).toContain("closed the stream before the answer was complete");
    expect((await run(first + second, 2)).end).toBe("complete");
    expect((await run(first, 1)).end).toBe("complete");
    // A provider that ignores n answers one choice and its usage, and closes: that is its whole answer.
    const usage = event({ choices: [], usage: { prompt_tokens: 7, completion_tokens: 1, total_tokens: 8 } });
    const ignored = await run(first + usage, 2);
    expect(ignored.end).toBe("complete");
    expect(ignored.out).not.toContain("closed the stream");
    // A provider error event, then [DONE] or the end: the stream failed, whatever follows.
    const failure = event({ error: { message: "overloaded" } });
    expect((await run(first + failure + "data: [DONE]\n\n", 1)).end).toBe("failed");
    // The client leaves after choice 0 finished, before choice 1 began.
    let left: StreamOutcome | undefined;
    const open = new ReadableStream<Uint8Array>({ start(c) { c.enqueue(encoder.encode(first)); } });
    const reader = tapStream(open, { clientWantsUsage: false, choices: 2 }, (o) => (left = o)).getReader();
    await reader.read();
    await reader.cancel();
    expect(left!.end).toBe("cancelled");
  });

  test("a client leaving after the last finish_reason but before the provider's usage has disconnected; after the usage, it has all", async () => {
    const answer = event({ choices: [{ index: 0, delta: { content: "A" } }] }) + event({ choices: [{ index: 0, delta: {}, finish_reason: "stop" }] });
    const leave = async (sse: string) => {
      let outcome: StreamOutcome | undefined;
      const open = new ReadableStream<Uint8Array>({ start(c) { c.enqueue(encoder.encode(sse)); } });
      const reader = tapStream(open, { clientWantsUsage: false }, (o) => (outcome = o)).getReader();
      await reader.read();
      await reader.cancel();
      return outcome!.end;
    };
    expect(await leave(answer)).toBe("cancelled");
    expect(await leave(answer + usageEvent)).toBe("complete");
    expect(await leave(answer + "data: [DONE]\n\n")).toBe("complete");
  });

  test("without [DONE], the stream ends at the usage that follows the finish, not at a usage sent before it", async () => {
    let source!: ReadableStreamDefaultController<Uint8Array>;
    const open = new ReadableStream<Uint8Array>({ start(c) { source = c; } });
    let outcome: StreamOutcome | undefined;
    const reader = tapStream(open, { clientWantsUsage: true }, (o) => (outcome = o)).getReader();
    const early = { prompt_tokens: 11, completion_tokens: 0, total_tokens: 11 };
    source.enqueue(encoder.encode(event({ choices: [{ index: 0, delta: { content: "A" } }], usage: early }) + event({ choices: [{ index: 0, delta: {}, finish_reason: "stop" }] })));
    expect((await reader.read()).done).toBe(false);
    const next = reader.read();
    expect(await Promise.race([next.then(() => "read"), Bun.sleep(50).then(() => "waiting")])).toBe("waiting");
    expect(outcome).toBeUndefined();
    source.enqueue(encoder.encode(usageEvent));
    expect(text((await next).value!)).toBe(usageEvent + "data: [DONE]\n\n");
    expect((await reader.read()).done).toBe(true);
    expect(outcome).toEqual({ end: "complete", usage: { prompt_tokens: 11, completion_tokens: 7, total_tokens: 18 }, text: "A", providerError: false, failure: null });
  });

  test("an event that grows past 16 MB without ending ends the stream with an error, the text passed on before it counted", async () => {
    const a = event({ choices: [{ index: 0, delta: { content: "A" } }] });
    const piece = encoder.encode("x".repeat(1024 * 1024));
    let sent = 0;
    let cancelled = false;
    const endless = new ReadableStream<Uint8Array>({
      pull(c) {
        c.enqueue(sent++ === 0 ? encoder.encode(`${a}data: {"choices":[{"index":0,"delta":{"content":"`) : piece);
        if (sent > 40) c.close();
      },
      cancel() {
        cancelled = true;
      },
    }, { highWaterMark: 0 });
    let outcome: StreamOutcome | undefined;
    const out = await new Response(tapStream(endless, { clientWantsUsage: true }, (o) => (outcome = o))).text();
    expect(out).toStartWith(a);
    expect(out).toContain("Upstream sent a stream event over 16 MB without ending it; the stream was ended");
    expect(out).not.toContain("xxx");
    expect(outcome).toEqual({ end: "failed", usage: null, text: "A", providerError: false,
      failure: { status: 502, type: "upstream_error", message: "Upstream sent a stream event over 16 MB without ending it; the stream was ended" } });
    // The opening piece and 16 of 1 MB: read no further.
    expect(sent).toBe(17);
    expect(cancelled).toBe(true);
  });

  test("a provider error inside the stream never passes the provider key on: as sent, in another case, or masked", async () => {
    const KEY = "sk-upstream-secret-4242";
    const a = event({ choices: [{ index: 0, delta: { content: "A" } }] });
    const leaky = event({ error: { message: `Incorrect API key provided: ${KEY.toUpperCase()} (sk-upst********4242)`, type: "invalid_request_error" } });
    const bytes = encoder.encode(a + leaky);
    for (let at = 1; at < bytes.length; at += 5) {
      const { out, outcome } = await tap([bytes.slice(0, at), bytes.slice(at)], true, KEY);
      const seen = text(out);
      expect(seen.startsWith(a)).toBe(true);
      expect(seen.toLowerCase()).not.toContain(KEY.toLowerCase());
      expect(seen).not.toContain("sk-upst*");
      expect(seen).toContain('data: {"error":{"message":"Incorrect API key provided: [redacted] ([redacted])","type":"invalid_request_error"}}\n\n');
      expect(outcome.end).toBe("failed");
    }
    // An error event without the key passes byte for byte; so does a stream with no key to hide. It is
    // the one error event the client gets: litegate adds none of its own after it.
    const plain = event({ error: { message: "overloaded", type: "server_error" } });
    const ended = await tap([encoder.encode(a + plain)], true, KEY);
    expect(text(ended.out)).toBe(a + plain);
    expect(ended.outcome.end).toBe("failed");
    let pulls = 0;
    const breaking = new ReadableStream<Uint8Array>({ pull(c) { if (pulls++ === 0) c.enqueue(encoder.encode(a + plain)); else c.error(new Error("connection reset")); } });
    expect(await new Response(tapStream(breaking, { clientWantsUsage: true }, () => {})).text()).toBe(a + plain);
    // A stream the provider breaks off with the key in its reason (an Anthropic error event does).
    const broken = await tap([encoder.encode(a)], true, KEY, new Error(`provider error: bad key ${KEY}`));
    expect(text(broken.out)).toContain("bad key [redacted]");
    expect(text(broken.out)).not.toContain(KEY);
  });

  test("an event named `error` without an `error` member is a provider error too, passed on in the OpenAI envelope, wherever the pieces split", async () => {
    const KEY = "sk-upstream-secret-4242";
    const a = event({ choices: [{ index: 0, delta: { content: "A" } }] });
    for (const [data, expected] of [
      [{ message: `Service busy, key ${KEY}` }, { message: "Service busy, key [redacted]", type: "upstream_error", param: null, code: "502" }],
      [{ type: "overloaded_error", message: "Overloaded" }, { message: "Overloaded", type: "overloaded_error", param: null, code: "529" }],
      [{ type: "rate_limit_error", message: "Slow down" }, { message: "Slow down", type: "rate_limit_error", param: null, code: "429" }],
    ] as const) {
      const bytes = encoder.encode(`${a}event: error\r\ndata: ${JSON.stringify(data)}\r\n\r\n`);
      for (let at = 1; at < bytes.length; at += 3) {
        const { out, outcome } = await tap([bytes.slice(0, at), bytes.slice(at)], true, KEY);
        // A split inside a CRLF may move its LF (see SseEvents.push): the same events, either way.
        expect(text(out).replace(/\r\n?/g, "\n")).toBe(`${a}data: ${JSON.stringify({ error: expected })}\n\n`.replace(/\r\n?/g, "\n"));
        expect(outcome).toMatchObject({ end: "failed", providerError: true, text: "A" });
        expect(outcome.failure).toEqual({ status: Number(expected.code), type: expected.type, message: expected.message });
      }
    }
    // The name is its own event's only: a chunk after a named event with no data is an answer.
    const after = await tap([encoder.encode(`event: error\n\n${a}${event({ choices: [{ index: 0, delta: {}, finish_reason: "stop" }] })}data: [DONE]\n\n`)]);
    expect(after.outcome).toMatchObject({ end: "complete", providerError: false, failure: null });
  });
});
