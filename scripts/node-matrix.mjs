// npm run test:node-matrix: the whole test suite under Node 22 and 24 (from the registry's `node`
// package), after a build on this Node. Engines stay >=20.19; this proves the newer lines too.
import { spawnSync } from 'node:child_process'

const versions = process.argv.slice(2).length ? process.argv.slice(2) : ['22', '24']
let failed = false
for (const v of versions) {
  console.log(`\n=== the test suite on Node ${v} ===`)
  const run = spawnSync('npx', ['-y', '-p', `node@${v}`, '--', 'node', 'node_modules/vitest/vitest.mjs', 'run', '--reporter=dot'], { stdio: 'inherit', env: { ...process.env, NO_COLOR: '1' } })
  if (run.status !== 0) {
    console.error(`Node ${v}: the suite failed (exit ${run.status})`)
    failed = true
  }
}
process.exit(failed ? 1 : 0)
