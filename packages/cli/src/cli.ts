#!/usr/bin/env node
import { run } from './run.js'

// `bound … | head -1`: a closed pipe ends the command quietly.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0)
  throw err
})

process.exitCode = await run(process.argv.slice(2), {
  stdout: process.stdout,
  stderr: process.stderr,
  get stdin() {
    return process.stdin // only touched by `fetch --data-file -`
  },
  env: process.env,
  cwd: process.cwd(),
})
