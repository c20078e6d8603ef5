import { describe, expect, test } from "bun:test";
import { createMetrics } from "../../src/metrics";
import { renderStandings } from "../../src/metrics/budgets";
import { CounterSeries, HistogramSeries } from "../../src/metrics/series";

describe("request metrics in the Prometheus text format", () => {
  test("counters add per label set and escape label values", () => {
    const counter = new CounterSeries("c_total", "help text", ["model", "status"]);
    counter.add(["m", "200"]);
    counter.add(["m", "200"], 2);
    counter.add(['a"b\\c\nd', "429"]);
    const text = counter.render();
    expect(text).toContain("# TYPE c_total counter\n");
    expect(text).toContain('c_total{model="m",status="200"} 3\n');
    expect(text).toContain('c_total{model="a\\"b\\\\c\\nd",status="429"} 1\n');
  });

  test("budget gauges: +Inf without a budget and then no max or hours; hours to the period's end; an unknown remaining left out; labels escaped", () => {
    const at = 1_700_000_000_000;
    const text = renderStandings({
      at,
      keys: [
        { token: "t1", alias: 'a"b', budget: { max: 2, remaining: 1.5, resetsAt: at + 5_400_000 }, limits: [{ model: "m", kind: "rpm", remaining: 3, limit: 5 }, { model: null, kind: "tpm", remaining: 90, limit: 100 }] },
        { token: "t2", alias: null, budget: { max: null, remaining: Infinity, resetsAt: null }, limits: [] },
        { token: "t3", alias: "old", budget: { max: 1, remaining: null, resetsAt: null }, limits: [] },
      ],
      teams: new Map([["team-1", { alias: null, budget: { max: 1, remaining: -0.25, resetsAt: null } }]]),
      users: new Map(),
      customers: new Map([["acme", { max: null, remaining: Infinity, resetsAt: null }]]),
      members: new Map([["team-1\nu\"1", { team: "team-1", user: 'u"1', budget: { max: 2, remaining: 0.5, resetsAt: at + 1_800_000 } }]]),
      modelBudgets: [
        { holder: "key", id: "t1", alias: null, model: "gpt\\4", budget: { max: 1, remaining: 0.75, resetsAt: null } },
        { holder: "end user", id: "acme", alias: "ignored", model: "m", budget: { max: 3, remaining: 2, resetsAt: null } },
      ],
      rooms: [
        { holder: "team", id: "team-1", alias: "qa", limits: [{ model: null, kind: "rpm", remaining: 4, limit: 5 }, { model: "m", kind: "tpm", remaining: 70, limit: 100 }] },
        { holder: "end user", id: "acme", alias: null, limits: [{ model: null, kind: "tpm", remaining: 10, limit: 20 }] },
      ],
      gateway: null,
    });
    expect(text).toContain("# TYPE litellm_remaining_api_key_budget_metric gauge\n");
    expect(text).toContain('litellm_remaining_api_key_budget_metric{hashed_api_key="t1",api_key_alias="a\\"b"} 1.5\n');
    expect(text).toContain('litellm_api_key_budget_remaining_hours_metric{hashed_api_key="t1",api_key_alias="a\\"b"} 1.5\n');
    expect(text).toContain('litellm_remaining_api_key_requests_for_model{hashed_api_key="t1",api_key_alias="a\\"b",model="m"} 3\n');
    expect(text).toContain('litegate_remaining_api_key_tokens{hashed_api_key="t1",api_key_alias="a\\"b"} 90\n');
    expect(text).toContain('litellm_remaining_api_key_budget_metric{hashed_api_key="t2",api_key_alias=""} +Inf\n');
    expect(text).not.toContain('litellm_api_key_max_budget_metric{hashed_api_key="t2"');
    expect(text).toContain('litellm_api_key_max_budget_metric{hashed_api_key="t3",api_key_alias="old"} 1\n');
    expect(text).not.toContain('litellm_remaining_api_key_budget_metric{hashed_api_key="t3"');
    expect(text).toContain('litellm_remaining_team_budget_metric{team="team-1",team_alias=""} -0.25\n');
    expect(text).toContain('litegate_remaining_end_user_budget{end_user="acme"} +Inf\n');
    expect(text).not.toContain("\nlitegate_remaining_proxy_budget ");
    expect(text).toContain('litegate_remaining_team_member_budget{team="team-1",user="u\\"1"} 0.5\n');
    expect(text).toContain('litegate_team_member_budget_remaining_hours{team="team-1",user="u\\"1"} 0.5\n');
    expect(text).toContain('litegate_remaining_api_key_model_budget{hashed_api_key="t1",api_key_alias="",model="gpt\\\\4"} 0.75\n');
    expect(text).toContain('litegate_end_user_model_max_budget{end_user="acme",model="m"} 3\n');
    expect(text).toContain('litegate_remaining_team_requests{team="team-1",team_alias="qa"} 4\n');
    expect(text).toContain('litegate_remaining_team_tokens_for_model{team="team-1",team_alias="qa",model="m"} 70\n');
    expect(text).toContain('litegate_remaining_end_user_tokens{end_user="acme"} 10\n');
    // Each family's HELP and TYPE once, whatever its samples.
    const types = text.split("\n").filter((line) => line.startsWith("# TYPE "));
    expect(new Set(types).size).toBe(types.length);
    expect(types).toContain("# TYPE litegate_remaining_user_requests gauge");
  });

  test("histograms count cumulatively, with +Inf, sum and count", () => {
    const histogram = new HistogramSeries("h_seconds", "help", ["route"], [0.1, 1]);
    for (const value of [0.05, 0.5, 0.5, 7]) histogram.observe(["chat"], value);
    const text = histogram.render();
    expect(text).toContain('h_seconds_bucket{route="chat",le="0.1"} 1\n');
    expect(text).toContain('h_seconds_bucket{route="chat",le="1"} 3\n');
    expect(text).toContain('h_seconds_bucket{route="chat",le="+Inf"} 4\n');
    expect(text).toContain('h_seconds_sum{route="chat"} 8.05\n');
    expect(text).toContain('h_seconds_count{route="chat"} 4\n');
  });

  test("process metrics come from the runtime's own counters, with no per-space heap walk", async () => {
    const metrics = createMetrics({ spendBacklog: () => 0 });
    const text = await (await metrics.render()).text();
    const value = (name: string) => Number(new RegExp(`^litegate_process_${name} (\\S+)$`, "m").exec(text)?.[1]);
    expect(value("resident_memory_bytes")).toBeGreaterThan(10 * 1024 * 1024);
    expect(value("heap_used_bytes")).toBeGreaterThan(0);
    expect(value("cpu_seconds_total")).toBeGreaterThan(0);
    expect(text).toContain("# TYPE litegate_process_cpu_seconds_total counter");
    expect(Math.abs(value("start_time_seconds") - (Date.now() / 1000 - process.uptime()))).toBeLessThan(2);
    // The heap-space breakdown is what made a scrape walk the whole heap.
    expect(text).not.toContain("heap_space");
  });
});
