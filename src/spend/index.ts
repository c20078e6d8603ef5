export { createSpendWriter, type SpendWriter } from "./writer";
export type { SpendEvent } from "./batch";
