import { Elysia } from "elysia";
import type { Auth } from "../auth";
import { checkModelAccess, mayUse } from "../governance";
import { badRequest, notFound } from "../http/errors";
import { parseCountTokensBody, promptTokensOf, readBodyText } from "./body";
import type { Inference } from "./inference";
import { INFERENCE_PATHS, type Server, untimed } from "./serve";
import { aliasesFor, modelInfo, modelsFor } from "./model-info";
import type { Runtime } from "./runtime";
import type { Logger } from "../log";

/** The inference routes (INFERENCE_PATHS). Bodies are read raw (`parse: "none"`) so unknown fields reach the provider. */
export function inferenceRoutes(inference: Inference, auth: Auth, runtime: () => Runtime, log?: Logger) {
  const app = new Elysia({ name: "inference" });
  for (const [path, route] of INFERENCE_PATHS) {
    const handler = async ({ request, server }: { request: Request; server: Server | null }) => untimed(await inference(route, request), request, server);
    const summary = route === "messages" ? `Anthropic Messages API ${path}` : `OpenAI-compatible ${path}`;
    app.post(path, handler, { parse: "none", detail: { tags: ["inference"], summary, hide: !path.startsWith("/v1/") } });
  }

  /**
   * Anthropic's token count (Claude Code asks it before a request), for a key that may use the model:
   * an Anthropic deployment's own count (as LiteLLM asks Anthropic), else, or when the provider cannot
   * answer it, the prompt's tokens as litegate counts them for budgets. Nothing is charged or limited.
   */
  const countTokens = async ({ request }: { request: Request }) => {
    const caller = await auth.authenticate(request.headers);
    const current = runtime();
    const rawBody = await readBodyText(request, current.maxBodyBytes, current.config.general_settings.max_request_size_mb);
    const { body, model: asked } = parseCountTokensBody(rawBody);
    const model = current.aliasOf(asked) ?? asked;
    checkModelAccess(caller, model, current.router.groups, asked);
    if (!current.router.has(model)) throw badRequest(`Invalid model name passed in model=${asked}. Call GET /v1/models for the models this key may use.`, "model");
    const deployment = current.pick(model, "messages");
    const provider = deployment && current.providerFor(deployment);
    if (deployment && provider?.countTokens) {
      const betas = request.headers.get("anthropic-beta") ?? undefined;
      const counted = await provider.countTokens({ route: "messages", deployment, body, rawBody, stream: false, signal: request.signal, betas });
      if (typeof counted === "number") return Response.json({ input_tokens: counted });
      log?.warn("the provider did not count the tokens; counted here", { deployment: deployment.id, status: counted.status, error: counted.message });
    }
    return Response.json({ input_tokens: promptTokensOf("messages", body, true) });
  };
  app.post("/v1/messages/count_tokens", countTokens, { parse: "none", detail: { tags: ["inference"], summary: "Anthropic Messages API: count a request's input tokens" } });

  const models = async ({ request }: { request: Request }) => {
    const caller = await auth.authenticate(request.headers);
    const current = runtime();
    const data = [...new Set([...modelsFor(caller, current.router), ...aliasesFor(caller, current)])]
      .map((id) => ({ id, object: "model", created: 1677610602, owned_by: "litegate" }));
    return Response.json({ object: "list", data });
  };
  app.get("/v1/models", models, { detail: { tags: ["inference"], summary: "Models the calling key may use" } });
  app.get("/models", models, { detail: { tags: ["inference"], hide: true } });

  // A model's name may hold slashes (`org/model`): the rest of the path is the name.
  const model = async ({ request, params }: { request: Request; params: Record<string, string> }) => {
    const caller = await auth.authenticate(request.headers);
    const current = runtime();
    let id: string;
    try {
      id = decodeURIComponent(params["*"] ?? "");
    } catch {
      id = params["*"] ?? "";
    }
    // One of the models /v1/models lists for this key (an alias among them), or none.
    const listed = !id.includes("*") && (current.router.has(id) ? mayUse(caller, id, current.router.groups) : aliasesFor(caller, current).includes(id));
    if (!listed) throw notFound(`The model '${id}' does not exist or this key may not use it`);
    return Response.json({ id, object: "model", created: 1677610602, owned_by: "litegate" });
  };
  const info = modelInfo(auth, runtime);
  app.get("/model/info", info, { detail: { tags: ["inference"], summary: "Deployments of the models the calling key may use, with prices" } });
  app.get("/v1/model/info", info, { detail: { tags: ["inference"], hide: true } });
  app.get("/v1/models/*", model, { detail: { tags: ["inference"], summary: "One model the calling key may use" } });
  app.get("/models/*", model, { detail: { tags: ["inference"], hide: true } });
  return app;
}
