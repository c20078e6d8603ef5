import { afterAll, setDefaultTimeout } from "bun:test";
import { stopServices } from "./helpers/services";

// Integration tests start real Postgres, Redis and compiled binaries: a machine under load needs time.
// (This covers tests only: the hooks that start services give the same 120 s themselves.)
setDefaultTimeout(120_000);

// Postgres and Redis servers the tests started stop with the run, not with the machine.
afterAll(stopServices);
