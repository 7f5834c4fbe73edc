import { spawnSync } from 'node:child_process'
import { readFileSync, readdirSync, mkdtempSync, writeFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { publint } from 'publint'
import { formatMessage } from 'publint/utils'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const packages = ['core', 'dpop', 'mtls', 'http', 'oauth', 'fetch', 'axios', 'got', 'redis', 'testkit', 'cli']

describe('packaging', () => {
  it.each(packages)('@bound/%s passes publint --strict', async (name) => {
    const pkgDir = join(root, 'packages', name)
    const { messages } = await publint({ pkgDir, strict: true, level: 'suggestion' })
    const pkg = JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8'))
    const errors = messages.filter((m) => m.type !== 'suggestion').map((m) => formatMessage(m, pkg))
    expect(errors).toEqual([])
  })

  it.each(packages)('@bound/%s is ESM-only, side-effect free, engines >= 20.19, caret ranges for runtime dependencies (users can dedupe and patch)', (name) => {
    const pkg = JSON.parse(readFileSync(join(root, 'packages', name, 'package.json'), 'utf8'))
    expect(pkg).toMatchObject({ type: 'module', sideEffects: false, engines: { node: '>=20.19' } })
    expect(pkg.exports['.']).toEqual({ types: './dist/index.d.ts', default: './dist/index.js' })
    for (const [dep, range] of Object.entries(pkg.dependencies ?? {})) {
      expect(range).toMatch(/^\^\d+\.\d+\.\d+$/)
    }
  })

  it.each(['axios', 'got', 'redis'])('@bound/%s takes its client (HTTP, Redis) as a peer (the application’s copy), never as a dependency', (name) => {
    const pkg = JSON.parse(readFileSync(join(root, 'packages', name, 'package.json'), 'utf8'))
    expect(Object.keys(pkg.dependencies)).not.toContain(name)
    expect(pkg.peerDependencies[name]).toMatch(/^\^\d/)
  })

  it.each(packages)('@bound/%s declares only dependencies its code imports', (name) => {
    const pkg = JSON.parse(readFileSync(join(root, 'packages', name, 'package.json'), 'utf8'))
    const walk = (d: string): string[] => readdirSync(d, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(d, e.name)) : e.name.endsWith('.ts') ? [readFileSync(join(d, e.name), 'utf8')] : []))
    const code = walk(join(root, 'packages', name, 'src')).join('\n')
    for (const dep of Object.keys(pkg.dependencies ?? {})) expect(code, `${dep} is declared but never imported`).toMatch(new RegExp(`(from |import\\(|import )'${dep.replace('/', '\\/')}(/[^']*)?'`))
  })

  it('a CommonJS caller can require() @bound/fetch on this Node', () => {
    const dir = mkdtempSync(join(tmpdir(), 'bound-cjs-'))
    try {
      const file = join(dir, 'caller.cjs')
      writeFileSync(file, [
        "const bound = require('@bound/fetch')",
        "if (typeof bound.createBoundFetch !== 'function') throw new Error('createBoundFetch missing')",
        "if (typeof bound.createSession !== 'function') throw new Error('createSession missing')",
        "console.log('ok', Object.keys(bound).length)",
      ].join('\n'))
      const run = spawnSync(process.execPath, [file], { encoding: 'utf8', env: { ...process.env, NODE_PATH: join(root, 'node_modules') } })
      expect(run.stderr.replace(/\(node:\d+\) ExperimentalWarning.*\n|\(Use `node --trace-warnings.*\n/g, '')).toBe('')
      expect(run.status).toBe(0)
      expect(run.stdout).toMatch(/^ok \d+/)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
