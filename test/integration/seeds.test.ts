import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { type RunningGateway, startBinary } from "../helpers/binary";
import { sharedPostgres } from "../helpers/services";
import { windowLeft } from "../helpers/until";

/**
 * The curl calls of the LiteLLM documents in shared/seeds, run unchanged (apart from host, port and
 * placeholders) with the real curl against the compiled binary.
 */
const SEEDS = join(import.meta.dir, "../../../shared/seeds");

const mock = (name: string, price = 0.000001) => `
  - model_name: ${name}
    litellm_params:
      model: mock/${name}
      mock_response: "Hello! I am a mock model answering through litegate."
      input_cost_per_token: ${price}
      output_cost_per_token: ${price * 2}`;

const CONFIG = `
model_list:${mock("gpt-3.5-turbo")}${mock("llama3")}${mock("azure-gpt-3.5", 0.00001)}${mock("gpt-4")}${mock("gpt-4o", 0.0000025)}${mock("text-embedding-ada-002")}
    model_info:
      access_groups: ["beta-models"]
general_settings:
  master_key: sk-1234
litellm_settings:
  max_end_user_budget: 0.0001
`;

/** Every curl command in a seed's code blocks, joined across line continuations. */
function curlsOf(file: string): string[] {
  const text = readFileSync(join(SEEDS, file), "utf8");
  const blocks = [...text.matchAll(/```[a-z]*[ \t]*\n([\s\S]*?)```/g)].map((m) => m[1]!);
  return blocks.filter((b) => b.trimStart().startsWith("curl")).map((b) => b.trim());
}

let gateway: RunningGateway;
beforeAll(async () => {
  const url = await (await sharedPostgres()).newDatabase();
  gateway = await startBinary({ config: CONFIG.replace("general_settings:\n", `general_settings:\n  database_url: ${url}\n`) });
}, 120_000);
afterAll(() => gateway.stop("SIGKILL"));

/** Runs a seed's curl through bash, pointed at the gateway, with placeholders filled. */
async function curl(command: string, values: Record<string, string> = {}): Promise<{ status: number; headers: string; body: any }> {
  let line = command
    .replace(/https?:\/\/(0\.0\.0\.0|localhost):\d+/g, gateway.url)
    .replace(/<your-master-key>/g, "sk-1234")
    .replace(/ %$/m, "");
  for (const [from, to] of Object.entries(values)) line = line.replaceAll(from, to);
  const proc = Bun.spawn(["bash", "-c", line.replace(/^curl /, "curl -s -i ")], { stdout: "pipe", stderr: "pipe" });
  const out = await new Response(proc.stdout).text();
  await proc.exited;
  const split = out.indexOf("\r\n\r\n");
  const headers = out.slice(0, split);
  const raw = out.slice(split + 4);
  const status = Number(/^HTTP\/[\d.]+ (\d+)/.exec(headers)?.[1] ?? 0);
  let body: any = raw;
  try {
    body = JSON.parse(raw);
  } catch {
    // not JSON
  }
  return { status, headers: headers.toLowerCase(), body };
}

const find = (curls: string[], ...parts: string[]) => {
  const hit = curls.find((c) => parts.every((p) => c.includes(p)));
  if (!hit) throw new Error(`no seed curl with ${parts.join(", ")}`);
  return hit;
};

describe("seed 003: Budgets, Rate Limits", () => {
  const curls = curlsOf("003_89a48cc53d57433e.txt");

  test("every management call answers 200 with the documented shape", async () => {
    await curl(`curl -X POST '${"http://localhost:4000"}/team/new' -H 'Authorization: Bearer sk-1234' -d '{"team_id": "e8d1460f-846c-45d7-9b43-55f3cc52ac32"}'`);
    await curl(`curl -X POST 'http://localhost:4000/team/new' -H 'Authorization: Bearer sk-1234' -d '{"team_id": "core-infra"}'`);
    const management = curls.filter((c) => /\/(key\/generate|user\/new|team\/new|team\/member_add|budget\/new|customer\/new)'/.test(c));
    expect(management.length).toBeGreaterThanOrEqual(14);
    for (const command of management) {
      const result = await curl(command);
      expect(`${result.status} ${command.split("\n")[0]}`).toBe(`200 ${command.split("\n")[0]}`);
      if (command.includes("/key/generate") || command.includes("/user/new")) {
        expect(result.body.key).toMatch(/^sk-[A-Za-z0-9_-]{22,}$/);
        expect(result.body).toHaveProperty("expires");
        expect(result.body).toHaveProperty("user_id");
      }
      if (command.includes("/team/new") && command.includes("members_with_roles")) {
        for (const field of ["team_alias", "team_id", "admins", "members", "members_with_roles", "metadata", "tpm_limit", "rpm_limit", "max_budget", "models", "spend", "max_parallel_requests", "budget_duration", "budget_reset_at"]) {
          expect(result.body).toHaveProperty(field);
        }
      }
    }
  });

  test("team member budget: after the first request the member is over max_budget_in_team", async () => {
    await curl(find(curls, "/team/new", "my-new-team_4", "rpm_limit"));
    await curl(`curl -X POST 'http://localhost:4000/team/new' -H 'Authorization: Bearer sk-1234' -d '{"team_id": "e8d1460f-846c-45d7-9b43-55f3cc52ac32"}'`);
    await curl(find(curls, "/user/new", '"user_id": "ishaan"'));
    // The test before ran the document's member_add already: adding a member twice is a 400, as in LiteLLM.
    await curl(`curl -X POST 'http://localhost:4000/team/member_delete' -H 'Authorization: Bearer sk-1234' -d '{"team_id": "e8d1460f-846c-45d7-9b43-55f3cc52ac32", "user_id": "ishaan"}'`);
    expect((await curl(find(curls, "/team/member_add", "max_budget_in_team"))).status).toBe(200);
    const key = (await curl(find(curls, "/key/generate", '"user_id": "ishaan"'))).body.key;
    const call = find(curls, "/chat/completions", "tes4");
    expect((await curl(call, { "sk-RV-l2BJEZ_LYNChSx2EueQ": key })).status).toBe(200);
    const refused = await curl(call, { "sk-RV-l2BJEZ_LYNChSx2EueQ": key });
    expect(refused.status).toBe(400);
    expect(refused.body.error.type).toBe("budget_exceeded");
    expect(refused.body.error.message).toContain("User=ishaan in Team=e8d1460f-846c-45d7-9b43-55f3cc52ac32 over budget");
  });

  test("model-specific key budget: the first gpt-4o call succeeds, the second fails naming the model", async () => {
    const key = (await curl(find(curls, "/key/generate", "model_max_budget"))).body.key;
    const call = find(curls, "/chat/completions", "testing request");
    expect((await curl(call, { "<sk-generated-key>": key })).status).toBe(200);
    const refused = await curl(call, { "<sk-generated-key>": key });
    expect(refused.status).toBe(400);
    expect(refused.body.error).toMatchObject({ type: "budget_exceeded", param: null, code: "400" });
    expect(refused.body.error.message).toContain("exceeded budget for model=gpt-4o");
  });

  test("customers: max_end_user_budget lets the first call through and refuses the next", async () => {
    const call = find(curls, "/chat/completions", "ishaan3");
    const values = { "sk-zi5onDRdHGD24v0Zdn7VBA": "sk-1234" };
    expect((await curl(call, values)).status).toBe(200);
    const refused = await curl(call, values);
    expect(refused.status).toBe(400);
    expect(refused.body.error.message).toContain("End User=ishaan3 over budget");
  });

  test("per key per model rate limits return the documented headers", async () => {
    const key = (await curl(find(curls, "/key/generate", "model_rpm_limit"))).body.key;
    const call = find(curls, "/v1/chat/completions", "Hello, Claude");
    await windowLeft(5_000); // every request in one rate window (windows are whole minutes)
    const first = await curl(call.replace(" -i ", " "), { "sk-ulGNRXWtv7M0lFnnsQk0wQ": key });
    expect(first.status).toBe(200);
    expect(first.headers).toContain("x-litellm-key-remaining-requests-gpt-4: 1");
    expect((await curl(call, { "sk-ulGNRXWtv7M0lFnnsQk0wQ": key })).status).toBe(200);
    const third = await curl(call, { "sk-ulGNRXWtv7M0lFnnsQk0wQ": key });
    expect(third.status).toBe(429);
    expect(third.headers).toContain("retry-after:");
  });

  test("customer rate limits through /budget/new + /customer/new", async () => {
    await curl(find(curls, "/budget/new", "free-tier"));
    await curl(find(curls, "/customer/new", "palantir"));
    const call = find(curls, "/chat/completions", "palantir");
    await windowLeft(5_000);
    expect((await curl(call)).status).toBe(200);
    const limited = await curl(call);
    expect(limited.status).toBe(429);
    expect(limited.body.error.type).toBe("rate_limit_error");
    expect(limited.body.error.message).toContain("end user palantir");
  });

  test("per-key max_parallel_requests and rpm_limit from /key/generate", async () => {
    const key = (await curl(find(curls, "/key/generate", '"max_parallel_requests": 10, "tpm_limit": 20, "rpm_limit": 4'))).body.key;
    const call = `curl http://localhost:4000/chat/completions -H 'Authorization: Bearer ${key}' -d '{"model": "llama3", "messages": [{"role": "user", "content": "hi"}]}'`;
    await windowLeft(5_000);
    expect((await curl(call)).status).toBe(200);
    const limited = await curl(call);
    expect(limited.status).toBe(429);
    expect(limited.body.error.message).toContain("tpm_limit=20");
  });
});

describe("seeds 000, 001, 002 and 004", () => {
  test("001: the budget of a `user` sent in requests, under its older name max_user_budget", async () => {
    const text = readFileSync(join(SEEDS, "001_32b247e4bd1cbd0c.txt"), "utf8");
    const settings = [...text.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1]!).find((block) => block.includes("max_user_budget"))!;
    expect(settings).toContain("max_user_budget: 0.0001");
    await gateway.stop("SIGKILL");
    const url = await (await sharedPostgres()).newDatabase();
    const models = CONFIG.slice(0, CONFIG.indexOf("general_settings:"));
    gateway = await startBinary({ config: `${models}${settings.replace("general_settings:\n", `general_settings:\n  database_url: ${url}\n`)}` });
    const calls = curlsOf("001_32b247e4bd1cbd0c.txt").filter((c) => c.includes("ishaan3"));
    expect(calls.length).toBe(2);
    const values = { "sk-zi5onDRdHGD24v0Zdn7VBA": "sk-1234" };
    expect((await curl(calls[0]!, values)).status).toBe(200);
    const refused = await curl(calls[1]!, values);
    expect(refused.status).toBe(400);
    expect(refused.body.error.type).toBe("budget_exceeded");
    expect(refused.body.error.message).toContain("End User=ishaan3 over budget");
    expect(refused.body.error.message).toContain("Budget=0.0001");
  });

  test("their management calls work unchanged", async () => {
    const files = ["000_7fd46a0418b3119f.txt", "001_32b247e4bd1cbd0c.txt", "002_409124d05b0edeca.txt", "004_1146cb4d6ce7eaf7.txt"];
    let ran = 0;
    for (const file of files) {
      // Each document on a database of its own: they reuse the same user ids.
      await gateway.stop("SIGKILL");
      gateway = await startBinary({ config: CONFIG.replace("general_settings:\n", `general_settings:\n  database_url: ${await (await sharedPostgres()).newDatabase()}\n`) });
      // The documents' examples name a team that already exists.
      await curl(`curl -X POST 'http://localhost:4000/team/new' -H 'Authorization: Bearer sk-1234' -d '{"team_id": "core-infra"}'`);
      for (const command of curlsOf(file)) {
        if (!/\/(key\/generate|user\/new|team\/new|budget\/new|customer\/new)/.test(command)) continue;
        const result = await curl(command);
        expect(`${file}: ${result.status}`).toBe(`${file}: 200`);
        ran++;
      }
    }
    expect(ran).toBeGreaterThanOrEqual(3);
  });

  test("004: the user \"\" and its keys, as the document sends them (its URLs are blank: /user/new, then /key/generate)", async () => {
    const text = readFileSync(join(SEEDS, "004_1146cb4d6ce7eaf7.txt"), "utf8");
    const bodies = [...text.matchAll(/--data '(\{[^']*"user_id": ""[^']*\})'/g)].map((m) => m[1]!);
    expect(bodies.length).toBe(2);
    const post = (path: string, data: string) => curl(`curl --location '${gateway.url}${path}' --header 'Authorization: Bearer sk-1234' --header 'Content-Type: application/json' --data '${data}'`);
    const user = await post("/user/new", bodies[0]!);
    expect(user.status).toBe(200);
    expect(user.body).toMatchObject({ user_id: "", max_parallel_requests: 10, tpm_limit: 20, rpm_limit: 4 });
    expect(user.body.key).toMatch(/^sk-/);
    const second = await post("/key/generate", bodies[1]!);
    expect(second.status).toBe(200);
    expect(second.body).toMatchObject({ user_id: "", models: ["azure-models"] });
    const info = await curl(`curl '${gateway.url}/user/info?user_id=' -H 'Authorization: Bearer sk-1234'`);
    expect(info.status).toBe(200);
    expect(info.body.user_info.rpm_limit).toBe(4);
    expect(info.body.keys.length).toBe(2);
    // The user's tpm_limit of 20 holds across its keys: the first answer uses it up for the minute, for another key of the user "" too.
    const third = (await post("/key/generate", '{"user_id": ""}')).body.key;
    const ask = (key: string) => curl(`curl '${gateway.url}/chat/completions' -H 'Authorization: Bearer ${key}' -H 'Content-Type: application/json' -d '{"model": "gpt-3.5-turbo", "messages": [{"role": "user", "content": "hi"}]}'`);
    // Both requests in one rate window (windows are whole minutes): not in the last seconds of one.
    await windowLeft(5_000);
    expect((await ask(user.body.key)).status).toBe(200);
    const refused = await ask(third);
    expect(refused.status).toBe(429);
    expect(refused.body.error.message).toContain("tpm_limit=20");
    expect(refused.body.error.message).toContain("user ");
  }, 30_000);
});
