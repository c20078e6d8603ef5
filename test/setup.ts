import { afterAll, setDefaultTimeout } from "bun:test";
import { stopServices } from "./helpers/services";

// Integration tests start real Postgres, Redis and compiled binaries: a machine under load needs time.
// This reaches the first test file of a run only (the runtime keeps a default per file): `npm test`
// passes `--timeout 120000`, which reaches them all. The hooks that start services give 120 s themselves.
setDefaultTimeout(120_000);

// Postgres and Redis servers the tests started stop with the run, not with the machine.
afterAll(stopServices);
