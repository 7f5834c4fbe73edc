import { createServer as createHttpsServer, type Server } from 'node:https'
import { Readable } from 'node:stream'
import { inspect } from 'node:util'
import type { AddressInfo } from 'node:net'
import { withLoopbackServer } from './support/loopback-server.js'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startTestkit, type Testkit } from '@bound/testkit'
import { createBoundFetch, getChallenges } from '@bound/fetch'
import { clientCredentials, clientSecretBasic, createSession, tlsClientAuth, type Session, type SessionOptions } from '@bound/oauth'
import { generateDpopKey } from '@bound/dpop'

let kit: Testkit
let other: Server
let otherOrigin: string
const otherSeen: { path: string; authorization?: string; dpop?: string; peerSubject?: string }[] = []
const sessions: Session[] = []

beforeAll(async () => {
  kit = await startTestkit()
  // a second HTTPS origin, not in `origins`, that asks every client for a certificate and records what it got
  other = createHttpsServer({ key: kit.pki.server.keyPem, cert: kit.pki.server.certPem, requestCert: true, rejectUnauthorized: false }, (req, res) => {
    const peer = (req.socket as import('node:tls').TLSSocket).getPeerCertificate()
    otherSeen.push({ path: req.url ?? "", authorization: req.headers.authorization, dpop: req.headers.dpop as string | undefined, peerSubject: peer?.subject?.CN as string | undefined })
    res.writeHead(200, { 'content-type': 'application/json' }).end('{"other":true}')
  })
  await new Promise<void>((r) => other.listen(0, '127.0.0.1', r))
  otherOrigin = `https://127.0.0.1:${(other.address() as AddressInfo).port}`
  kit.rs.route('/redirect-away', ({ res }) => void res.writeHead(302, { location: `${otherOrigin}/landed` }).end())
  kit.rs.route('/redirect-here', ({ res, req }) => void res.writeHead(307, { location: `/orders/after-redirect` }).end(req.method))
  kit.rs.route('/see-other', ({ res }) => void res.writeHead(303, { location: `/orders/after-303` }).end())
})
afterAll(async () => {
  await Promise.all(sessions.map((s) => s.close()))
  await new Promise((r) => other?.close(r))
  await kit?.close()
})

async function bound(over: Partial<SessionOptions> = {}, fetchOptions: { otherOrigins?: 'plain' | 'error' } = {}) {
  const c = kit.clients.secretBasic
  const session = createSession({ issuer: kit.issuer, clientId: c.clientId, clientAuth: clientSecretBasic(c.clientSecret), grant: clientCredentials({ resource: kit.resource }), dpop: await generateDpopKey(), ca: kit.ca, ...over })
  sessions.push(session)
  return { session, fetch: createBoundFetch({ session, origins: [kit.api], ...fetchOptions }) }
}

describe('the bound fetch behaves like fetch, and credentials stay where they belong', () => {
  it('returns a global Response', async () => {
    const { fetch } = await bound()
    const res = await fetch(`${kit.api}/orders`)
    expect(res).toBeInstanceOf(Response)
    expect(res.headers).toBeInstanceOf(Headers)
    expect(res.url).toBe(`${kit.api}/orders`)
  })

  it('DPOP-04: htm is the method as sent, for standard and non-standard methods', async () => {
    // (Node's HTTP parser refuses lower-case methods, so the lower-case rule is pinned in the dpop unit tests.)
    const { fetch } = await bound()
    for (const method of ['PURGE', 'PATCH', 'delete', 'options']) {
      const res = await fetch(`${kit.api}/orders`, { method })
      expect(res.status).toBe(200)
      expect(await res.json()).toMatchObject({ method: method.toUpperCase() })
    }
  })

  it('sends a Node Readable body (once) instead of "[object Object]"', async () => {
    const { fetch } = await bound()
    expect((await fetch(`${kit.api}/warm`)).status).toBe(200) // nonce learned: the stream is not challenged
    const res = await fetch(`${kit.api}/orders`, { method: 'POST', body: Readable.from([Buffer.from('hello '), Buffer.from('world')]) as never, duplex: 'half' } as RequestInit)
    expect(await res.json()).toMatchObject({ body: 'hello world' })
  })

  it('DPOP-29: a cross-origin redirect reaches the other origin with neither Authorization nor DPoP', async () => {
    const { fetch } = await bound()
    otherSeen.length = 0
    const res = await fetch(`${kit.api}/redirect-away`)
    expect(res.status).toBe(200)
    expect(res.redirected).toBe(true)
    expect(otherSeen).toEqual([{ path: '/landed', authorization: undefined, dpop: undefined, peerSubject: undefined }])
  })

  it("otherOrigins: 'error' also holds for redirects", async () => {
    const { fetch } = await bound({}, { otherOrigins: 'error' })
    otherSeen.length = 0
    await expect(fetch(`${kit.api}/redirect-away`)).rejects.toMatchObject({ code: 'ERR_ORIGIN_NOT_ALLOWED' })
    expect(otherSeen).toEqual([])
  })

  it('H10/H11: a same-origin 307 keeps method and body with a new proof; a 303 turns a POST into a GET', async () => {
    const { fetch } = await bound()
    kit.rs.resetCounters()
    const r307 = await fetch(`${kit.api}/redirect-here`, { method: 'PUT', body: 'payload' })
    expect(await r307.json()).toMatchObject({ method: 'PUT', path: '/orders/after-redirect', body: 'payload' })
    const r303 = await fetch(`${kit.api}/see-other`, { method: 'POST', body: 'x' })
    expect(await r303.json()).toMatchObject({ method: 'GET', path: '/orders/after-303' })
    expect(kit.rs.counters()).toMatchObject({ rejectedProofs: 0, replayedJti: 0 })
    expect(kit.rs.counters().lastProof?.payload).toMatchObject({ htm: 'GET', htu: `${kit.api}/orders/after-303` })
  })

  it('a stream body that meets a 307 gets the redirect back, with a readable body', async () => {
    const { fetch } = await bound()
    expect((await fetch(`${kit.api}/warm`)).status).toBe(200)
    const res = await fetch(`${kit.api}/redirect-here`, { method: 'PUT', body: Readable.from([Buffer.from('s')]) as never, duplex: 'half' } as RequestInit)
    expect(res.status).toBe(307)
    expect(await res.text()).toBe('PUT')
  })

  it('MTLS: the client certificate is presented to the AS and the APIs, never to other origins', async () => {
    const c = kit.clients.tlsClientAuth
    const session = createSession({ issuer: kit.issuer, clientId: c.clientId, clientAuth: tlsClientAuth(), grant: clientCredentials({ resource: kit.resource }), clientCertificate: { cert: c.certificate.certPem, key: c.certificate.keyPem }, ca: kit.ca })
    sessions.push(session)
    const fetch = createBoundFetch({ session, origins: [kit.api] })
    const ok = await fetch(`${kit.api}/orders`)
    expect(await ok.json()).toMatchObject({ binding: 'mtls', x5t: c.certificate.x5tS256 })
    otherSeen.length = 0
    expect((await fetch(`${otherOrigin}/plain`)).status).toBe(200)
    expect(otherSeen).toEqual([{ path: '/plain', authorization: undefined, dpop: undefined, peerSubject: undefined }])
    // and no key material is reachable by inspecting the session
    const seen = inspect(session, { depth: 12, showHidden: false }) + JSON.stringify(session)
    expect(seen).not.toContain('PRIVATE KEY')
    expect(seen).not.toContain(c.certificate.keyPem.split('\n')[1]!)
  })

  it('DPOP-20 T-7 S6: a nonce challenge carrying an invalid nonce is not retried', async () => {
    let hits = 0
    await withLoopbackServer((_req, res) => {
      hits++
      res.writeHead(401, { 'www-authenticate': 'DPoP error="use_dpop_nonce"', 'dpop-nonce': 'has space' }).end()
    }, async (origin) => {
      const { session } = await bound()
      const fetch = createBoundFetch({ session, origins: [origin] })
      const res = await fetch(`${origin}/x`)
      expect(res.status).toBe(401)
      expect(hits).toBe(1)
      expect(getChallenges(res)[0]).toMatchObject({ kind: 'dpop-nonce' })
    })
  })

  it('DPOP-22 T-7 S13: an RS that always asks for a fresh nonce gets exactly one retry', async () => {
    let hits = 0
    await withLoopbackServer((_req, res) => {
      hits++
      res.writeHead(401, { 'www-authenticate': 'DPoP error="use_dpop_nonce"', 'dpop-nonce': `n-${hits}` }).end()
    }, async (origin) => {
      const { session } = await bound()
      const res = await createBoundFetch({ session, origins: [origin] })(`${origin}/x`)
      expect(res.status).toBe(401)
      expect(hits).toBe(2)
    })
  })

  it('configuration errors never echo userinfo secrets', async () => {
    const { session } = await bound()
    let err: unknown
    try {
      createBoundFetch({ session, origins: ['http://svc:hunter2@api.internal'] })
    } catch (e) {
      err = e
    }
    expect(err).toMatchObject({ code: 'ERR_INVALID_CONFIG' }) // user information is refused before the scheme is looked at (more in test/leaks)
    expect(String((err as Error).message)).not.toContain('hunter2')
  })
})
