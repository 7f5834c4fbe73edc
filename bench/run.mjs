// npm run bench [-- <name> …]: runs the named benchmarks (default: all). Each prints ratios against
// a baseline measured in the same run, since the machine is noisy.
import { spawnSync } from 'node:child_process'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
const all = ['dpop', 'fleet', 'store', 'mtls', 'fetch', 'pool', 'h2', 'proxy']
const names = process.argv.slice(2).filter((a) => !a.startsWith('-'))
const flags = process.argv.slice(2).filter((a) => a.startsWith('-'))
let failed = false
for (const name of names.length ? names : all) {
  if (!all.includes(name)) {
    console.error(`unknown benchmark ${name}; choose from ${all.join(', ')}`)
    process.exit(2)
  }
  console.log(`\n=== bench: ${name} ===`)
  const run = spawnSync(process.execPath, ['--expose-gc', join(here, `${name}.mjs`), ...flags], { stdio: 'inherit' })
  if (run.status !== 0) failed = true
}
process.exit(failed ? 1 : 0)
