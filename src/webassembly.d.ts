// The part of the WebAssembly JavaScript API that scan-json.ts uses. TypeScript declares it only with the DOM's
// types and @types/node 20 not at all; Node has had it since its first versions.
declare namespace WebAssembly {
  class Module {
    constructor(bytes: Uint8Array)
  }
  class Instance {
    constructor(module: Module, imports?: Record<string, Record<string, unknown>>)
    readonly exports: Record<string, unknown>
  }
  class Memory {
    readonly buffer: ArrayBuffer
    /** Grows by `pages` of 64 KiB; returns the size before, in pages. */
    grow(pages: number): number
  }
}
