/** A config that cannot be taken: every problem found, each naming where it was written. */
export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(problems.join("\n"));
  }
}
