import { spawnSync } from 'node:child_process'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'

// Issue 15: every ```ts and ```js snippet in README.md, the package READMEs and docs/ compiles in
// strict mode against the built packages' types (test/snippets/check.mjs; conventions in
// docs/contributing-docs.md).
const root = join(dirname(fileURLToPath(import.meta.url)), '..')

describe('documentation snippets', () => {
  it('every TypeScript and JavaScript snippet type-checks against the built types (strict)', () => {
    const run = spawnSync(process.execPath, [join(root, 'test', 'snippets', 'check.mjs')], { encoding: 'utf8', cwd: root })
    const lines = run.stdout.trim().split('\n')
    expect(lines.at(-1)).toMatch(/^\d+ snippets from \d+ files, 0 errors$/)
    expect(lines.slice(0, -1)).toEqual([])
    expect(run.status).toBe(0)
  }, 120_000)
})
