/** Structured logging to stdout/stderr: readable text by default, one JSON object a line with --log-format json. */
export type LogLevel = "debug" | "info" | "warn" | "error";
export type LogFormat = "text" | "json";

export interface Logger {
  debug(message: string, fields?: Record<string, unknown>): void;
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
  /** Logs a message only the first time `key` is seen, until `clearOnce(key)`. */
  once(level: LogLevel, key: string, message: string, fields?: Record<string, unknown>): void;
  /** Whether `level` is written at all: callers skip building fields for lines nobody reads. */
  enabled(level: LogLevel): boolean;
  clearOnce(key: string): void;
}

const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

/** Text a field may show bare: anything with spaces, quotes, `=` or control characters is quoted and escaped. */
const BARE = /^[^\s"=\\\x00-\x1f\x7f\u2028\u2029]*$/;

/**
 * One line, whatever the fields hold: a value with a line break in it (a model name or a customer
 * sent by a client) is quoted and escaped, so no client can write a line of its own into the log.
 */
function formatText(level: LogLevel, message: string, fields?: Record<string, unknown>): string {
  let line = `${new Date().toISOString()} ${level.toUpperCase().padEnd(5)} ${message}`;
  if (fields) {
    for (const [name, value] of Object.entries(fields)) {
      if (value === undefined) continue;
      line += ` ${name}=${typeof value === "string" && BARE.test(value) ? value : JSON.stringify(value)}`;
    }
  }
  return line;
}

export function createLogger(options: { level?: LogLevel; format?: LogFormat } = {}): Logger {
  const threshold = RANK[options.level ?? "info"];
  const format = options.format ?? "text";
  const seen = new Set<string>();
  const write = (level: LogLevel, message: string, fields?: Record<string, unknown>) => {
    if (RANK[level] < threshold) return;
    const line =
      format === "json"
        ? JSON.stringify({ time: new Date().toISOString(), level, msg: message, ...fields })
        : formatText(level, message, fields);
    (level === "error" || level === "warn" ? process.stderr : process.stdout).write(line + "\n");
  };
  return {
    debug: (m, f) => write("debug", m, f),
    info: (m, f) => write("info", m, f),
    warn: (m, f) => write("warn", m, f),
    error: (m, f) => write("error", m, f),
    once(level, key, message, fields) {
      if (seen.has(key)) return;
      seen.add(key);
      write(level, message, fields);
    },
    clearOnce: (key) => void seen.delete(key),
    enabled: (level) => RANK[level] >= threshold,
  };
}

export const silentLogger: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
  once() {},
  clearOnce() {},
  enabled: () => false,
};
