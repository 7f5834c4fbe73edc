import { defineConfig } from 'tsup'

export default defineConfig({
  // index: the programmatic API (`run`); cli: the `bound` binary (its `#!/usr/bin/env node` line
  // comes from src/cli.ts itself, so only dist/cli.js carries it and is made executable).
  entry: { index: 'src/index.ts', cli: 'src/cli.ts' },
  format: ['esm'],
  target: 'node20',
  platform: 'node',
  dts: { entry: { index: 'src/index.ts' } },
  sourcemap: true,
  clean: true,
})
