import { defineConfig, type Options } from 'tsup'

/** The build every @bound package shares: ESM only, Node 20, `.js` + `.d.ts`, source maps. */
export function packageBuild(overrides: Options = {}) {
  return defineConfig({
    entry: ['src/index.ts'],
    format: ['esm'],
    target: 'node20',
    platform: 'node',
    dts: true,
    sourcemap: true,
    clean: true,
    ...overrides,
  })
}
