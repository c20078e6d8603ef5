import { afterAll, beforeAll, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { ROOT, type RunningGateway, startBinary } from "../helpers/binary";

/**
 * Every ```bash example in the README runs against the binary started on config.example.yaml, as a
 * newcomer would run it; `# expect: …` lines name what its output must contain.
 */
const readme = readFileSync(join(ROOT, "README.md"), "utf8");
const examples = [...readme.matchAll(/```bash\n([\s\S]*?)```/g)].map((m) => m[1]!).filter((block) => block.includes("curl"));

let gateway: RunningGateway;
beforeAll(async () => {
  gateway = await startBinary({ config: readFileSync(join(ROOT, "config.example.yaml"), "utf8") });
}, 120_000);
afterAll(() => gateway.stop("SIGKILL"));

test("the README has examples for keys, budgets, rate limits, access and spend", () => {
  expect(examples.length).toBeGreaterThanOrEqual(8);
});

for (const [index, block] of examples.entries()) {
  test(`README example ${index + 1}: ${block.split("\n").find((l) => l.startsWith("#"))?.slice(2, 70) ?? block.slice(0, 60)}`, async () => {
    const script = block.replaceAll("http://localhost:4000", gateway.url);
    const proc = Bun.spawn(["bash", "-e", "-o", "pipefail", "-c", script], { stdout: "pipe", stderr: "pipe" });
    const [code, out, err] = await Promise.all([proc.exited, new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
    expect(code === 0 ? 0 : `${code} ${err}`).toBe(0);
    expect(out).not.toContain("Route not found");
    expect(out).not.toContain("internal_server_error");
    for (const [, expected] of block.matchAll(/^# expect: (.+)$/gm)) expect(out).toContain(expected!.trim());
  });
}
