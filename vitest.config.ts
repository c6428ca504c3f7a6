import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          // web/: the site's pure modules (amounts, pause policy, history on fake-indexeddb), no browser needed.
          include: ['.ci/**/*.test.ts', 'src/**/*.test.ts', 'coordinator/**/*.test.ts', 'contracts/**/*.test.ts', 'web/**/*.test.ts'],
          environment: 'node',
          testTimeout: 60_000,
          hookTimeout: 120_000,
        },
      },
      {
        test: {
          name: 'e2e',
          include: ['e2e/**/*.test.ts'],
          environment: 'node',
          testTimeout: 15 * 60_000,
          hookTimeout: 5 * 60_000,
          // One browser at a time: the machines have two cores and SwiftShader is CPU-bound.
          fileParallelism: false,
        },
      },
    ],
  },
})
