import { describe, expect, test } from "bun:test";
import { workerFailure } from "../../src/db/pglite";

describe("an uncaught error in the embedded database's worker", () => {
  test("is reported by its error line, without the engine's source or stack", () => {
    const message = "1 | import{j as u}from\"./chunk-ZSOCVAT7.js\";u();var f=Object.defineProperty\n" +
      "                                 ^\n" +
      "LinkError: Memory import env:memory provided a 'size' that is smaller than the module's declared 'initial' import memory size\n" +
      "      at b (/$bunfs/root/chunk-BD5WXLQO.js:1:785)\n      at async create (/$bunfs/root/chunk-XZUEO4BZ.js:3:197378)\n";
    expect(workerFailure(message)).toBe(
      "LinkError: Memory import env:memory provided a 'size' that is smaller than the module's declared 'initial' import memory size");
  });

  test("a message without an error line keeps its first meaningful line", () => {
    expect(workerFailure("12 | x()\n   ^\nout of memory\n      at y (z.js:1:1)")).toBe("out of memory");
    expect(workerFailure("")).toBe("unknown error");
  });
});
