/**
 * Request metrics kept as plain numbers in nested maps and written out in the Prometheus text format
 * only when scraped: recording one request is a few map lookups and additions, with no label
 * hashing, no string building and no allocation once a series exists.
 */

const escape = (value: string) => value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
export const labelText = (names: readonly string[], values: readonly string[]) =>
  names.map((name, i) => `${name}="${escape(values[i]!)}"`).join(",");

/** A tree of maps, one level per label: a leaf is reached with the label values as they are. */
class SeriesTree<T> {
  private readonly root = new Map<string, unknown>();
  constructor(private readonly depth: number, private readonly make: () => T) {}

  at(values: readonly string[]): T {
    let level = this.root;
    for (let i = 0; i < this.depth - 1; i++) {
      let next = level.get(values[i]!) as Map<string, unknown> | undefined;
      if (!next) level.set(values[i]!, (next = new Map()));
      level = next;
    }
    let leaf = level.get(values[this.depth - 1]!) as T | undefined;
    if (leaf === undefined) level.set(values[this.depth - 1]!, (leaf = this.make()));
    return leaf;
  }

  *entries(): Generator<[string[], T]> {
    const walk = function* (level: Map<string, unknown>, prefix: string[], depth: number): Generator<[string[], T]> {
      for (const [value, next] of level) {
        if (depth === 1) yield [[...prefix, value], next as T];
        else yield* walk(next as Map<string, unknown>, [...prefix, value], depth - 1);
      }
    };
    yield* walk(this.root, [], this.depth);
  }
}

/** A monotonically increasing number per label set. */
export class CounterSeries {
  private readonly tree: SeriesTree<{ value: number }>;
  constructor(readonly name: string, readonly help: string, readonly labels: readonly string[]) {
    this.tree = new SeriesTree(labels.length, () => ({ value: 0 }));
  }

  add(values: readonly string[], amount = 1): void {
    this.tree.at(values).value += amount;
  }

  render(): string {
    let text = `# HELP ${this.name} ${this.help}\n# TYPE ${this.name} counter\n`;
    for (const [values, series] of this.tree.entries()) text += `${this.name}{${labelText(this.labels, values)}} ${series.value}\n`;
    return text;
  }
}

interface Buckets {
  counts: Float64Array;
  sum: number;
  count: number;
}

/** Observations counted into fixed buckets per label set. */
export class HistogramSeries {
  private readonly tree: SeriesTree<Buckets>;
  constructor(readonly name: string, readonly help: string, readonly labels: readonly string[], readonly bounds: readonly number[]) {
    this.tree = new SeriesTree(labels.length, () => ({ counts: new Float64Array(bounds.length), sum: 0, count: 0 }));
  }

  observe(values: readonly string[], value: number): void {
    const series = this.tree.at(values);
    series.sum += value;
    series.count++;
    const bounds = this.bounds;
    for (let i = 0; i < bounds.length; i++) {
      if (value <= bounds[i]!) {
        series.counts[i]!++;
        break;
      }
    }
  }

  render(): string {
    let text = `# HELP ${this.name} ${this.help}\n# TYPE ${this.name} histogram\n`;
    for (const [values, series] of this.tree.entries()) {
      const labels = labelText(this.labels, values);
      let cumulative = 0;
      this.bounds.forEach((bound, i) => {
        cumulative += series.counts[i]!;
        text += `${this.name}_bucket{${labels},le="${bound}"} ${cumulative}\n`;
      });
      text += `${this.name}_bucket{${labels},le="+Inf"} ${series.count}\n`;
      text += `${this.name}_sum{${labels}} ${series.sum}\n${this.name}_count{${labels}} ${series.count}\n`;
    }
    return text;
  }
}
