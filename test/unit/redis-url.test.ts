import { describe, expect, test } from "bun:test";
import { redisOptionsOf } from "../../src/redis";

describe("redis_url", () => {
  test("host, port, credentials and database number", () => {
    expect(redisOptionsOf("redis://127.0.0.1:6380")).toEqual({ host: "127.0.0.1", port: 6380 });
    expect(redisOptionsOf("redis://cache.internal")).toEqual({ host: "cache.internal", port: 6379 });
    expect(redisOptionsOf("redis://:p%40ss%3Aword@cache:7000/3")).toEqual({ host: "cache", port: 7000, password: "p@ss:word", db: 3 });
    expect(redisOptionsOf("redis://gateway:secret@cache/0")).toEqual({ host: "cache", port: 6379, username: "gateway", password: "secret", db: 0 });
  });

  test("IPv6 hosts lose their brackets; rediss:// turns TLS on", () => {
    expect(redisOptionsOf("redis://[::1]:6390")).toEqual({ host: "::1", port: 6390 });
    expect(redisOptionsOf("rediss://cache:6380")).toEqual({ host: "cache", port: 6380, tls: {} });
  });

  test("anything else is refused with a message naming what is expected", () => {
    expect(() => redisOptionsOf("cache:6379")).toThrow("redis_url must start with redis:// or rediss://");
    expect(() => redisOptionsOf("http://cache:6379")).toThrow("redis_url must start with redis:// or rediss://");
    expect(() => redisOptionsOf("not a url")).toThrow("redis_url is not a URL");
    expect(() => redisOptionsOf("redis://cache/zero")).toThrow("the path must be a database number");
  });
});
