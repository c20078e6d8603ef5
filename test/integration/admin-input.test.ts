import { beforeAll, describe, expect, test } from "bun:test";
import { type Harness, gatewayFor } from "../helpers/gateway";

for (const kind of ["pglite", "postgres"] as const) describe(`admin input on ${kind}`, () => {
  const gateway = gatewayFor(kind);
  const json = gateway.json;
  let h: Harness;
  beforeAll(() => {
    h = gateway.h;
  });

  test("a malformed new_key says what a raw key must be, as /key/generate's key does", async () => {
    const generated = await json("/key/generate", { key: "bad" });
    expect(generated.status).toBe(400);
    const key = (await json("/key/generate", {})).body.key;
    const expected = generated.body.error.message.replace(/^key:/, "new_key:");
    expect(expected).toContain("must be sk- followed by");
    for (const path of ["/key/regenerate", `/key/${key}/regenerate`]) {
      const refused = await json(path, { key, new_key: "bad" });
      expect(refused).toMatchObject({ status: 400, body: { error: { message: expected, param: "new_key" } } });
    }
    expect((await h.chat(key)).status).toBe(200);
  });
});
