import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['packages/*/test/**/*.test.ts', 'test/**/*.test.ts', 'examples/*/test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    pool: 'forks',
    // the secret-leak scan over the whole run (test/setup/leak-*.ts); a redis-server binary for the
    // token-store tests (test/setup/redis.ts installs Debian's package where it is missing)
    setupFiles: ['test/setup/leak-capture.ts'],
    globalSetup: ['test/setup/leak-scan.ts', 'test/setup/redis.ts'],
  },
})
