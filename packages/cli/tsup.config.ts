import { packageBuild } from '../../tsup.base.js'

// index: the programmatic API (`run`); cli: the `bound` command (its `#!/usr/bin/env node` line
// comes from src/cli.ts itself, so only dist/cli.js carries it and is made executable). The
// package's bin is bin/bound.js, a committed file that imports dist/cli.js: npm links a bin only
// when its file exists at install time, which build output does not (see bin/bound.js).
export default packageBuild({
  entry: { index: 'src/index.ts', cli: 'src/cli.ts' },
  dts: { entry: { index: 'src/index.ts' } },
})
