import { spawn } from 'node:child_process'
import { readdirSync, existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'

// Every example runs against the testkit and must finish green (each checks its own story).
const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const examples = readdirSync(join(root, 'examples')).filter((d) => existsSync(join(root, 'examples', d, 'index.mjs')) && d !== 'support')

function run(dir: string): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['index.mjs'], { cwd: join(root, 'examples', dir), stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    child.stdout.on('data', (d: Buffer) => (out += d.toString()))
    child.stderr.on('data', (d: Buffer) => (out += d.toString()))
    const timer = setTimeout(() => child.kill('SIGKILL'), 45_000)
    child.on('close', (code) => {
      clearTimeout(timer)
      resolve({ code, out })
    })
  })
}

describe('examples', () => {
  it('there are the examples the docs promise', () => {
    expect(examples.sort()).toEqual(['agent-step-up', 'ci-token-exchange', 'enterprise-agent', 'mcp-client', 'mtls-rotation', 'quickstart', 'service-dpop', 'with-axios', 'with-got', 'with-ky', 'with-openai-sdk'])
  })
  it.each(examples)('%s runs green against the testkit', async (dir) => {
    const { code, out } = await run(dir)
    expect(out).not.toMatch(/(example|demo) failed/)
    expect(code).toBe(0)
    expect(out).toMatch(/\] (ok|done)/)
  }, 60_000)
})
