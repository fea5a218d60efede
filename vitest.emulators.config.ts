import { defineConfig } from 'vitest/config'

// The emulator suites: real emulators in containers through testcontainers. Not part of `npm test`.
export default defineConfig({
  test: {
    include: ['test/emulators/**/*.test.ts'],
    testTimeout: 300_000,
    hookTimeout: 300_000,
    pool: 'forks',
    reporters: ['default', './test/summary-reporter.ts'],
  },
})
