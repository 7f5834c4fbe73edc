import { packageBuild } from '../../tsup.base.js'

// index: the programmatic API (`run`); cli: the `bound` binary (its `#!/usr/bin/env node` line
// comes from src/cli.ts itself, so only dist/cli.js carries it and is made executable).
export default packageBuild({
  entry: { index: 'src/index.ts', cli: 'src/cli.ts' },
  dts: { entry: { index: 'src/index.ts' } },
})
