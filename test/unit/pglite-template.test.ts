import { describe, expect, test } from "bun:test";
import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { unpackTemplate } from "../../src/db/pglite-engine";
import { tempDir } from "../helpers/services";

/** A minimal ustar archive: what the unpacker reads is name, mode, size and type. */
function tar(entries: { name: string; type?: string; mode?: number; text?: string }[]): Uint8Array<ArrayBuffer> {
  const blocks: Uint8Array[] = [];
  for (const entry of entries) {
    const body = new TextEncoder().encode(entry.text ?? "");
    const header = new Uint8Array(512);
    const put = (at: number, value: string) => header.set(new TextEncoder().encode(value), at);
    put(0, entry.name);
    put(100, `${(entry.mode ?? 0o600).toString(8).padStart(7, "0")}\0`);
    put(124, `${body.length.toString(8).padStart(11, "0")}\0`);
    put(156, entry.type ?? "0");
    put(257, "ustar\0");
    blocks.push(header, body, new Uint8Array((512 - (body.length % 512)) % 512));
  }
  blocks.push(new Uint8Array(1024));
  const total = blocks.reduce((n, b) => n + b.length, 0);
  const out = new Uint8Array(total);
  let at = 0;
  for (const block of blocks) {
    out.set(block, at);
    at += block.length;
  }
  return Bun.gzipSync(out);
}

describe("the embedded database template", () => {
  test("directories and files land under the data directory with their modes", () => {
    const dir = tempDir("template");
    unpackTemplate(tar([
      { name: "/base", type: "5", mode: 0o750 },
      { name: "/base/1/1247", text: "x".repeat(1500) },
      { name: "/PG_VERSION", text: "17\n" },
      { name: "/postgresql.conf", text: "# conf\n", mode: 0o640 },
    ]), dir);
    expect(readFileSync(join(dir, "base/1/1247"), "utf8")).toBe("x".repeat(1500));
    expect(readFileSync(join(dir, "PG_VERSION"), "utf8")).toBe("17\n");
    expect(statSync(join(dir, "postgresql.conf")).mode & 0o777).toBe(0o640);
    expect(statSync(join(dir, "base")).isDirectory()).toBe(true);
  });

  test("PG_VERSION is written last: an unpack that stops halfway is done again at the next start", () => {
    const dir = tempDir("template-cut");
    expect(() => unpackTemplate(tar([
      { name: "/PG_VERSION", text: "17\n" },
      { name: "/global/1213", text: "ok" },
      { name: "/pg_link", type: "2" },
    ]), dir)).toThrow('unexpected entry type "2"');
    expect(existsSync(join(dir, "global/1213"))).toBe(true);
    expect(existsSync(join(dir, "PG_VERSION"))).toBe(false);
  });

  test("an entry pointing outside the data directory is refused", () => {
    const dir = tempDir("template-escape");
    expect(() => unpackTemplate(tar([{ name: "../../etc/evil", text: "no" }]), dir)).toThrow("outside the data directory");
  });
});
