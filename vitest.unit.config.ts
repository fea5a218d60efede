import { defineConfig } from 'vitest/config'

// The fast tier (`npm run test:unit`, seconds): in-process tests only, no spawned process, no container. `npm test`
// runs these and everything else.
export default defineConfig({
  test: {
    include: [
      'test/spool/**/*.test.ts',
      'test/pipeline/**/*.test.ts',
      'test/sinks/**/*.test.ts',
      'test/sources/**/*.test.ts',
      'test/delivery/**/*.test.ts',
      'test/storage/**/*.test.ts',
      'test/ingest/**/*.test.ts',
      'test/registry.test.ts',
      'test/wasm-modules.test.ts',
      'test/event.test.ts',
      'test/config.test.ts',
      'test/logger.test.ts',
      'test/readme.test.ts',
      'test/delivery-failure-log.test.ts',
      'test/faults/deadline-race.test.ts',
      'test/top/view.test.ts',
      'test/deploy/manifests.test.ts',
    ],
    testTimeout: 60_000,
    pool: 'forks',
    reporters: ['default', './test/summary-reporter.ts'],
  },
})
