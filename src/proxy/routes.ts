import { Elysia } from "elysia";
import type { Auth } from "../auth";
import { mayUse } from "../governance";
import type { Route } from "../providers/types";
import type { Inference } from "./inference";
import type { Runtime } from "./runtime";

const ROUTES: ReadonlyArray<[string, Route]> = [
  ["/chat/completions", "chat"],
  ["/completions", "completions"],
  ["/embeddings", "embeddings"],
];

/** The OpenAI-compatible routes. Bodies are read raw (`parse: "none"`) so unknown fields reach the provider. */
export function inferenceRoutes(inference: Inference, auth: Auth, runtime: () => Runtime) {
  const app = new Elysia({ name: "inference" });
  for (const [path, route] of ROUTES) {
    const handler = ({ request }: { request: Request }) => inference(route, request);
    const detail = { tags: ["inference"], summary: `OpenAI-compatible ${path}` };
    app.post(`/v1${path}`, handler, { parse: "none", detail });
    app.post(path, handler, { parse: "none", detail: { ...detail, hide: true } });
  }

  const models = async ({ request }: { request: Request }) => {
    const caller = await auth.authenticate(request.headers);
    const { router } = runtime();
    const data = router
      .names()
      .filter((name) => mayUse(caller, name, router.groups))
      .map((id) => ({ id, object: "model", created: 1677610602, owned_by: "litegate" }));
    return Response.json({ object: "list", data });
  };
  app.get("/v1/models", models, { detail: { tags: ["inference"], summary: "Models the calling key may use" } });
  app.get("/models", models, { detail: { tags: ["inference"], hide: true } });
  return app;
}
