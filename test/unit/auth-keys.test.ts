import { describe, expect, test } from "bun:test";
import { readKey } from "../../src/auth/keys";

describe("reading the caller's key", () => {
  test("the Bearer scheme in any case, after any spaces or tabs; x-api-key and api-key", () => {
    for (const authorization of ["Bearer sk-1", "bearer sk-1", "BEARER sk-1", "Bearer\tsk-1", "Bearer   sk-1", "sk-1"]) {
      expect(readKey(new Headers({ authorization }))).toBe("sk-1");
    }
    expect(readKey(new Headers({ "x-api-key": " sk-2 " }))).toBe("sk-2");
    expect(readKey(new Headers({ "api-key": "sk-3" }))).toBe("sk-3");
    expect(readKey(new Headers({ authorization: "Bearer " }))).toBeNull();
    expect(readKey(new Headers())).toBeNull();
  });

  test("x-litellm-api-key, with or without Bearer, before a provider key sent in Authorization", () => {
    expect(readKey(new Headers({ "x-litellm-api-key": "sk-4" }))).toBe("sk-4");
    expect(readKey(new Headers({ "x-litellm-api-key": "Bearer sk-4", authorization: "Bearer sk-provider" }))).toBe("sk-4");
    expect(readKey(new Headers({ "x-litellm-api-key": " ", authorization: "Bearer sk-1" }))).toBe("sk-1");
  });

  test("litellm_key_header_name: only that header, in any case, with or without Bearer", () => {
    expect(readKey(new Headers({ "x-litellm-key": "Bearer sk-5", authorization: "Bearer sk-1" }), "X-Litellm-Key")).toBe("sk-5");
    expect(readKey(new Headers({ "X-LITELLM-KEY": "sk-5" }), "x-litellm-key")).toBe("sk-5");
    for (const other of ["authorization", "x-litellm-api-key", "x-api-key", "api-key"]) {
      expect(readKey(new Headers({ [other]: "Bearer sk-1" }), "X-Litellm-Key")).toBeNull();
    }
  });
});
