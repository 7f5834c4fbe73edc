import { mkdtemp, rm, writeFile, rename } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startTestkit, type Testkit } from '@bound/testkit'
import { createBoundFetch } from '@bound/fetch'
import { clientSecretBasic, createSession, fromEnv, fromFile, jwtBearer, refreshToken, tokenExchange, type Grant, type Session } from '@bound/oauth'
import { generateDpopKey } from '@bound/dpop'

let kit: Testkit
let dir: string
const sessions: Session[] = []
beforeAll(async () => {
  kit = await startTestkit()
  dir = await mkdtemp(join(tmpdir(), 'bound-grants-'))
})
afterAll(async () => {
  await Promise.all(sessions.map((s) => s.close()))
  await kit?.close()
  await rm(dir, { recursive: true, force: true })
})

async function sessionWith(grant: Grant, over: Record<string, unknown> = {}) {
  const c = kit.clients.secretBasic
  const session = createSession({ issuer: kit.issuer, clientId: c.clientId, clientAuth: clientSecretBasic(c.clientSecret), grant, dpop: await generateDpopKey(), ca: kit.ca, ...over })
  sessions.push(session)
  return { session, fetch: createBoundFetch({ session, origins: [kit.api] }) }
}

describe('grants against the real AS (issue 4)', () => {
  it('TXE-01: token exchange reads a rotating subject-token file on every exchange (Kubernetes projected token)', async () => {
    const file = join(dir, 'token')
    await writeFile(file, await kit.workloadIdentity.mintToken({ sub: 'system:serviceaccount:ci:first' }))
    const { session, fetch } = await sessionWith(tokenExchange({ subjectToken: fromFile(file), resource: kit.resource }))
    expect(await (await fetch(`${kit.api}/orders`)).json()).toMatchObject({ binding: 'dpop', sub: 'system:serviceaccount:ci:first' })
    // the kubelet rotates the file (atomic rename); the next exchange uses the new token
    await writeFile(`${file}.new`, await kit.workloadIdentity.mintToken({ sub: 'system:serviceaccount:ci:second' }))
    await rename(`${file}.new`, file)
    await session.forceRefresh()
    expect(await (await fetch(`${kit.api}/orders`)).json()).toMatchObject({ sub: 'system:serviceaccount:ci:second' })
    expect(kit.as.counters().byGrant['urn:ietf:params:oauth:grant-type:token-exchange']).toBeGreaterThanOrEqual(2)
  })

  it('token exchange with a subject token the AS refuses is ERR_TOKEN_ENDPOINT invalid_grant', async () => {
    const { fetch } = await sessionWith(tokenExchange({ subjectToken: await kit.workloadIdentity.mintToken({ aud: 'https://someone-else.example' }), resource: kit.resource }))
    await expect(fetch(`${kit.api}/orders`)).rejects.toMatchObject({ code: 'ERR_TOKEN_ENDPOINT', error: 'invalid_grant' })
  })

  it('JWTA-05: the JWT bearer grant with an assertion from an env var', async () => {
    const env = { WORKLOAD_JWT: await kit.workloadIdentity.mintToken({ sub: 'wif:job-7' }) }
    const { fetch } = await sessionWith(jwtBearer({ assertion: fromEnv('WORKLOAD_JWT', env), resource: kit.resource }))
    expect(await (await fetch(`${kit.api}/orders`)).json()).toMatchObject({ binding: 'dpop', sub: 'wif:job-7' })
  })

  it('JWTA-05: a refused assertion is not retried with the same assertion', async () => {
    kit.as.resetCounters()
    const expired = await kit.workloadIdentity.mintToken({ ttlSeconds: -60 })
    const { fetch } = await sessionWith(jwtBearer({ assertion: expired, resource: kit.resource }))
    await expect(fetch(`${kit.api}/orders`)).rejects.toMatchObject({ error: 'invalid_grant' })
    const after = kit.as.counters()
    expect(after.tokenRequests - after.nonceChallenges).toBe(1)
    await expect(fetch(`${kit.api}/orders`)).rejects.toMatchObject({ error: 'invalid_grant' }) // the same error, no new request during back-off
    expect(kit.as.counters().tokenRequests).toBe(after.tokenRequests)
    await new Promise((r) => setTimeout(r, 1_200)) // past the back-off: still the refused assertion, still not sent
    await expect(fetch(`${kit.api}/orders`)).rejects.toMatchObject({ error: 'invalid_grant' })
    expect(kit.as.counters().tokenRequests).toBe(after.tokenRequests)
  })

  it('JWTA-05: a new assertion (the file rotated) is sent after a refused one', async () => {
    let current = await kit.workloadIdentity.mintToken({ ttlSeconds: -60 })
    const { fetch } = await sessionWith(jwtBearer({ assertion: () => current, resource: kit.resource }), { backoff: { initialMs: 50, maxMs: 50 } })
    await expect(fetch(`${kit.api}/orders`)).rejects.toMatchObject({ error: 'invalid_grant' })
    current = await kit.workloadIdentity.mintToken({ sub: 'wif:rotated' })
    await new Promise((r) => setTimeout(r, 100))
    expect(await (await fetch(`${kit.api}/orders`)).json()).toMatchObject({ sub: 'wif:rotated' })
  })

  it('GRANT-05/06: refresh tokens rotate; the old one is never sent again; the new one is handed to onRefreshToken first', async () => {
    kit.as.resetCounters()
    const seen: string[] = []
    const { session, fetch } = await sessionWith(tokenExchange({ subjectToken: () => kit.workloadIdentity.mintToken(), resource: kit.resource, scope: 'orders:read offline_access' }), { onRefreshToken: (rt: string) => void seen.push(rt) })
    expect((await fetch(`${kit.api}/orders`)).status).toBe(200)
    for (let i = 0; i < 3; i++) {
      await session.forceRefresh()
      expect((await fetch(`${kit.api}/orders`)).status).toBe(200)
    }
    expect(new Set(seen).size).toBe(4)
    expect(kit.as.counters()).toMatchObject({ refreshReuseDetected: 0 })
    expect(kit.as.counters().byGrant.refresh_token).toBe(3)
  })

  it('refreshToken(): a session that starts from a refresh token; invalid_grant ends it with a clear error', async () => {
    let first: string | undefined
    const { session: seed, fetch: seedFetch } = await sessionWith(tokenExchange({ subjectToken: () => kit.workloadIdentity.mintToken(), resource: kit.resource, scope: 'orders:read offline_access' }), { onRefreshToken: (rt: string) => void (first ??= rt) })
    expect((await seedFetch(`${kit.api}/orders`)).status).toBe(200)
    await seed.close()
    const { session, fetch } = await sessionWith(refreshToken({ refreshToken: first!, resource: kit.resource }))
    expect((await fetch(`${kit.api}/orders`)).status).toBe(200)
    // the original refresh token was rotated away by that use; a second session holding it trips reuse detection
    const { fetch: stale } = await sessionWith(refreshToken({ refreshToken: first!, resource: kit.resource }))
    await expect(stale(`${kit.api}/orders`)).rejects.toMatchObject({ code: 'ERR_TOKEN_ENDPOINT', error: 'invalid_grant' })
    expect(kit.as.counters().refreshReuseDetected).toBeGreaterThanOrEqual(1)
    await session.close()
  })

  it('close({ revoke: true }) revokes what the session held (RFC 7009): the RS rejects the token afterwards', async () => {
    const { session, fetch } = await sessionWith(tokenExchange({ subjectToken: () => kit.workloadIdentity.mintToken(), resource: kit.resource }))
    expect((await fetch(`${kit.api}/orders`)).status).toBe(200)
    const token = await session.token()
    const revoked: string[] = []
    session.events.on('token.revoked', (e) => revoked.push(e.hint))
    await session.close({ revoke: true })
    expect(revoked).toEqual(['access_token'])
    const res = await session.transport.fetch(`${kit.api}/orders`, { headers: { authorization: `DPoP ${token.value}` } }).catch(() => undefined)
    // the session's transport is closed with it; ask with a fresh client instead
    expect(res).toBeUndefined()
    const { createTransport } = await import('@bound/http')
    const probe = createTransport({ ca: kit.ca })
    const proof = await session.dpop!.proof('GET', `${kit.api}/orders`, { accessToken: token.value })
    const after = await probe.fetch(`${kit.api}/orders`, { headers: { authorization: `DPoP ${token.value}`, dpop: proof } })
    expect(after.status).toBe(401)
    expect(after.headers.get('www-authenticate')).toMatch(/invalid_token/)
    expect(kit.as.counters().revocations).toBeGreaterThanOrEqual(1)
    await probe.close()
    await expect(session.token()).rejects.toMatchObject({ code: 'ERR_CLOSED' })
  })
})
