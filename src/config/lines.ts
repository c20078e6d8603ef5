import { type Document, type LineCounter, isMap, isScalar, isSeq } from "yaml";
import { ConfigError } from "./errors";

/** `model_list[1].litellm_params.model` from `["model_list", 1, "litellm_params", "model"]`. */
export function pathName(parts: readonly (string | number)[]): string {
  return parts.reduce<string>((out, part) => (typeof part === "number" || /^\d+$/.test(part) ? `${out}[${part}]` : out ? `${out}.${part}` : part), "");
}

/** One file's settings and the line each was written on. */
export interface FileLines {
  source: string;
  lines: Map<string, number>;
  /** Its model_list entries (appended after those of the files before it). */
  models: number;
}

/** Every key and list item of a document, by path, with its line (1-based). */
export function linesOf(document: Document, counter: LineCounter, source: string): FileLines {
  const lines = new Map<string, number>();
  const walk = (node: unknown, parts: (string | number)[]) => {
    const at = (offset: number | undefined, path: (string | number)[]) => {
      if (offset !== undefined) lines.set(pathName(path), counter.linePos(offset).line);
    };
    if (isMap(node)) {
      for (const pair of node.items) {
        const key = isScalar(pair.key) ? String(pair.key.value) : String(pair.key);
        at((pair.key as { range?: number[] } | null)?.range?.[0], [...parts, key]);
        walk(pair.value, [...parts, key]);
      }
    } else if (isSeq(node)) {
      node.items.forEach((item, i) => {
        at((item as { range?: number[] } | null)?.range?.[0], [...parts, i]);
        walk(item, [...parts, i]);
      });
    }
  };
  walk(document.contents, []);
  const list = document.get("model_list");
  return { source, lines, models: isSeq(list) ? list.items.length : 0 };
}

/**
 * Each problem with the file and line its setting was written on (`config.yaml:12: litellm_settings.max_budget: …`),
 * as YAML syntax errors are: of the main config, or of the included file whose value was taken (the last
 * setting it; a model_list entry counted in the files' order). A path none holds (a variable's name) stays as it is.
 */
export function withLines(error: ConfigError, files: readonly FileLines[]): ConfigError {
  const parent = (path: string) => path.replace(/(?:\.[^.[\]]*|\[\d+\])$/, "");
  // The nearest enclosing setting written: a required key left out is found at its parent.
  const nearest = (candidates: readonly FileLines[], path: string): string | null => {
    for (let at = path; at; at = at === parent(at) ? "" : parent(at)) {
      for (const file of candidates) {
        const line = file.lines.get(at);
        if (line !== undefined) return `${file.source}:${line}`;
      }
    }
    return null;
  };
  const locate = (path: string): string | null => {
    const entry = /^model_list\[(\d+)\](.*)$/.exec(path);
    if (!entry) return nearest([...files].reverse(), path);
    let index = Number(entry[1]);
    for (const file of files) {
      if (index < file.models) return nearest([file], `model_list[${index}]${entry[2]}`);
      index -= file.models;
    }
    return null;
  };
  return new ConfigError(error.problems.map((problem) => {
    const colon = problem.indexOf(": ");
    const where = colon > 0 ? locate(problem.slice(0, colon)) : null;
    return where ? `${where}: ${problem}` : problem;
  }));
}
