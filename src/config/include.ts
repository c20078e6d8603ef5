import { readFileSync } from "node:fs";
import { isAbsolute, join } from "node:path";
import { ConfigError } from "./errors";

type Tree = Record<string, unknown>;

const isMapping = (value: unknown): value is Tree => !!value && typeof value === "object" && !Array.isArray(value);

/**
 * LiteLLM's top-level `include:`: a list of YAML files, each read relative to the main config's
 * directory, in order. A list both the config and a file hold (`model_list`) is appended to; a section
 * both hold is merged key by key, the file's value taking a key both set (LiteLLM would take the file's
 * whole section, dropping the config's own keys there: said in a warning). A file including others is
 * refused: LiteLLM reads one level only and would ignore them silently.
 */
export function readIncludes(root: unknown, dir: string, parse: (text: string, source: string) => unknown, warnings: string[]): unknown {
  if (!isMapping(root) || !("include" in root)) return root;
  const { include, ...merged } = root;
  if (include === null || include === undefined) return merged;
  if (!Array.isArray(include) || include.some((file) => typeof file !== "string" || file === "")) {
    throw new ConfigError([`include: must be a list of YAML file paths (got ${JSON.stringify(include)})`]);
  }
  for (const file of include as string[]) {
    const path = isAbsolute(file) ? file : join(dir, file);
    let text: string;
    try {
      text = readFileSync(path, "utf8");
    } catch (error) {
      const code = (error as { code?: string }).code;
      throw new ConfigError([`include: cannot read ${path} (${code === "ENOENT" ? "no such file" : code ?? String(error)})`]);
    }
    const tree = parse(text, path);
    // As a file being rewritten can be: taken, it would drop every model or setting it holds.
    if (tree === null || tree === undefined) throw new ConfigError([`${path}: an included file holds nothing (it is empty or only comments)`]);
    if (!isMapping(tree)) throw new ConfigError([`${path}: an included file must be a mapping of sections, as config.yaml is`]);
    if ("include" in tree) throw new ConfigError([`${path}: include: an included file may not include others (list every file in the main config's include)`]);
    for (const [key, value] of Object.entries(tree)) {
      const before = merged[key];
      if (Array.isArray(before) && Array.isArray(value)) merged[key] = [...before, ...value];
      else if (isMapping(before) && isMapping(value)) {
        for (const name of Object.keys(value)) {
          if (name in before) warnings.push(`${key}.${name}: set in the config and again in ${file}; the value in ${file} is taken`);
        }
        merged[key] = { ...before, ...value };
      } else {
        if (before !== undefined && before !== null) warnings.push(`${key}: set in the config and again in ${file}; the value in ${file} is taken`);
        merged[key] = value;
      }
    }
  }
  return merged;
}
