import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { startTestkit, type Testkit, type TokenEndpointFault } from '@bound/testkit'
import { createBoundFetch } from '@bound/fetch'
import { clientCredentials, clientSecretBasic, createSession, type Session, type SessionOptions } from '@bound/oauth'
import { generateDpopKey } from '@bound/dpop'
import { isBoundError } from '@bound/core'

// T-7 / issue 8: the authorization server misbehaves in every way on the list. For each fault:
// the typed error a caller gets, no unbounded retry, and recovery once the AS is healthy again.
let kit: Testkit
const sessions: Session[] = []
beforeAll(async () => {
  kit = await startTestkit()
})
beforeEach(() => kit.as.setFault(undefined))
afterAll(async () => {
  await Promise.all(sessions.map((s) => s.close()))
  await kit?.close()
})

async function bound(over: Partial<SessionOptions> = {}) {
  const c = kit.clients.secretBasic
  const session = createSession({ issuer: kit.issuer, clientId: c.clientId, clientAuth: clientSecretBasic(c.clientSecret), grant: clientCredentials({ resource: kit.resource }), dpop: await generateDpopKey(), ca: kit.ca, backoff: { initialMs: 200, maxMs: 400 }, tokenRequestTimeoutMs: 1_000, ...over })
  sessions.push(session)
  await session.metadata() // discovery is not what these tests break
  return { session, fetch: createBoundFetch({ session, origins: [kit.api] }) }
}

const cases: [string, TokenEndpointFault, string, string | undefined][] = [
  // name, fault, the code the caller gets, the code of its cause
  ['500', { kind: 'status', status: 500 }, 'ERR_TOKEN_UNAVAILABLE', 'ERR_TOKEN_ENDPOINT'],
  ['503 with Retry-After', { kind: 'status', status: 503, retryAfter: 1 }, 'ERR_TOKEN_UNAVAILABLE', 'ERR_TOKEN_ENDPOINT'],
  ['429', { kind: 'status', status: 429 }, 'ERR_TOKEN_UNAVAILABLE', 'ERR_TOKEN_ENDPOINT'],
  ['a 200 with HTML', { kind: 'html' }, 'ERR_TOKEN_UNAVAILABLE', 'ERR_TOKEN_RESPONSE_INVALID'],
  ['a 200 with truncated JSON', { kind: 'truncated' }, 'ERR_TOKEN_UNAVAILABLE', 'ERR_TOKEN_RESPONSE_INVALID'],
  ['a 200 with a 10 MB body', { kind: 'huge', bytes: 10 * 1024 * 1024 }, 'ERR_TOKEN_UNAVAILABLE', 'ERR_TOKEN_RESPONSE_INVALID'],
  ['token_type Bearer to a DPoP request', { kind: 'body', json: { access_token: 'abcdef', token_type: 'Bearer', expires_in: 60 } }, 'ERR_TOKEN_TYPE_MISMATCH', undefined],
  ['expires_in 0', { kind: 'body', json: { access_token: 'abcdef', token_type: 'DPoP', expires_in: 0 } }, 'ERR_TOKEN_UNAVAILABLE', 'ERR_TOKEN_RESPONSE_INVALID'],
  ['expires_in negative', { kind: 'body', json: { access_token: 'abcdef', token_type: 'DPoP', expires_in: -1 } }, 'ERR_TOKEN_UNAVAILABLE', 'ERR_TOKEN_RESPONSE_INVALID'],
  ['expires_in huge', { kind: 'body', json: { access_token: 'abcdef', token_type: 'DPoP', expires_in: 1e12 } }, 'ERR_TOKEN_UNAVAILABLE', 'ERR_TOKEN_RESPONSE_INVALID'],
  ['expires_in a string', { kind: 'body', json: { access_token: 'abcdef', token_type: 'DPoP', expires_in: 'soon' } }, 'ERR_TOKEN_UNAVAILABLE', 'ERR_TOKEN_RESPONSE_INVALID'],
  ['a missing access_token', { kind: 'body', json: { token_type: 'DPoP', expires_in: 60 } }, 'ERR_TOKEN_UNAVAILABLE', 'ERR_TOKEN_RESPONSE_INVALID'],
  ['hanging (the timeout fires)', { kind: 'hang' }, 'ERR_TOKEN_UNAVAILABLE', 'ERR_NETWORK'],
  ['a dropped connection', { kind: 'drop' }, 'ERR_TOKEN_UNAVAILABLE', 'ERR_NETWORK'],
]

describe('authorization server faults (issue 8)', () => {
  it.each(cases)('%s: a typed error, promptly; a bounded number of requests; recovery afterwards', async (_name, fault, code, causeCode) => {
    const { fetch } = await bound()
    kit.as.setFault(fault)
    kit.as.resetCounters()
    const started = Date.now()
    const err = await fetch(`${kit.api}/orders`).catch((e: unknown) => e)
    expect(Date.now() - started).toBeLessThan(3_000)
    expect(isBoundError(err, code as never)).toBe(true)
    if (causeCode) expect((err as Error & { cause?: { code?: string } }).cause?.code).toBe(causeCode)
    // a burst of callers during the back-off does not become a burst of token requests
    const burst = await Promise.all(Array.from({ length: 20 }, () => fetch(`${kit.api}/orders`).then(() => 'ok', (e: { code?: string }) => e.code)))
    expect(burst.every((r) => r !== 'ok')).toBe(true)
    expect(kit.as.counters().tokenRequests).toBeLessThanOrEqual(4)
    // healthy again: the session recovers by itself
    kit.as.setFault(undefined)
    let status = 0
    for (let i = 0; i < 30 && status !== 200; i++) {
      await new Promise((r) => setTimeout(r, 100))
      status = await fetch(`${kit.api}/orders`).then((r) => r.status, () => 0)
    }
    expect(status).toBe(200)
  })

  it('503 Retry-After is honoured: no new token request before it passes', async () => {
    const { fetch } = await bound({ backoff: { initialMs: 50, maxMs: 50 } })
    kit.as.setFault({ kind: 'status', status: 503, retryAfter: 2 })
    kit.as.resetCounters()
    await fetch(`${kit.api}/orders`).catch(() => {})
    const first = kit.as.counters().tokenRequests
    const until = Date.now() + 1_500
    while (Date.now() < until) {
      await fetch(`${kit.api}/orders`).catch(() => {})
      await new Promise((r) => setTimeout(r, 100))
    }
    expect(kit.as.counters().tokenRequests).toBe(first)
  })

  it('slow (2 s) is waited for and succeeds (the timeout is longer)', async () => {
    const { fetch } = await bound({ tokenRequestTimeoutMs: 5_000 })
    kit.as.setFault({ kind: 'slow', ms: 2_000 })
    const started = Date.now()
    expect((await fetch(`${kit.api}/orders`)).status).toBe(200)
    expect(Date.now() - started).toBeGreaterThanOrEqual(1_900)
  })

  it('a TLS certificate that does not chain to the configured CA is refused (no verification bypass)', async () => {
    const c = kit.clients.secretBasic
    const session = createSession({ issuer: kit.issuer, clientId: c.clientId, clientAuth: clientSecretBasic(c.clientSecret), grant: clientCredentials({ resource: kit.resource }), dpop: await generateDpopKey() }) // no `ca`: the testkit CA is not trusted
    sessions.push(session)
    const err = await createBoundFetch({ session, origins: [kit.api] })(`${kit.api}/orders`).catch((e: unknown) => e) as Error & { cause?: Error }
    expect(isBoundError(err)).toBe(true)
    expect(`${err.message} ${err.cause?.message}`).toMatch(/certificate|CERT|self.signed/i)
  })

  it('no request fails while a valid token is held, whatever the AS does; the refresh happens once it is healthy', async () => {
    const short = await startTestkit({ accessTokenTtlSeconds: 10 })
    try {
      const c = short.clients.secretBasic
      const session = createSession({ issuer: short.issuer, clientId: c.clientId, clientAuth: clientSecretBasic(c.clientSecret), grant: clientCredentials({ resource: short.resource }), dpop: await generateDpopKey(), ca: short.ca, refresh: { ahead: 0.8, jitter: 0 }, backoff: { initialMs: 100, maxMs: 300 }, tokenRequestTimeoutMs: 1_000 })
      sessions.push(session)
      const fetch = createBoundFetch({ session, origins: [short.api] })
      expect((await fetch(`${short.api}/orders`)).status).toBe(200)
      const held = await session.token()
      short.as.resetCounters()
      short.as.setFault({ kind: 'status', status: 500 }) // before the refresh point (2 s into a 10 s token)
      await new Promise((r) => setTimeout(r, 2_100))
      // (not 'hang': a hung request is answered for real once the fault changes — a refresh that succeeds)
      for (const fault of cases.map(([, f]) => f).filter((f) => f.kind !== 'hang')) {
        short.as.setFault(fault)
        for (let i = 0; i < 3; i++) {
          expect((await fetch(`${short.api}/orders`)).status).toBe(200)
          await new Promise((r) => setTimeout(r, 100))
        }
      }
      expect(short.as.counters().faulted).toBeGreaterThan(3) // background refreshes were tried, and failed
      expect((await session.token()).value).toBe(held.value) // and the held token kept serving
      short.as.setFault(undefined)
      let refreshed = false
      for (let i = 0; i < 40 && !refreshed; i++) {
        expect((await fetch(`${short.api}/orders`)).status).toBe(200)
        refreshed = (await session.token()).value !== held.value
        await new Promise((r) => setTimeout(r, 50))
      }
      expect(refreshed).toBe(true)
    } finally {
      await short.close()
    }
  }, 30_000)

  it('the AS down (connection refused): a typed error promptly, recovery when it is back', async () => {
    const { fetch } = await bound()
    await kit.as.stop()
    try {
      const started = Date.now()
      const err = await fetch(`${kit.api}/orders`).catch((e: unknown) => e) as Error & { cause?: { code?: string } }
      expect(Date.now() - started).toBeLessThan(2_000)
      expect(err).toMatchObject({ code: 'ERR_TOKEN_UNAVAILABLE' })
      expect(err.cause?.code).toBe('ERR_NETWORK')
    } finally {
      await kit.as.start()
    }
    let status = 0
    for (let i = 0; i < 30 && status !== 200; i++) {
      await new Promise((r) => setTimeout(r, 100))
      status = await fetch(`${kit.api}/orders`).then((r) => r.status, () => 0)
    }
    expect(status).toBe(200)
  })
})
