// Files embedded into the compiled binary with `import … with { type: "file" | "text" }`.
declare module "*.sql" {
  const text: string;
  export default text;
}
declare module "*.wasm" {
  const path: string;
  export default path;
}
declare module "*.data" {
  const path: string;
  export default path;
}
declare module "*.lua" {
  const text: string;
  export default text;
}
declare module "*.tar.gz" {
  const path: string;
  export default path;
}
declare module "*.bin" {
  const path: string;
  export default path;
}
