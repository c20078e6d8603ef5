/** Command-line arguments: `litegate [migrate] [--config] PATH [--port N] [--host H] [--log-format text|json]`. */
export interface CliArgs {
  command: "serve" | "migrate" | "help" | "version";
  config?: string;
  port?: number;
  host?: string;
  logFormat?: "text" | "json";
  /** `--debug` / `--detailed_debug`, LiteLLM's flags: debug logs whatever config.yaml says. */
  logLevel?: "debug";
  /** `--num_workers N`, taken from LiteLLM command lines and warned about: litegate runs one process. */
  numWorkers?: number;
  /**
   * `LITEGATE_IDLE_TIMEOUT`: seconds a connection may send and receive nothing (between keep-alive
   * requests, or a client sending its body) before it is closed; 255, the runtime's most, by default.
   * A stream answered to a client is bounded by the request's own deadlines instead.
   */
  idleTimeout?: number;
}

export class CliError extends Error {}

/** True in the compiled binary, whose own files live in the runtime's embedded file system. */
export const runsCompiled = (): boolean => Bun.main.includes("/$bunfs/");

export const USAGE = `litegate — OpenAI-compatible LLM gateway with virtual keys, budgets and rate limits

Usage:
  litegate --config PATH [--port N] [--host H] [--log-format text|json] [--debug]
  litegate migrate --config PATH     apply database migrations and exit
  litegate --help | --version

Options:
  --config PATH        config.yaml (LiteLLM-compatible); the path may also be given alone
  --port N             port to listen on (default: $PORT, else 4000)
  --host H             address to bind (default: $HOST, else 0.0.0.0)
  --log-format F       text (default) or json, one object a line
  --debug              debug logs (also --detailed_debug)
  --num_workers N      accepted for LiteLLM command lines; litegate runs one process

Environment: PORT, HOST (as --port, --host); LITEGATE_IDLE_TIMEOUT (seconds an idle connection is kept, 1-255,
default 255); the config's os.environ/NAME references and DATABASE_URL, REDIS_URL, REDIS_HOST, ...
`;

function portOf(text: string, name: string): number {
  const port = Number(text);
  if (!/^\d{1,5}$/.test(text) || port > 65535) throw new CliError(`${name} must be an integer from 0 to 65535`);
  return port;
}

/** `PORT` and `HOST` from the environment, as LiteLLM's command line reads them, where no flag gave them. */
function fromEnv(args: CliArgs, env: Record<string, string | undefined>): CliArgs {
  if (args.port === undefined && env.PORT) args.port = portOf(env.PORT, "PORT");
  if (args.host === undefined && env.HOST?.trim()) args.host = env.HOST;
  const idle = env.LITEGATE_IDLE_TIMEOUT?.trim();
  if (idle) {
    if (!/^\d{1,3}$/.test(idle) || Number(idle) < 1 || Number(idle) > 255) throw new CliError("LITEGATE_IDLE_TIMEOUT must be a whole number of seconds from 1 to 255");
    args.idleTimeout = Number(idle);
  }
  return args;
}

export function parseArgs(argv: readonly string[], env: Record<string, string | undefined> = {}): CliArgs {
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
      case "--port":
        args.port = portOf(take(), "--port");
        break;
      case "--host":
        args.host = take();
        break;
      case "--log-format": {
        const format = take();
        if (format !== "text" && format !== "json") throw new CliError("--log-format must be text or json");
        args.logFormat = format;
        break;
      }
      case "--debug":
      case "--detailed_debug":
        args.logLevel = "debug";
        break;
      case "--num_workers": {
        const text = take();
        if (!/^\d{1,4}$/.test(text) || Number(text) < 1) throw new CliError("--num_workers must be a whole number from 1");
        args.numWorkers = Number(text);
        break;
      }
      default:
        // `litegate config.yaml`, as `litellm config.yaml` is written.
        if (!arg.startsWith("-") && args.config === undefined) {
          args.config = arg;
          break;
        }
        throw new CliError(`unknown argument: ${arg} (see litegate --help)`);
    }
  }
  if (!args.config) throw new CliError("--config PATH is required (see litegate --help)");
  // `migrate` listens nowhere: a malformed PORT must not stop it.
  return args.command === "serve" ? fromEnv(args, env) : args;
}
