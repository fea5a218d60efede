import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts', 'clients/*/test/**/*.test.ts'],
    // Containers are not needed by `npm test`: the emulator suites run with `npm run test:emulators`, the image and
    // compose stack with `npm run test:container`.
    exclude: ['test/emulators/**', 'test/container/**', '**/node_modules/**'],
    // Deadlines are a safety net for a loaded 2-core machine, not a measure of speed.
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    reporters: ['default', './test/summary-reporter.ts'],
  },
})
