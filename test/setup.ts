import { setDefaultTimeout } from "bun:test";

// Integration tests start real Postgres, Redis and compiled binaries: a machine under load needs time.
setDefaultTimeout(120_000);
