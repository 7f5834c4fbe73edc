import { spawnSync } from 'node:child_process'
import { mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'

// Issue 15: the TypeScript settings a consumer may use, compiled against the built packages'
// declarations (skipLibCheck off, so Bound's own .d.ts are checked too). The packages are ESM-only:
// a CommonJS project needs `module: nodenext` (TypeScript ≥ 5.8 models Node 20.19+'s require(esm));
// with node16/node18 it gets TS1479, as README.md states.
const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const dir = join(root, '.tmp', 'ts-consumers')
const source = `import { createBoundFetch, createSession, clientCredentials, generateDpopKey, isBoundError } from '@bound/fetch'
import { boundAdapter } from '@bound/axios'
export async function make() {
  const session = createSession({ issuer: 'https://as.example.com', clientId: 'x', grant: clientCredentials({ resource: 'https://api.example.com' }), dpop: await generateDpopKey() })
  const fetch = createBoundFetch({ session, origins: ['https://api.example.com'] })
  try { await fetch('https://api.example.com/orders') } catch (err) { if (isBoundError(err, 'ERR_NETWORK')) return err.docs }
  return boundAdapter({ session, origins: ['https://api.example.com'] })
}
`

function compile(type: 'module' | 'commonjs', module: string, moduleResolution: string) {
  const at = join(dir, `${type}-${module}-${moduleResolution}`)
  rmSync(at, { recursive: true, force: true })
  mkdirSync(at, { recursive: true })
  writeFileSync(join(at, 'package.json'), JSON.stringify({ type }))
  writeFileSync(join(at, 'index.ts'), source)
  writeFileSync(join(at, 'tsconfig.json'), JSON.stringify({ compilerOptions: { module, moduleResolution, target: 'es2022', strict: true, noEmit: true, skipLibCheck: false, types: ['node'], typeRoots: [join(root, 'node_modules', '@types')] }, files: ['index.ts'] }))
  const run = spawnSync(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(at, 'tsconfig.json')], { encoding: 'utf8' })
  return { status: run.status, out: run.stdout + run.stderr }
}

describe('TypeScript consumers', () => {
  it.each([
    ['module', 'node16', 'node16'],
    ['module', 'nodenext', 'nodenext'],
    ['module', 'esnext', 'bundler'],
    ['module', 'preserve', 'bundler'],
    ['commonjs', 'nodenext', 'nodenext'],
  ] as const)('a "type": "%s" project with module %s / moduleResolution %s compiles against the built types', (type, module, resolution) => {
    const { status, out } = compile(type, module, resolution)
    expect(out).toBe('')
    expect(status).toBe(0)
  }, 60_000)

  it('a CommonJS project on module node16 gets TS1479 (ESM-only packages): the documented limit', () => {
    const { status, out } = compile('commonjs', 'node16', 'node16')
    expect(status).not.toBe(0)
    expect(out).toContain('TS1479')
  }, 60_000)
})
