#!/usr/bin/env node
import { run } from './run.js'

// `bound … | head -1`: a closed pipe ends the command quietly.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0)
  throw err
})

const code = await run(process.argv.slice(2), {
  stdout: process.stdout,
  stderr: process.stderr,
  get stdin() {
    return process.stdin // only touched by a `-` file argument
  },
  env: process.env,
  cwd: process.cwd(),
})

// The answer is known: once stdout and stderr are flushed, exit, so that a connection still
// pending on a server that never answered (after --timeout) cannot hold the process open.
const flushed = (stream: NodeJS.WriteStream) => new Promise<void>((resolve) => void stream.write('', () => resolve()))
await Promise.all([flushed(process.stdout), flushed(process.stderr)])
process.exit(code)
