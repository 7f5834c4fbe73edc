#!/usr/bin/env node
// The `bound` command's entry point. It is a committed file, not build output, on purpose: npm
// links a package's bins into node_modules/.bin when it installs it, and skips a bin whose file
// does not exist yet. In this repository `npm ci` runs before `npm run build`, so a bin pointing
// at dist/cli.js was never linked and `npx bound` went to the registry instead (issue 15).
import { existsSync } from 'node:fs'

const cli = new URL('../dist/cli.js', import.meta.url)
if (!existsSync(cli)) {
  process.stderr.write('bound: ERR_INTERNAL: @bound/cli is not built (dist/cli.js is missing): run npm run build\n')
  process.exit(1)
}
await import(cli.href)
