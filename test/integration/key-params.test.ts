import { afterAll, beforeAll, expect, test } from "bun:test";
import { MOCK_CONFIG, inProcessGateway } from "../helpers/gateway";

type Harness = Awaited<ReturnType<typeof inProcessGateway>>;

const CONFIG = `${MOCK_CONFIG}
litellm_settings:
  upperbound_key_generate_params: {max_budget: 5, rpm_limit: 10, tpm_limit: 1000, max_parallel_requests: 4, budget_duration: 30d, duration: 30d}
  default_key_generate_params: {max_budget: 1.5, models: [mock], rpm_limit: 2, budget_duration: 7d, metadata: {setting: default}}
`;

let h: Harness;
beforeAll(async () => {
  h = await inProcessGateway(CONFIG);
}, 60_000);
afterAll(() => h.close());

async function json(path: string, body: unknown) {
  const response = await h.call(path, body);
  return { status: response.status, body: (await response.json()) as any };
}

test("a key over the operator's upper bound is refused, naming the field and both values", async () => {
  const cases: [Record<string, unknown>, string][] = [
    [{ max_budget: 1000 }, "max_budget is over max limit set in config - user_value=1000; max_value=5"],
    [{ rpm_limit: 11 }, "rpm_limit is over max limit set in config - user_value=11; max_value=10"],
    [{ tpm_limit: "1001" }, "tpm_limit is over max limit set in config - user_value=1001; max_value=1000"],
    [{ max_parallel_requests: 5 }, "max_parallel_requests is over max limit set in config - user_value=5; max_value=4"],
    [{ duration: "365d" }, "duration is over max limit set in config - user_value=365d; max_value=30d"],
    [{ duration: "2mo" }, "duration is over max limit set in config - user_value=2mo; max_value=30d"],
    [{ duration: "-1" }, "duration is over max limit set in config - user_value=-1; max_value=30d"],
    [{ budget_duration: "5w" }, "budget_duration is over max limit set in config - user_value=5w; max_value=30d"],
  ];
  for (const [body, message] of cases) {
    const field = Object.keys(body)[0]!;
    const refused = await json("/key/generate", body);
    expect(refused.status).toBe(400);
    expect(refused.body.error).toEqual({ message, type: "bad_request_error", param: field, code: "400" });
  }
  const within = await json("/key/generate", { max_budget: 5, rpm_limit: 10, duration: "4w", budget_duration: "1h" });
  expect(within.status).toBe(200);
  expect(within.body).toMatchObject({ max_budget: 5, rpm_limit: 10, budget_duration: "1h", duration: "4w" });
});

test("a new key takes the defaults for what it was not sent (null and empty included), then the upper bound where there is no default", async () => {
  const plain = await json("/key/generate", {});
  expect(plain.body).toMatchObject({
    max_budget: 1.5, models: ["mock"], rpm_limit: 2, budget_duration: "7d", metadata: { setting: "default" },
    tpm_limit: 1000, max_parallel_requests: 4, duration: "30d",
  });
  expect(Date.parse(plain.body.expires) - h.clock.now()).toBe(30 * 86_400_000);
  const blank = await json("/key/generate", { max_budget: null, models: [], metadata: {}, duration: null, tpm_limit: null });
  expect(blank.body).toMatchObject({ max_budget: 1.5, models: ["mock"], metadata: { setting: "default" }, duration: "30d", tpm_limit: 1000 });
  const sent = await json("/key/generate", { max_budget: 3, models: ["gpt-4o"], rpm_limit: 1, metadata: { team: "x" } });
  expect(sent.body).toMatchObject({ max_budget: 3, models: ["gpt-4o"], rpm_limit: 1, metadata: { team: "x" } });
});

test("/key/update and /key/regenerate may not lift a key over the upper bound either", async () => {
  const { body: key } = await json("/key/generate", {});
  const over = await json("/key/update", { key: key.key, max_budget: 50 });
  expect(over.body.error.message).toBe("max_budget is over max limit set in config - user_value=50; max_value=5");
  const lifted = await json("/key/update", { key: key.key, rpm_limit: null });
  expect(lifted.body.error.message).toBe("rpm_limit is over max limit set in config - user_value=null; max_value=10");
  expect((await json("/key/regenerate", { key: key.key, duration: "90d" })).status).toBe(400);
  // A duration sent as null changes nothing (as LiteLLM reads it): the expiry stays within the cap.
  const unchanged = await json("/key/update", { key: key.key, duration: null });
  expect(unchanged.status).toBe(200);
  expect(unchanged.body.expires).toBe(key.expires);
  const changed = await json("/key/update", { key: key.key, max_budget: 4, key_alias: "capped" });
  expect(changed.status).toBe(200);
  expect(changed.body).toMatchObject({ max_budget: 4, rpm_limit: 2, key_alias: "capped" });
});

test("the key /user/new makes takes the key defaults and caps too; the user's own budget is the user's", async () => {
  const over = await json("/user/new", { user_id: "capped-user", max_budget: 1000, duration: "-1" });
  expect(over.status).toBe(400);
  expect(over.body.error).toMatchObject({ message: "duration is over max limit set in config - user_value=-1; max_value=30d", param: "duration" });
  expect((await h.db.query("select 1 from users where user_id = 'capped-user'")).length).toBe(0);

  const made = await json("/user/new", { user_id: "capped-user", max_budget: 1000 });
  expect(made.status).toBe(200);
  expect(made.body).toMatchObject({ user_id: "capped-user", max_budget: 1000 });
  expect(Date.parse(made.body.expires) - h.clock.now()).toBe(30 * 86_400_000);
  const key = (await h.call(`/key/info?key=${made.body.key}`).then((r) => r.json()) as any).info;
  expect(key).toMatchObject({ max_budget: 1.5, rpm_limit: 2, tpm_limit: 1000, max_parallel_requests: 4, budget_duration: "7d", models: ["mock"] });
  expect((await json("/user/new", { user_id: "capped-user-2", models: ["gpt-4o"] })).body.models).toEqual(["gpt-4o"]);
});
