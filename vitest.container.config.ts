import { defineConfig } from 'vitest/config'

// The container tier: the image built from the Dockerfile and the compose stack, run by podman. Not part of
// `npm test`; test/container/prepare.sh sets the engine up, and the suites skip themselves, saying why, without it.
export default defineConfig({
  test: {
    include: ['test/container/**/*.test.ts'],
    // Image builds and a compose stack: generous deadlines on a loaded 2-core machine, one file at a time (both build
    // the same image, and the second build reuses the first one's layers).
    testTimeout: 300_000,
    hookTimeout: 600_000,
    fileParallelism: false,
    pool: 'forks',
    reporters: ['default', './test/summary-reporter.ts'],
  },
})
