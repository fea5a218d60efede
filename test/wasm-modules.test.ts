// The WebAssembly modules are committed assembled (NAME.wasm.ts, see scripts/build-wasm.ts): each must be what its
// .wat assembles to, so that a change to a .wat cannot be forgotten in the module the service runs.
import { readFile } from 'node:fs/promises'
import { describe, expect, it } from 'vitest'
import { assemble, moduleFile, moduleText, WASM_MODULES } from '../scripts/build-wasm.js'

describe('the WebAssembly modules', () => {
  it.each(WASM_MODULES.map((module) => [module.wat, module] as const))(
    'are what %s assembles to (run `npm run build:wasm` after changing it)',
    async (_wat, module) => {
      const bytes = await assemble(module.wat)
      expect(await readFile(moduleFile(module), 'utf8')).toBe(moduleText(module, bytes))
    },
  )
})
