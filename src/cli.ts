/** Command-line arguments: `litegate [migrate] --config PATH [--port N] [--host H] [--log-format text|json]`. */
export interface CliArgs {
  command: "serve" | "migrate" | "help" | "version";
  config?: string;
  port?: number;
  host?: string;
  logFormat?: "text" | "json";
}

export class CliError extends Error {}

/** True in the compiled binary, whose own files live in the runtime's embedded file system. */
export const runsCompiled = (): boolean => Bun.main.includes("/$bunfs/");

export const USAGE = `litegate — OpenAI-compatible LLM gateway with virtual keys, budgets and rate limits

Usage:
  litegate --config PATH [--port N] [--host H] [--log-format text|json]
  litegate migrate --config PATH     apply database migrations and exit
  litegate --help | --version

Options:
  --config PATH        config.yaml (LiteLLM-compatible)
  --port N             port to listen on (default 4000)
  --host H             address to bind (default 0.0.0.0)
  --log-format F       text (default) or json, one object a line
`;

export function parseArgs(argv: readonly string[]): CliArgs {
  const args: CliArgs = { command: "serve" };
  const rest = [...argv];
  if (rest[0] === "migrate") {
    args.command = "migrate";
    rest.shift();
  }
  const value = (flag: string): string => {
    const next = rest.shift();
    if (next === undefined || next.startsWith("--")) throw new CliError(`${flag} needs a value`);
    return next;
  };
  while (rest.length > 0) {
    const arg = rest.shift()!;
    const [flag, inline] = arg.includes("=") ? [arg.slice(0, arg.indexOf("=")), arg.slice(arg.indexOf("=") + 1)] : [arg, undefined];
    const take = () => {
      const given = inline ?? value(flag);
      if (given.trim() === "") throw new CliError(`${flag} needs a value`);
      return given;
    };
    switch (flag) {
      case "--help":
      case "-h":
        return { command: "help" };
      case "--version":
      case "-v":
        return { command: "version" };
      case "--config":
      case "-c":
        args.config = take();
        break;
      case "--port": {
        const text = take();
        const port = Number(text);
        if (!/^\d{1,5}$/.test(text) || port > 65535) throw new CliError("--port must be an integer from 0 to 65535");
        args.port = port;
        break;
      }
      case "--host":
        args.host = take();
        break;
      case "--log-format": {
        const format = take();
        if (format !== "text" && format !== "json") throw new CliError("--log-format must be text or json");
        args.logFormat = format;
        break;
      }
      default:
        throw new CliError(`unknown argument: ${arg} (see litegate --help)`);
    }
  }
  if (!args.config) throw new CliError("--config PATH is required (see litegate --help)");
  return args;
}
