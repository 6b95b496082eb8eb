import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    pool: 'forks',
    // --expose-gc lets the lifetime tests force a collection while a GEMM is in flight.
    execArgv: ['--expose-gc'],
    testTimeout: 300_000,
    hookTimeout: 300_000,
  },
});
