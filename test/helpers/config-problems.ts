import { ConfigError } from "../../src/config";

/** The problems a config load reports (it must fail with a ConfigError). */
export function problemsOf(run: () => unknown): string[] {
  try {
    run();
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  throw new Error("expected a ConfigError");
}
