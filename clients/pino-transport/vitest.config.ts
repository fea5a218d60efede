// The package's own test run (`npm test` here); the repository's `npm test` runs the same files from the root.
import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: { include: ['test/**/*.test.ts'] },
})
