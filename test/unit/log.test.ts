import { expect, test } from "bun:test";
import { createLogger } from "../../src/log";

function linesOf(run: () => void): string[] {
  const written: string[] = [];
  const original = process.stdout.write.bind(process.stdout);
  process.stdout.write = ((chunk: string) => (written.push(String(chunk)), true)) as typeof process.stdout.write;
  try {
    run();
  } finally {
    process.stdout.write = original;
  }
  return written.join("").split("\n").filter(Boolean);
}

test("a text log line stays one line whatever a client puts in a field: such values are quoted and escaped", () => {
  const forged = "nope\n2026-12-02T11:40:00.000Z INFO  request request_id=forged status=200";
  const lines = linesOf(() => createLogger().info("request", { model: forged, customer: 'evil" x=1', key: "sk-...abcd", status: 200 }));
  expect(lines.length).toBe(1);
  expect(lines[0]).toContain(`model=${JSON.stringify(forged)}`);
  expect(lines[0]).toContain('customer="evil\\" x=1"');
  // Plain values stay bare.
  expect(lines[0]).toContain(" key=sk-...abcd status=200");
});
