import { afterAll, describe, expect, it } from 'vitest'
import { startTestkit, type Testkit, type TestkitOptions } from '@bound/testkit'
import { createBoundFetch } from '@bound/fetch'
import { clientCredentials, clientSecretBasic, clientSecretPost, createSession, privateKeyJwt, selfSignedTlsClientAuth, tlsClientAuth, type ClientAuth, type Session, type SessionOptions } from '@bound/oauth'
import { generateDpopKey } from '@bound/dpop'
import { isBoundError } from '@bound/core'

const kits: Testkit[] = []
const sessions: Session[] = []
afterAll(async () => {
  await Promise.all(sessions.map((s) => s.close()))
  await Promise.all(kits.map((k) => k.close()))
})
async function kitWith(options: TestkitOptions = {}) {
  const kit = await startTestkit(options)
  kits.push(kit)
  return kit
}
async function bound(kit: Testkit, over: Partial<SessionOptions> = {}) {
  const c = kit.clients.secretBasic
  const session = createSession({ issuer: kit.issuer, clientId: c.clientId, clientAuth: clientSecretBasic(c.clientSecret), grant: clientCredentials({ resource: kit.resource }), dpop: await generateDpopKey(), ca: kit.ca, ...over })
  sessions.push(session)
  return { session, fetch: createBoundFetch({ session, origins: [kit.api] }) }
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

describe('tokens that never go stale (issue 4)', () => {
  it('GRANT-07: 1,000 concurrent first calls cause exactly one token issued', async () => {
    const kit = await kitWith()
    const { fetch } = await bound(kit)
    const results = await Promise.all(Array.from({ length: 1000 }, (_, i) => fetch(`${kit.api}/orders/${i}`).then((r) => r.status, (e: Error) => e.message)))
    expect(results.filter((s) => s !== 200).slice(0, 5)).toEqual([])
    expect(kit.as.counters()).toMatchObject({ tokensIssued: 1, tokenRequests: 2, nonceChallenges: 1 })
    expect(kit.rs.counters()).toMatchObject({ verified: 1000, verifierDisagreements: 0 })
  })

  it('CHAL-13 T-7 S7: 100 requests failing at once with invalid_token cause exactly one refresh', async () => {
    const kit = await kitWith()
    const { session, fetch } = await bound(kit)
    expect((await fetch(`${kit.api}/orders`)).status).toBe(200)
    kit.rs.revokeToken((await session.token()).value)
    kit.as.resetCounters()
    const statuses = await Promise.all(Array.from({ length: 100 }, () => fetch(`${kit.api}/orders`).then((r) => r.status)))
    expect(statuses.every((s) => s === 200)).toBe(true)
    expect(kit.as.counters().tokensIssued).toBe(1)
  })

  it('a second invalid_token for the same request is returned, not looped on', async () => {
    const kit = await kitWith()
    const { fetch } = await bound(kit)
    expect((await fetch(`${kit.api}/orders`)).status).toBe(200)
    kit.rs.revokeClient(kit.clients.secretBasic.clientId, Math.floor(Date.now() / 1000) + 3600) // every token, new ones too
    kit.as.resetCounters()
    const res = await fetch(`${kit.api}/orders`)
    expect(res.status).toBe(401)
    expect(kit.as.counters().tokensIssued).toBe(1)
  })

  it('with a 4-second token lifetime, 30 s of requests never send an expired token and never wait on a refresh after the first token', async () => {
    const kit = await kitWith({ accessTokenTtlSeconds: 4 })
    const { session, fetch } = await bound(kit)
    const waits: number[] = []
    session.events.on('token.wait', (e) => waits.push(e.ms))
    const failures: string[] = []
    const end = Date.now() + 30_000
    let requests = 0
    while (Date.now() < end && requests < 2000) {
      const res = await fetch(`${kit.api}/orders`)
      requests++
      if (res.status !== 200) failures.push(`${res.status} ${res.headers.get('www-authenticate')}`)
      await res.arrayBuffer()
      await sleep(25)
    }
    expect(failures).toEqual([])
    expect(waits).toHaveLength(1) // only the very first token was waited for
    const seen = kit.rs.seen()
    expect(seen.length).toBeGreaterThan(200)
    // every request but the first nonce challenge verified, each with a token that had not expired when it arrived
    const bad = seen.filter((r) => r.error !== 'use_dpop_nonce' && !(r.status === 200 && r.exp !== undefined && r.exp * 1000 > Number(r.at)))
    expect(bad.slice(0, 3)).toEqual([])
    expect(kit.rs.counters().nonceChallenges).toBe(1) // (seen() keeps the last 1,000 requests only)
    expect(kit.rs.counters().invalidToken).toBe(0)
    const issued = kit.as.counters().tokensIssued
    expect(issued).toBeGreaterThanOrEqual(8) // refreshed all along
    expect(issued).toBeLessThanOrEqual(30 / 1.3 + 2) // but not in a loop: at most one per ~half lifetime
  }, 60_000)

  it('AS down for 10 s while the held token has 20 s left: zero failed requests, then a new token', async () => {
    const kit = await kitWith({ accessTokenTtlSeconds: 30 })
    const { session, fetch } = await bound(kit, { refresh: { jitter: 0 } }) // refresh at 75%: 22.5 s
    expect((await fetch(`${kit.api}/orders`)).status).toBe(200)
    const first = await session.token()
    await sleep(10_000 - (Date.now() - first.receivedAt)) // the token now has 20 s left
    await kit.as.stop()
    const failures: string[] = []
    const stopAt = Date.now()
    while (Date.now() - stopAt < 10_000) {
      const res = await fetch(`${kit.api}/orders`).catch((e: unknown) => ({ status: 0, error: e }))
      if (res.status !== 200) failures.push(String(res.status))
      await sleep(100)
    }
    await kit.as.start()
    // past the refresh point: the next requests refresh in the background, still without failing
    const recoverBy = Date.now() + 15_000
    while (Date.now() < recoverBy && (await session.token()).value === first.value) {
      const res = await fetch(`${kit.api}/orders`)
      if (res.status !== 200) failures.push(String(res.status))
      await sleep(100)
    }
    expect(failures).toEqual([])
    expect((await session.token()).value).not.toBe(first.value)
  }, 60_000)

  it('AS down past expiry: callers get ERR_TOKEN_UNAVAILABLE promptly, and the session recovers by itself', async () => {
    const kit = await kitWith({ accessTokenTtlSeconds: 2 })
    const { fetch } = await bound(kit, { backoff: { initialMs: 200, maxMs: 1_000 } })
    expect((await fetch(`${kit.api}/orders`)).status).toBe(200)
    await kit.as.stop()
    await sleep(2_100)
    for (let i = 0; i < 5; i++) {
      const started = Date.now()
      const err = await fetch(`${kit.api}/orders`).catch((e: unknown) => e)
      expect(Date.now() - started).toBeLessThan(2_000)
      expect(isBoundError(err, 'ERR_TOKEN_UNAVAILABLE')).toBe(true)
      expect((err as Error).cause).toBeDefined()
    }
    await kit.as.start()
    const until = Date.now() + 5_000
    let status = 0
    while (Date.now() < until && status !== 200) {
      status = await fetch(`${kit.api}/orders`).then((r) => r.status, () => 0)
      await sleep(100)
    }
    expect(status).toBe(200)
  }, 30_000)

  it.each([
    ['client_secret_basic', (k: Testkit) => ({ clientId: k.clients.secretBasic.clientId, clientAuth: clientSecretBasic(k.clients.secretBasic.clientSecret) })],
    ['client_secret_post', (k: Testkit) => ({ clientId: k.clients.secretPost.clientId, clientAuth: clientSecretPost(k.clients.secretPost.clientSecret) })],
    ['private_key_jwt', (k: Testkit) => ({ clientId: k.clients.privateKeyJwt.clientId, clientAuth: privateKeyJwt(k.clients.privateKeyJwt.privateJwk as never, { kid: k.clients.privateKeyJwt.kid }) })],
    ['tls_client_auth', (k: Testkit) => ({ clientId: k.clients.tlsClientAuth.clientId, clientAuth: tlsClientAuth(), clientCertificate: { cert: k.clients.tlsClientAuth.certificate.certPem, key: k.clients.tlsClientAuth.certificate.keyPem } })],
    ['self_signed_tls_client_auth', (k: Testkit) => ({ clientId: k.clients.selfSignedTlsClientAuth.clientId, clientAuth: selfSignedTlsClientAuth(), clientCertificate: { cert: k.clients.selfSignedTlsClientAuth.certificate.certPem, key: k.clients.selfSignedTlsClientAuth.certificate.keyPem } })],
  ] as [string, (k: Testkit) => { clientId: string; clientAuth: ClientAuth; clientCertificate?: { cert: string; key: string } }][])('client auth %s earns a token from the real AS', async (_name, make) => {
    const kit = kits[0] ?? (await kitWith())
    const options = make(kit)
    // certificate-bound clients get no DPoP key: oidc-provider allows one proof-of-possession mechanism per token
    const { fetch } = await bound(kit, options.clientCertificate ? { dpop: undefined, ...options } : options)
    const res = await fetch(`${kit.api}/orders`)
    expect(res.status).toBe(200)
  })
})
