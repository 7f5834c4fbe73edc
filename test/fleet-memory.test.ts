/**
 * The fleet layer's logic with sessions in one process sharing the in-process store, against the
 * testkit's real AS and RS (the multi-process fleet on Redis is test/fleet.test.ts). FLEET-xx are
 * the rules in docs/fleet.md.
 */
import { randomBytes } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startTestkit, type Testkit } from '@bound/testkit'
import { createBoundFetch } from '@bound/fetch'
import { clientSecretBasic, createMemoryTokenStore, createSession, tokenExchange, clientCredentials, type Session, type SessionOptions, type TokenStore, type StoredRecord } from '@bound/oauth'
import { generateDpopKey, type DpopKey } from '@bound/dpop'

let kit: Testkit
const sessions: Session[] = []
const encryptionKey = randomBytes(32).toString('base64')
beforeAll(async () => {
  kit = await startTestkit()
})
afterAll(async () => {
  await Promise.all(sessions.map((s) => s.close()))
  await kit?.close()
})

function sessionOn(store: TokenStore, dpop: DpopKey, over: Partial<SessionOptions> = {}) {
  const c = kit.clients.secretBasic
  const session = createSession({
    issuer: kit.issuer,
    clientId: c.clientId,
    clientAuth: clientSecretBasic(c.clientSecret),
    grant: clientCredentials({ resource: kit.resource }),
    dpop,
    ca: kit.ca,
    ...over,
    store: { store, encryptionKey, ...over.store },
  })
  sessions.push(session)
  return session
}

/** Two sessions on one store and one key, the first token earned by `a` and taken by `b`. */
async function twoSharing() {
  const store = createMemoryTokenStore()
  const shared = await generateDpopKey()
  const a = sessionOn(store, shared)
  const b = sessionOn(store, shared)
  const first = await a.token()
  expect((await b.token()).label).toBe(first.label)
  return { a, b, first }
}

/** A store that records every record written (to look at what a store reader sees). */
function recording(inner: TokenStore) {
  const written: Array<{ key: string; record: StoredRecord }> = []
  const store: TokenStore = { ...inner, put: (key, record, ttl) => (written.push({ key, record }), inner.put(key, record, ttl)) }
  return { store, written }
}

describe('a shared store in one process (FLEET-01…05)', () => {
  it('FLEET-02: sessions that share the binding earn one token between them; other keys earn their own', async () => {
    kit.as.resetCounters()
    const store = createMemoryTokenStore()
    const shared = await generateDpopKey()
    const a = sessionOn(store, shared)
    const b = sessionOn(store, shared)
    const tokens = await Promise.all([...Array.from({ length: 50 }, () => a.token()), ...Array.from({ length: 50 }, () => b.token())])
    expect(new Set(tokens.map((t) => t.label)).size).toBe(1)
    expect(kit.as.counters().tokensIssued).toBe(1)
    // another key: nothing shared but the coordination
    const c = sessionOn(store, await generateDpopKey())
    const other = await c.token()
    expect(other.label).not.toBe(tokens[0]!.label)
    expect(kit.as.counters().tokensIssued).toBe(2)
    // and the shared token works at the RS from both sessions (bound to the one key)
    for (const s of [a, b]) expect((await createBoundFetch({ session: s, origins: [kit.api] })(`${kit.api}/orders`)).status).toBe(200)
  })

  it('FLEET-05: the store sees sealed values and hashed keys only; another encryption key opens nothing', async () => {
    const { store, written } = recording(createMemoryTokenStore())
    const key = await generateDpopKey()
    const a = sessionOn(store, key)
    const token = await a.token()
    expect(written.length).toBe(1)
    const { key: storeKey, record } = written[0]!
    expect(record.value).not.toContain(token.value)
    expect(record.value).toMatch(/^v1\.[\w-]{8}\.[\w-]+\.[\w-]+$/)
    expect(storeKey).toMatch(/^tok:[\w-]{43}$/)
    expect(storeKey).not.toContain(kit.resource)
    // a process with another encryption key cannot take it, and earns its own
    kit.as.resetCounters()
    const b = sessionOn(store, key, { store: { store, encryptionKey: randomBytes(32) } })
    expect((await b.token()).label).not.toBe(token.label)
    expect(kit.as.counters().tokensIssued).toBe(1)
  })

  it('FLEET-01: invalid_token in one session drops the token in the other (published), and one new token is earned', async () => {
    kit.as.resetCounters()
    const { a, b, first } = await twoSharing()
    const invalidated = new Promise((resolve) => b.events.on('token.invalidated', resolve))
    a.invalidate(first)
    await invalidated
    const [x, y] = await Promise.all([a.token(), b.token()])
    expect(x.label).toBe(y.label)
    expect(x.label).not.toBe(first.label)
    expect(kit.as.counters().tokensIssued).toBe(2)
  })

  it('FLEET-01: a token revoked by the process that earned it is dropped by the processes that took it', async () => {
    const { a, b, first } = await twoSharing()
    const dropped = new Promise((resolve) => b.events.on('token.invalidated', resolve))
    await a.close({ revoke: true })
    await dropped
    const next = await b.token()
    expect(next.label).not.toBe(first.label)
    expect((await createBoundFetch({ session: b, origins: [kit.api] })(`${kit.api}/orders`)).status).toBe(200)
  })

  it('FLEET-02/03: a rotating refresh token shared by sessions is redeemed by one at a time, never twice', async () => {
    kit.as.resetCounters()
    const store = createMemoryTokenStore()
    const shared = await generateDpopKey()
    const grant = () => tokenExchange({ subjectToken: () => kit.workloadIdentity.mintToken({ sub: 'fleet:job' }), resource: kit.resource, scope: 'orders:read offline_access' })
    const a = sessionOn(store, shared, { grant: grant(), store: { store, encryptionKey, partition: 'job-1' } })
    const b = sessionOn(store, shared, { grant: grant(), store: { store, encryptionKey, partition: 'job-1' } })
    const grants: string[] = []
    for (const s of [a, b]) s.events.on('token.acquired', (e) => grants.push(e.grant))
    await Promise.all([a.token(), b.token()])
    for (let i = 0; i < 6; i++) await Promise.all([a.forceRefresh(), b.forceRefresh()])
    const counters = kit.as.counters()
    expect(counters.refreshReuseDetected).toBe(0)
    expect(counters.byGrant['refresh_token'] ?? 0).toBe(grants.filter((g) => g === 'refresh_token').length)
    expect(grants.filter((g) => g === 'refresh_token').length).toBeGreaterThan(0)
    expect(grants.filter((g) => g !== 'refresh_token').length).toBe(1) // one exchange, then the family
  })

  it('FLEET-03: a holder paused past its lease never presents the refresh token another process replaced', async () => {
    kit.as.resetCounters()
    const inner = createMemoryTokenStore()
    const shared = await generateDpopKey()
    const grant = () => tokenExchange({ subjectToken: () => kit.workloadIdentity.mintToken({ sub: 'fleet:paused' }), resource: kit.resource, scope: 'orders:read offline_access' })
    // A stalls right before a refresh token would leave (its lease check), for longer than its lease
    let stall: Promise<void> | undefined
    const storeA: TokenStore = { ...inner, holdsLease: async (key, owner) => (await stall, inner.holdsLease(key, owner)) }
    const a = sessionOn(storeA, shared, { grant: grant(), store: { store: storeA, encryptionKey, partition: 'paused', leaseMs: 100, timeoutMs: 5_000 } })
    const b = sessionOn(inner, shared, { grant: grant(), store: { store: inner, encryptionKey, partition: 'paused', leaseMs: 100 } })
    const grantsA: string[] = []
    a.events.on('token.acquired', (e) => grantsA.push(e.grant))
    await a.token() // the exchange: the family's first refresh token is in the store
    await b.token()
    let release!: () => void
    stall = new Promise((resolve) => (release = resolve))
    const refreshA = a.forceRefresh()
    await new Promise((r) => setTimeout(r, 300)) // A's leases have expired
    const grantsB: string[] = []
    b.events.on('token.acquired', (e) => grantsB.push(e.grant))
    await b.forceRefresh() // B redeems the family and writes the next refresh token
    release()
    await refreshA
    expect(grantsB).toEqual(['refresh_token'])
    // A found the lease gone and never sent the consumed refresh token: it earned with its grant
    expect(grantsA).toEqual(['urn:ietf:params:oauth:grant-type:token-exchange', 'urn:ietf:params:oauth:grant-type:token-exchange'])
    expect(kit.as.counters().refreshReuseDetected).toBe(0)
  })

  it('FLEET-04: a store that hangs costs each caller at most its bound, once; the session works alone and says so', async () => {
    const hanging: TokenStore = { ...createMemoryTokenStore(), get: () => new Promise(() => {}), acquireLease: () => new Promise(() => {}) }
    const a = sessionOn(hanging, await generateDpopKey(), { store: { store: hanging, encryptionKey, timeoutMs: 100, retryMs: 60_000 } })
    const degraded: unknown[] = []
    a.events.on('store.degraded', (e) => degraded.push(e))
    const started = performance.now()
    await a.token()
    expect(performance.now() - started).toBeLessThan(2_000)
    expect(degraded).toEqual([expect.objectContaining({ operation: 'get', reason: 'timeout' })])
    await a.forceRefresh() // the breaker is open: no wait at all
    expect(degraded.length).toBe(1)
  })

  it('refuses a subject grant without a partition, and a store without a key', async () => {
    const store = createMemoryTokenStore()
    const dpop = await generateDpopKey()
    expect(() => sessionOn(store, dpop, { grant: tokenExchange({ subjectToken: 'x', resource: kit.resource }) })).toThrow(/store.partition is required/)
    expect(() => sessionOn(store, dpop, { store: { store, encryptionKey: 'c2hvcnQ=' } })).toThrow(/must be 32 bytes .*got 5/)
    expect(() => sessionOn(store, dpop, { store: { store, encryptionKey: undefined as never } })).toThrow(/encryptionKey: is required/)
  })
})

describe('a session per tenant (createSessionPool)', () => {
  it('makes sessions on demand, bounds them, and a session made again after eviction takes its tokens from the store', async () => {
    const { createSessionPool } = await import('@bound/oauth')
    kit.as.resetCounters()
    const store = createMemoryTokenStore()
    const dpop = await generateDpopKey()
    const c = kit.clients.secretBasic
    const made: string[] = []
    const pool = createSessionPool({
      maxSessions: 2,
      closeAfterMs: 0,
      sessionOptions: (tenant) => {
        made.push(tenant)
        return {
          issuer: kit.issuer,
          clientId: c.clientId,
          clientAuth: clientSecretBasic(c.clientSecret),
          grant: tokenExchange({ subjectToken: () => kit.workloadIdentity.mintToken({ sub: `tenant:${tenant}` }), resource: kit.resource }),
          dpop,
          ca: kit.ca,
          store: { store, encryptionKey },
        }
      },
    })
    try {
      const a1 = await pool.get('a').token()
      expect(pool.get('a')).toBe(pool.get('a'))
      const b1 = await pool.get('b').token()
      expect(b1.label).not.toBe(a1.label) // tenants never share
      await pool.get('c').token() // evicts a (least recently used)
      expect(pool.size).toBe(2)
      const again = await pool.get('a').token() // a new session for a: its token comes from the store
      expect(made).toEqual(['a', 'b', 'c', 'a'])
      expect(again.label).toBe(a1.label)
      expect(kit.as.counters().tokensIssued).toBe(3)
    } finally {
      await pool.close()
    }
    expect(() => pool.get('a')).toThrow(/closed/)
  })
})

describe('createSessionPool: idle sessions go', () => {
  it('evicts a session idle for idleMs (its tokens stay in the store)', async () => {
    const { createSessionPool } = await import('@bound/oauth')
    const store = createMemoryTokenStore()
    const dpop = await generateDpopKey()
    const c = kit.clients.secretBasic
    const pool = createSessionPool({
      idleMs: 1_000,
      closeAfterMs: 0,
      sessionOptions: () => ({ issuer: kit.issuer, clientId: c.clientId, clientAuth: clientSecretBasic(c.clientSecret), grant: clientCredentials({ resource: kit.resource }), dpop, ca: kit.ca, store: { store, encryptionKey } }),
    })
    try {
      const first = pool.get('idle')
      const token = await first.token()
      await new Promise((r) => setTimeout(r, 2_300))
      expect(pool.size).toBe(0)
      await expect(first.token()).rejects.toMatchObject({ code: 'ERR_CLOSED' }) // closed after it went
      kit.as.resetCounters()
      expect((await pool.get('idle').token()).label).toBe(token.label)
      expect(kit.as.counters().tokensIssued).toBe(0)
    } finally {
      await pool.close()
    }
  })
})
