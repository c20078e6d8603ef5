import { describe, expect, test } from "bun:test";
import { createMetrics } from "../../src/metrics";
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
