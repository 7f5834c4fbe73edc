// vitest globalSetup: clears the capture folder before the run; after it, searches everything Bound
// reported (in every test process) for every secret the testkits handed out or saw.
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'

const dir = join(process.cwd(), '.tmp', 'leak-scan')

export function setup(): void {
  rmSync(dir, { recursive: true, force: true })
}

export function teardown(): void {
  if (!existsSync(dir)) return
  const reported: string[] = []
  const secrets = new Set<string>()
  for (const file of readdirSync(dir)) {
    const data = JSON.parse(readFileSync(join(dir, file), 'utf8')) as { reported: string[]; secrets: string[] }
    reported.push(...data.reported)
    for (const s of data.secrets) secrets.add(s)
  }
  const leaked = findIn(reported.join('\n'), secrets)
  console.log(`leak scan: ${reported.length} reported items (events, log lines, errors) searched for ${secrets.size} secrets: ${leaked.length} found`)
  if (leaked.length > 0) {
    // never print the secret itself: say where it showed up
    const where = leaked.map((s) => reported.find((r) => r.includes(s))!.replace(s, '«SECRET»').slice(0, 300))
    console.error(`leak scan FAILED: ${leaked.length} secret(s) appeared in what Bound reported, e.g.:\n${where.slice(0, 5).join('\n---\n')}`)
    process.exitCode = 1 // (an error thrown from a global teardown does not fail a vitest run)
    throw new Error('leak scan failed')
  }
}

const PREFIX = 8

/**
 * The secrets (8 characters or more) that occur in `haystack`. One pass over the haystack with the
 * secrets indexed by their first 8 characters: searching it once per secret took minutes on a full
 * run (tens of thousands of secrets, tens of megabytes reported), after the test summary.
 */
export function findIn(haystack: string, secrets: Iterable<string>): string[] {
  const byPrefix = new Map<string, string[]>()
  for (const s of secrets) {
    if (s.length < PREFIX) continue
    const key = s.slice(0, PREFIX)
    const list = byPrefix.get(key)
    if (list) list.push(s)
    else byPrefix.set(key, [s])
  }
  const found = new Set<string>()
  for (let i = 0; i + PREFIX <= haystack.length; i++) {
    const candidates = byPrefix.get(haystack.slice(i, i + PREFIX))
    if (candidates) for (const s of candidates) if (haystack.startsWith(s, i)) found.add(s)
  }
  return [...found]
}
