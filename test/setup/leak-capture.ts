// Loaded in every test process (vitest setupFiles): records everything Bound reports — events, log
// lines, every BoundError (message, cause chain, toJSON, util.inspect) — and every secret the
// testkit hands out or sees. leak-scan.ts checks, after the whole run, that no secret appears in
// what Bound reported.
import { subscribe } from 'node:diagnostics_channel'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { inspect } from 'node:util'
import { afterAll } from 'vitest'

const dir = join(process.cwd(), '.tmp', 'leak-scan')
const reported: string[] = []
const secrets = new Set<string>()

const describeError = (err: unknown, depth = 0): string => {
  if (!(err instanceof Error) || depth > 5) return String(err)
  let json = ''
  try {
    json = JSON.stringify(err)
  } catch {
    json = '(unserialisable)'
  }
  return [err.name, err.message, json, inspect(err, { depth: 6 }), describeError(err.cause, depth + 1)].join('\n')
}

subscribe('bound:event', (message) => void reported.push(JSON.stringify(message)))
subscribe('bound:log', (message) => void reported.push(JSON.stringify(message)))
subscribe('bound:error', (err) => void reported.push(describeError(err)))
subscribe('bound-testkit:secret', (secret) => void secrets.add(String(secret)))

let flushes = 0
const flush = () => {
  if (reported.length === 0 && secrets.size === 0) return
  mkdirSync(dir, { recursive: true })
  writeFileSync(join(dir, `${process.pid}-${flushes++}.json`), JSON.stringify({ reported: reported.splice(0), secrets: [...secrets] }))
}
// after each test file (errors are published a microtask after they are made: let them land)
afterAll(async () => {
  await new Promise((r) => setTimeout(r, 10))
  flush()
})
process.on('exit', flush)
