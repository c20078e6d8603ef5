import { expect, test } from "bun:test";
import { CliError, parseArgs } from "../../src/cli";

test("LITEGATE_IDLE_TIMEOUT: whole seconds from 1 to 255, else the start stops saying so", () => {
  expect(parseArgs(["--config", "c.yaml"], { LITEGATE_IDLE_TIMEOUT: "30" })).toMatchObject({ idleTimeout: 30 });
  expect(parseArgs(["--config", "c.yaml"], {}).idleTimeout).toBeUndefined();
  for (const bad of ["0", "256", "1.5", "x", "-1"]) {
    expect(() => parseArgs(["--config", "c.yaml"], { LITEGATE_IDLE_TIMEOUT: bad })).toThrow(new CliError("LITEGATE_IDLE_TIMEOUT must be a whole number of seconds from 1 to 255"));
  }
});

test("PORT and HOST from the environment where no flag gives them, as LiteLLM's command line reads them; flags win", () => {
  expect(parseArgs(["--config", "c.yaml"], { PORT: "8080", HOST: "127.0.0.1" })).toMatchObject({ port: 8080, host: "127.0.0.1" });
  expect(parseArgs(["--config", "c.yaml", "--port", "9000", "--host", "::1"], { PORT: "8080", HOST: "127.0.0.1" })).toMatchObject({ port: 9000, host: "::1" });
  expect(parseArgs(["--config", "c.yaml"], { PORT: "", HOST: " " })).toEqual({ command: "serve", config: "c.yaml" });
  expect(() => parseArgs(["--config", "c.yaml"], { PORT: "80x" })).toThrow(new CliError("PORT must be an integer from 0 to 65535"));
  expect(parseArgs(["migrate", "--config", "c.yaml"], { PORT: "80x" })).toEqual({ command: "migrate", config: "c.yaml" });
});

test("the config path may be given alone (litegate config.yaml, as litellm config.yaml)", () => {
  expect(parseArgs(["config.yaml"])).toEqual({ command: "serve", config: "config.yaml" });
  expect(parseArgs(["config.yaml", "--port", "1"])).toMatchObject({ config: "config.yaml", port: 1 });
  expect(parseArgs(["migrate", "config.yaml"])).toEqual({ command: "migrate", config: "config.yaml" });
  expect(() => parseArgs(["a.yaml", "b.yaml"])).toThrow("unknown argument: b.yaml");
  expect(() => parseArgs(["--config", "a.yaml", "b.yaml"])).toThrow("unknown argument: b.yaml");
});

test("--debug and --detailed_debug mean debug logs; --num_workers is taken (and warned about at start)", () => {
  expect(parseArgs(["c.yaml", "--debug"]).logLevel).toBe("debug");
  expect(parseArgs(["c.yaml", "--detailed_debug"]).logLevel).toBe("debug");
  expect(parseArgs(["c.yaml"]).logLevel).toBeUndefined();
  expect(parseArgs(["c.yaml", "--num_workers", "4"]).numWorkers).toBe(4);
  expect(parseArgs(["c.yaml", "--num_workers=1"]).numWorkers).toBe(1);
  expect(() => parseArgs(["c.yaml", "--num_workers", "0"])).toThrow("--num_workers must be a whole number from 1");
});
