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
  const haystack = reported.join('\n')
  const leaked = [...secrets].filter((s) => s.length >= 8 && haystack.includes(s))
  console.log(`leak scan: ${reported.length} reported items (events, log lines, errors) searched for ${secrets.size} secrets: ${leaked.length} found`)
  if (leaked.length > 0) {
    // never print the secret itself: say where it showed up
    const where = leaked.map((s) => reported.find((r) => r.includes(s))!.replace(s, '«SECRET»').slice(0, 300))
    console.error(`leak scan FAILED: ${leaked.length} secret(s) appeared in what Bound reported, e.g.:\n${where.slice(0, 5).join('\n---\n')}`)
    process.exitCode = 1 // (an error thrown from a global teardown does not fail a vitest run)
    throw new Error('leak scan failed')
  }
}
