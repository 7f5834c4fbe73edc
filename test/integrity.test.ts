import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startTestkit, type Testkit } from '@bound/testkit'
import { createBoundFetch } from '@bound/fetch'
import { clientCredentials, clientSecretBasic, createSession, fromGitHubActions, tokenExchange, type Session, type SessionOptions } from '@bound/oauth'
import { generateDpopKey } from '@bound/dpop'
import { createTransport } from '@bound/http'

let kit: Testkit
const sessions: Session[] = []
beforeAll(async () => {
  kit = await startTestkit()
})
afterAll(async () => {
  await Promise.all(sessions.map((s) => s.close()))
  await kit?.close()
})
async function bound(over: Partial<SessionOptions> = {}) {
  const c = kit.clients.secretBasic
  const session = createSession({ issuer: kit.issuer, clientId: c.clientId, clientAuth: clientSecretBasic(c.clientSecret), grant: clientCredentials({ resource: kit.resource }), dpop: await generateDpopKey(), ca: kit.ca, ...over })
  sessions.push(session)
  return { session, fetch: createBoundFetch({ session, origins: [kit.api] }) }
}

describe('session integrity beyond the token (issue 9)', () => {
  it.each(['fingerprint', 'workload-id'] as const)('a changed %s drops the old context’s tokens before the next request: one new token per change', async (element) => {
    let value = 'v1'
    const context = element === 'fingerprint' ? { fingerprint: () => value } : { workloadId: () => value }
    const { session, fetch } = await bound({ context })
    const changes: string[] = []
    session.events.on('context.changed', (e) => changes.push(e.element))
    expect((await fetch(`${kit.api}/orders`)).status).toBe(200)
    const before = await session.token()
    kit.as.resetCounters()
    kit.rs.resetCounters()
    value = 'v2' // e.g. the egress network or the deployment revision changed
    for (let i = 0; i < 5; i++) expect((await fetch(`${kit.api}/orders`)).status).toBe(200)
    expect(changes).toEqual([element])
    expect(kit.as.counters().tokensIssued).toBe(1)
    expect(kit.rs.seen().some((r) => r.tokenJti !== undefined && (r as { tokenJti?: string }).tokenJti === (JSON.parse(Buffer.from(before.value.split('.')[1]!, 'base64url').toString()) as { jti: string }).jti)).toBe(false)
  })

  it('session.rotate(): a new DPoP key, tokens dropped, and the old ones revoked (the RS refuses them)', async () => {
    const { session, fetch } = await bound()
    expect((await fetch(`${kit.api}/orders`)).status).toBe(200)
    const old = await session.token()
    const oldKey = session.dpop!.key
    await session.rotate()
    expect(session.dpop!.jkt).not.toBe(oldKey.jkt)
    expect(await (await fetch(`${kit.api}/orders`)).json()).toMatchObject({ jkt: session.dpop!.jkt })
    // the old token, even with a proof of the old key, is refused now
    const probe = createTransport({ ca: kit.ca })
    const { createDpop } = await import('@bound/dpop')
    const oldDpop = createDpop({ key: oldKey })
    oldDpop.nonces.set(new URL(kit.api).origin, kit.rs.currentNonce()!)
    const res = await probe.fetch(`${kit.api}/orders`, { headers: { authorization: `DPoP ${old.value}`, dpop: await oldDpop.proof('GET', `${kit.api}/orders`, { accessToken: old.value }) } })
    expect(res.status).toBe(401)
    expect(res.headers.get('www-authenticate')).toMatch(/invalid_token/)
    await probe.close()
  })

  it('posture: unhealthy → no credentialed request leaves the process, ERR_POSTURE_UNHEALTHY; healthy again → requests succeed without a restart', async () => {
    let healthy = true
    const { fetch } = await bound({ posture: () => ({ healthy, reason: healthy ? undefined : 'disk encryption off' }), postureIntervalMs: 0, revokeWhenUnhealthy: true })
    expect((await fetch(`${kit.api}/orders`)).status).toBe(200)
    healthy = false
    kit.rs.resetCounters()
    kit.as.resetCounters()
    for (let i = 0; i < 3; i++) await expect(fetch(`${kit.api}/orders`)).rejects.toMatchObject({ code: 'ERR_POSTURE_UNHEALTHY', message: expect.stringContaining('disk encryption off') })
    expect(kit.rs.counters().requests).toBe(0)
    expect(kit.as.counters().tokenRequests).toBe(0)
    await new Promise((r) => setTimeout(r, 50))
    expect(kit.as.counters().revocations).toBe(1) // the held token was revoked
    healthy = true
    expect((await fetch(`${kit.api}/orders`)).status).toBe(200)
  })

  it('a CI job: the GitHub Actions OIDC token exchanged for a bound token; `await using` ends the session and revokes its token', async () => {
    const jobToken = await kit.workloadIdentity.mintToken({ sub: 'repo:acme/shop:ref:refs/heads/main' })
    const runner = createServer((req, res) => {
      const u = new URL(req.url ?? '/', 'http://x')
      if (req.headers.authorization !== 'Bearer runner-secret' || u.searchParams.get('audience') !== kit.issuer) return void res.writeHead(403).end()
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ value: jobToken }))
    })
    await new Promise<void>((r) => runner.listen(0, '127.0.0.1', r))
    const env = { ACTIONS_ID_TOKEN_REQUEST_URL: `http://127.0.0.1:${(runner.address() as AddressInfo).port}/token?api-version=2.0`, ACTIONS_ID_TOKEN_REQUEST_TOKEN: 'runner-secret' }
    let token: string
    let dpopKey
    {
      const c = kit.clients.secretBasic
      await using session = createSession({ issuer: kit.issuer, clientId: c.clientId, clientAuth: clientSecretBasic(c.clientSecret), grant: tokenExchange({ subjectToken: fromGitHubActions({ audience: kit.issuer, env }), resource: kit.resource }), dpop: await generateDpopKey(), ca: kit.ca })
      const fetch = createBoundFetch({ session, origins: [kit.api] })
      expect(await (await fetch(`${kit.api}/deploy`, { method: 'POST', body: '{}' })).json()).toMatchObject({ sub: 'repo:acme/shop:ref:refs/heads/main', binding: 'dpop' })
      token = (await session.token()).value
      dpopKey = session.dpop!.key
    }
    // the job ended: its token is refused by the RS
    const probe = createTransport({ ca: kit.ca })
    const { createDpop } = await import('@bound/dpop')
    const d = createDpop({ key: dpopKey! })
    d.nonces.set(new URL(kit.api).origin, kit.rs.currentNonce()!)
    const res = await probe.fetch(`${kit.api}/deploy`, { headers: { authorization: `DPoP ${token!}`, dpop: await d.proof('GET', `${kit.api}/deploy`, { accessToken: token! }) } })
    expect(res.status).toBe(401)
    await probe.close()
    await new Promise((r) => runner.close(r))
  })
})
