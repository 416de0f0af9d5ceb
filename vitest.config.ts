import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/helpers/global-setup.ts'],
    // Integration tests talk to real Postgres/Redis and spawn processes; generous but bounded.
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
  },
});
