// Issue 14 — bounded connections (NET-03): a burst of first requests on a loaded machine queues for
// the pool's connections instead of opening a TLS handshake per caller. The machine is loaded by
// one CPU-burning child process per core; the resource server counts the connections it accepts,
// so the bound is checked from the server's side, not by trusting the client's settings.
import { spawn, type ChildProcess } from 'node:child_process'
import { availableParallelism } from 'node:os'
import { afterAll, describe, expect, it } from 'vitest'
import { startTestkit, type Testkit } from '@bound/testkit'
import { createBoundFetch } from '@bound/fetch'
import { clientCredentials, clientSecretBasic, createSession, type Session, type SessionOptions } from '@bound/oauth'
import { createTransport, type Transport } from '@bound/http'
import { generateDpopKey } from '@bound/dpop'
import { isBoundError } from '@bound/core'

/** The transport's default `maxConnectionsPerOrigin` (packages/http/src/transport.ts). */
const DEFAULT_MAX_CONNECTIONS = 64
/** A burner stops by itself after this long, whatever happens to the test process. */
const BURN_SECONDS = 120

const burners = new Set<ChildProcess>()
const kits: Testkit[] = []
const sessions: Session[] = []
const transports: Transport[] = []
afterAll(async () => {
  await stopBurners()
  await Promise.all(sessions.map((s) => s.close()))
  await Promise.all(transports.map((t) => t.close()))
  await Promise.all(kits.map((k) => k.close()))
})

/** One busy-looping `node` per core; resolves once every one of them is running. */
async function burnCpu(): Promise<void> {
  const script = `process.stdout.write('hot\\n'); const end = Date.now() + ${BURN_SECONDS * 1000}; while (Date.now() < end) {}`
  await Promise.all(Array.from({ length: availableParallelism() }, () => new Promise<void>((resolve, reject) => {
    const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'ignore'] })
    burners.add(child)
    child.once('exit', (code, signal) => {
      burners.delete(child)
      reject(new Error(`a CPU burner exited before it ran (${String(code ?? signal)})`)) // (no effect once running)
    })
    child.once('error', reject)
    child.stdout!.once('data', () => resolve())
  })))
}
async function stopBurners(): Promise<void> {
  await Promise.all([...burners].map((child) => new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve()
    child.once('exit', () => resolve())
    child.kill('SIGKILL')
  })))
}

async function bound(kit: Testkit, over: Partial<SessionOptions> = {}) {
  const c = kit.clients.secretBasic
  const session = createSession({ issuer: kit.issuer, clientId: c.clientId, clientAuth: clientSecretBasic(c.clientSecret), grant: clientCredentials({ resource: kit.resource }), dpop: await generateDpopKey(), ...over })
  sessions.push(session)
  return createBoundFetch({ session, origins: [kit.api] })
}
async function freshKit() {
  const kit = await startTestkit()
  kits.push(kit)
  return kit
}
/** 1,000 concurrent first requests; the statuses (or error messages) of those that were not 200. */
async function burst(kit: Testkit, fetch: ReturnType<typeof createBoundFetch>): Promise<unknown[]> {
  const results = await Promise.all(Array.from({ length: 1000 }, (_, i) => fetch(`${kit.api}/orders/${i}`).then(
    async (r) => { await r.arrayBuffer(); return r.status },
    (e: Error) => `${e.message} ${String((e.cause as Error | undefined)?.message ?? '')}`,
  )))
  return results.filter((s) => s !== 200)
}

/** 1,000 concurrent first requests while every core burns: all succeed, one token, at most `bound` connections at once. */
async function loadedBurst(kit: Testkit, fetch: Parameters<typeof burst>[1], bound: number) {
  await burnCpu()
  let failures: unknown[]
  try {
    failures = await burst(kit, fetch)
  } finally {
    await stopBurners()
  }
  expect(failures.slice(0, 5)).toEqual([])
  expect(kit.as.counters()).toMatchObject({ tokensIssued: 1 })
  const rs = kit.rs.counters()
  expect(rs).toMatchObject({ verified: 1000, verifierDisagreements: 0 })
  expect(rs.maxOpenConnections).toBeLessThanOrEqual(bound)
  expect(rs.maxOpenConnections).toBeGreaterThan(1) // the burst did run concurrently (and was counted)
}

describe('bounded connections under load (issue 14)', () => {
  it('NET-03 GRANT-07: with every core busy, 1,000 concurrent first requests all succeed, one token is issued, and the server never sees more than the default 64 connections at once', async () => {
    const kit = await freshKit()
    await loadedBurst(kit, await bound(kit, { ca: kit.ca }), DEFAULT_MAX_CONNECTIONS)
  }, 240_000)

  it('NET-03: a configured bound of 4 holds — the server sees at most 4 connections at once — and all 1,000 requests of a loaded burst succeed', async () => {
    const kit = await freshKit()
    const transport = createTransport({ ca: kit.ca, maxConnectionsPerOrigin: 4 })
    transports.push(transport)
    await loadedBurst(kit, await bound(kit, { transport }), 4)
  }, 240_000)

  it('NET-03: maxConnectionsPerOrigin is a whole number of at least 1, or Infinity for no bound; anything else is ERR_INVALID_CONFIG naming it', async () => {
    for (const value of [0, -1, 1.5, NaN, '8']) {
      let error: unknown
      try {
        createTransport({ maxConnectionsPerOrigin: value as never })
      } catch (e) {
        error = e
      }
      expect(isBoundError(error) && error.code === 'ERR_INVALID_CONFIG').toBe(true)
      expect((error as Error).message).toMatch(/maxConnectionsPerOrigin/)
    }
    for (const value of [1, 256, Infinity]) await createTransport({ maxConnectionsPerOrigin: value }).close()
  })
})
