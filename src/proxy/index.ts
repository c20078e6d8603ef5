export { createInference, type Inference, type InferenceDeps, type RequestRecord } from "./inference";
export { inferenceRoutes } from "./routes";
export { createRuntime, type Runtime, type GatewayState, type ProviderCalls } from "./runtime";
export { type DeploymentUsage, ModelRouter } from "./router";
export { DeploymentSlots } from "./slots";
export { inferenceServerRoutes } from "./serve";
