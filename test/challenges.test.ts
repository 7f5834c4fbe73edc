import { Readable } from 'node:stream'
import { withLoopbackServer } from './support/loopback-server.js'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { startTestkit, type Testkit } from '@bound/testkit'
import { createBoundFetch, getChallenges, type BoundFetchOptions } from '@bound/fetch'
import { clientCredentials, clientSecretBasic, createSession, type Session, type SessionOptions } from '@bound/oauth'
import { generateDpopKey } from '@bound/dpop'

let kit: Testkit
const sessions: Session[] = []
beforeAll(async () => {
  kit = await startTestkit()
})
beforeEach(() => {
  kit.rs.clearStepUp()
  kit.rs.clearClaims()
  kit.rs.clearScope()
  kit.rs.clearRevocations()
  kit.as.setFault(undefined)
})
afterAll(async () => {
  await Promise.all(sessions.map((s) => s.close()))
  await kit?.close()
})

async function bound(fetchOptions: Partial<BoundFetchOptions> = {}, over: Partial<SessionOptions> = {}) {
  const c = kit.clients.secretBasic
  const session = createSession({ issuer: kit.issuer, clientId: c.clientId, clientAuth: clientSecretBasic(c.clientSecret), grant: clientCredentials({ resource: kit.resource }), dpop: await generateDpopKey(), ca: kit.ca, ...over })
  sessions.push(session)
  return { session, fetch: createBoundFetch({ session, origins: [kit.api], ...fetchOptions }) }
}

describe('every server challenge handled (issue 6)', () => {
  it('STEP-01 T-6 V11: without onStepUp, a step-up challenge is returned with ERR_STEP_UP_REQUIRED', async () => {
    kit.rs.requireStepUp('/admin', { acr_values: 'urn:bound:mfa' })
    const { fetch } = await bound()
    const res = await fetch(`${kit.api}/admin/users`)
    expect(res.status).toBe(401)
    const [challenge] = getChallenges(res)
    expect(challenge).toMatchObject({ kind: 'step-up', acrValues: ['urn:bound:mfa'], boundError: { code: 'ERR_STEP_UP_REQUIRED' } })
  })

  it('STEP-03/04/05: onStepUp is called once for 100 concurrent requests on the same level; the stepped-up token is reused later', async () => {
    kit.rs.requireStepUp('/admin', { acr_values: 'urn:bound:mfa' })
    let calls = 0
    const { fetch } = await bound({
      onStepUp: async (c) => {
        calls++
        await new Promise((r) => setTimeout(r, 50)) // a human takes a moment
        return { acr_values: c.acrValues!.join(' ') }
      },
    })
    expect((await fetch(`${kit.api}/orders`)).status).toBe(200)
    kit.rs.resetCounters()
    const statuses = await Promise.all(Array.from({ length: 100 }, () => fetch(`${kit.api}/admin/users`).then((r) => r.status)))
    expect(statuses.every((s) => s === 200)).toBe(true)
    expect(calls).toBe(1)
    const challenged = kit.rs.counters().stepUpChallenges
    expect(await (await fetch(`${kit.api}/admin/users`)).json()).toMatchObject({ acr: 'urn:bound:mfa' })
    expect(await (await fetch(`${kit.api}/admin/other`)).json()).toMatchObject({ acr: 'urn:bound:mfa' }) // same level, another path: no new onStepUp
    expect(calls).toBe(1)
    expect(kit.rs.counters().stepUpChallenges).toBe(challenged + 1) // the new path was challenged once, answered from memory
  })

  it('a declined step-up returns the response with ERR_STEP_UP_REQUIRED and no retry loop', async () => {
    kit.rs.requireStepUp('/admin', { acr_values: 'urn:bound:mfa' })
    let calls = 0
    const { fetch } = await bound({ onStepUp: () => { calls++; return false } })
    kit.rs.resetCounters()
    const res = await fetch(`${kit.api}/admin/x`)
    expect(res.status).toBe(401)
    expect(getChallenges(res)[0]?.boundError?.message).toMatch(/declined/)
    expect(calls).toBe(1)
    expect(kit.rs.counters().requests).toBeLessThanOrEqual(2) // (a nonce challenge may come first)
  })

  it('onStepUp may return a token set obtained by the application itself', async () => {
    kit.rs.requireStepUp('/admin', { acr_values: 'urn:bound:mfa' })
    const { session: helper } = await bound()
    const stepped = await helper.token({ stepUp: { origin: kit.api, level: 'mfa', params: { acr_values: 'urn:bound:mfa' } } })
    const { session, fetch } = await bound({ onStepUp: () => ({ access_token: stepped.value, token_type: 'DPoP', expires_in: 300 }) }, {})
    // the token set must be bound to this session's key: reuse the helper's key for this test
    session.rotateDpopKey(helper.dpop!.key)
    const res = await fetch(`${kit.api}/admin/x`)
    expect(await res.json()).toMatchObject({ acr: 'urn:bound:mfa' })
  })

  it('CAE-03 T-12: insufficient_claims → a token request with the claims (and capabilities), cache bypassed, one retry', async () => {
    kit.rs.requireClaims('/payments', { access_token: { acrs: { essential: true, value: 'cp1' } } })
    const { fetch } = await bound({ clientCapabilities: ['cp1'] })
    expect((await fetch(`${kit.api}/orders`)).status).toBe(200)
    kit.as.resetCounters()
    const res = await fetch(`${kit.api}/payments`)
    expect(res.status).toBe(200)
    expect(await res.json()).toMatchObject({ ok: true })
    expect(kit.as.counters().tokensIssued).toBe(1)
  })

  it('CAE-01: the session’s clientCapabilities go on every token request — the first, a refresh, a claims challenge’s (merged), a step-up’s', async () => {
    const payload = (t: { value: string }) => JSON.parse(Buffer.from(t.value.split('.')[1]!, 'base64url').toString()) as Record<string, unknown>
    const { fetch, session } = await bound({ onStepUp: (c) => ({ acr_values: c.acrValues!.join(' ') }) }, { clientCapabilities: ['cp1'] })
    expect(payload(await session.token()).xms_cc).toEqual(['cp1'])
    expect(payload(await session.forceRefresh()).xms_cc).toEqual(['cp1'])
    // a claims challenge: its claims and the capabilities in one request
    kit.rs.requireClaims('/payments', { access_token: { acrs: { essential: true, value: 'c2' } } })
    expect((await fetch(`${kit.api}/payments`)).status).toBe(200)
    expect(payload(await session.token())).toMatchObject({ acrs: 'c2', xms_cc: ['cp1'] })
    // a step-up's token too
    kit.rs.requireStepUp('/admin', { acr_values: 'urn:bound:mfa' })
    expect(await (await fetch(`${kit.api}/admin/x`)).json()).toMatchObject({ acr: 'urn:bound:mfa', xms_cc: ['cp1'] })
    // without the option, nothing is declared
    const plain = await bound()
    expect(payload(await plain.session.token()).xms_cc).toBeUndefined()
  })

  it('T-7 S9 MCP-05: insufficient_scope → the union of held and required scopes, once', async () => {
    kit.rs.requireScope('/write', 'orders:write')
    const { fetch, session } = await bound({}, { grant: clientCredentials({ resource: kit.resource, scope: 'orders:read' }) })
    expect((await fetch(`${kit.api}/orders`)).status).toBe(200)
    const res = await fetch(`${kit.api}/write/1`, { method: 'POST', body: '{}' })
    expect(res.status).toBe(200)
    expect((await session.token({ scope: 'orders:read orders:write' })).scope).toBe('orders:read orders:write')
  })

  it('an insufficient_scope that the union cannot fix is returned after one try', async () => {
    kit.rs.requireScope('/write', 'admin:everything')
    const { fetch } = await bound()
    kit.rs.resetCounters()
    const res = await fetch(`${kit.api}/write/1`)
    expect([403, 400]).toContain(res.status)
    expect(kit.rs.counters().requests).toBeLessThanOrEqual(3)
  })

  it('T-7 S7: a second invalid_token returns the response with ERR_SESSION_REVOKED attached', async () => {
    const { fetch } = await bound()
    expect((await fetch(`${kit.api}/orders`)).status).toBe(200)
    kit.rs.revokeClient(kit.clients.secretBasic.clientId, Math.floor(Date.now() / 1000) + 3600)
    const res = await fetch(`${kit.api}/orders`)
    expect(res.status).toBe(401)
    expect(getChallenges(res).find((c) => c.kind === 'invalid-token')?.boundError?.code).toBe('ERR_SESSION_REVOKED')
  })

  it('T-7 S10 PRM-01/04: a session with no issuer learns the AS and the resource from the RS (RFC 9728) and sends the resource verbatim', async () => {
    const c = kit.clients.secretBasic
    // (a confidential client follows the metadata only to an AS it trusts: see test/leaks)
    const session = createSession({ clientId: c.clientId, clientAuth: clientSecretBasic(c.clientSecret), grant: clientCredentials(), dpop: await generateDpopKey(), ca: kit.ca, trustedIssuers: [kit.issuer] })
    sessions.push(session)
    const fetch = createBoundFetch({ session, origins: [kit.api], resourceMetadata: { match: 'prefix' } })
    const res = await fetch(`${kit.api}/orders`)
    expect(res.status).toBe(200)
    expect(session.issuer).toBe(kit.issuer)
    // the token the fetch used was earned for the metadata's resource, verbatim (a cache hit here)
    const issued = kit.as.counters().tokensIssued
    const token = await session.token({ resource: kit.resource })
    expect(kit.as.counters().tokensIssued).toBe(issued)
    expect(JSON.parse(Buffer.from(token.value.split('.')[1]!, 'base64url').toString()).aud).toBe(kit.resource)
    // strict RFC 9728 §3.3 matching refuses a document for a different resource than the URL asked for
    const strictSession = createSession({ clientId: c.clientId, clientAuth: clientSecretBasic(c.clientSecret), grant: clientCredentials(), dpop: await generateDpopKey(), ca: kit.ca, trustedIssuers: [kit.issuer] })
    sessions.push(strictSession)
    await expect(createBoundFetch({ session: strictSession, origins: [kit.api] })(`${kit.api}/orders`)).rejects.toMatchObject({ code: 'ERR_DISCOVERY', message: expect.stringContaining("match: 'prefix'") })
  })

  it('PRM-11: a resource_metadata URL on another host is not followed', async () => {
    await withLoopbackServer((_req, res) => void res.writeHead(401, { 'www-authenticate': 'Bearer resource_metadata="https://169.254.169.254/latest/meta-data"' }).end(), async (origin) => {
      const c = kit.clients.secretBasic
      const session = createSession({ clientId: c.clientId, clientAuth: clientSecretBasic(c.clientSecret), grant: clientCredentials(), dpop: await generateDpopKey(), ca: kit.ca })
      sessions.push(session)
      await expect(createBoundFetch({ session, origins: [origin] })(`${origin}/x`)).rejects.toMatchObject({ code: 'ERR_DISCOVERY', message: expect.stringContaining('not followed') })
    })
  })

  it('a hostile RS that answers invalid_token forever costs exactly one extra attempt', async () => {
    let hits = 0
    await withLoopbackServer((_req, res) => {
      hits++
      res.writeHead(401, { 'www-authenticate': 'DPoP error="invalid_token"' }).end()
    }, async (origin) => {
      const { session } = await bound()
      const res = await createBoundFetch({ session, origins: [origin] })(`${origin}/x`)
      expect(res.status).toBe(401)
      expect(hits).toBe(2)
    })
  })

  it('DPOP-30: a stream body that meets a challenge is sent once and the response returned as it is', async () => {
    const { fetch } = await bound()
    kit.rs.rotateNonce() // the first request will be challenged
    kit.rs.resetCounters()
    const res = await fetch(`${kit.api}/orders`, { method: 'POST', body: Readable.from([Buffer.from('once')]) as never, duplex: 'half' } as RequestInit)
    expect(res.status).toBe(401)
    expect(getChallenges(res)[0]?.kind).toBe('dpop-nonce')
    expect(kit.rs.counters().requests).toBe(1)
  })

  it('AbortSignal aborts a token wait promptly with its reason (the AS hangs)', async () => {
    const { fetch } = await bound()
    kit.as.setFault({ kind: 'hang' })
    const started = Date.now()
    const reason = new Error('caller gave up')
    const ac = new AbortController()
    setTimeout(() => ac.abort(reason), 200)
    await expect(fetch(`${kit.api}/orders`, { signal: ac.signal })).rejects.toBe(reason)
    expect(Date.now() - started).toBeLessThan(2_000)
    kit.as.setFault(undefined)
  })
})
