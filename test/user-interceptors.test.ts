// Issue 14 — the user's own undici interceptors composed beneath Bound (NET-04): they see every
// request Bound makes, yet the client certificate still goes only to credentialed requests, a
// rotation still makes a new generation, and a redirect interceptor beneath Bound never carries
// credentials anywhere (Bound follows redirects itself, dropping them across origins).
import { copyFile, mkdtemp, rm } from 'node:fs/promises'
import { createServer as createHttpsServer, type Server } from 'node:https'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { AddressInfo } from 'node:net'
import type { TLSSocket } from 'node:tls'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { interceptors, type Dispatcher } from 'undici'
import { startTestkit, type Testkit } from '@bound/testkit'
import { createBoundFetch } from '@bound/fetch'
import { clientCredentials, clientSecretBasic, createSession, tlsClientAuth } from '@bound/oauth'
import { generateDpopKey } from '@bound/dpop'
import { loadClientCertificate } from '@bound/mtls'

let kit: Testkit
let other: Server
let otherOrigin: string
const otherSeen: { path: string; authorization: string | undefined; peer: string | undefined }[] = []
beforeAll(async () => {
  kit = await startTestkit()
  other = createHttpsServer({ key: kit.pki.server.keyPem, cert: kit.pki.server.certPem, requestCert: true, rejectUnauthorized: false }, (req, res) => {
    const peer = (req.socket as TLSSocket).getPeerCertificate()
    otherSeen.push({ path: req.url ?? '', authorization: req.headers.authorization, peer: (peer?.subject?.CN as string | undefined) ?? undefined })
    res.end('other')
  })
  await new Promise<void>((r) => other.listen(0, '127.0.0.1', r))
  otherOrigin = `https://localhost:${(other.address() as AddressInfo).port}`
})
afterAll(async () => {
  await new Promise((r) => other?.close(r))
  await kit?.close()
})

/** An interceptor that records the origin and path of every dispatch it sees. */
function recorder(log: string[]): Dispatcher.DispatcherComposeInterceptor {
  return (dispatch) => (opts, handler) => {
    log.push(`${String(opts.origin)}${opts.path}`)
    return dispatch(opts, handler)
  }
}

describe('user interceptors beneath Bound (issue 14, NET-04)', () => {
  it('see the AS and API requests; the certificate still goes only to credentialed requests; dns interceptor works', async () => {
    const log: string[] = []
    const c = kit.clients.tlsClientAuth
    const session = createSession({ issuer: kit.issuer, clientId: c.clientId, clientAuth: tlsClientAuth(), grant: clientCredentials({ resource: kit.resource }), clientCertificate: { cert: c.certificate.certPem, key: c.certificate.keyPem }, ca: kit.ca, interceptors: [interceptors.dns({ maxTTL: 10_000 }), recorder(log)] })
    try {
      const fetch = createBoundFetch({ session, origins: [kit.api] })
      const res = await fetch(`${kit.api}/orders/1`)
      expect(res.status).toBe(200)
      expect(await res.json()).toMatchObject({ binding: 'mtls', x5t: c.certificate.x5tS256 })
      otherSeen.length = 0
      expect(await (await fetch(`${otherOrigin}/plain`)).text()).toBe('other')
      // beneath Bound: the token request, the API call and the uncredentialed call all passed through it
      expect(log.some((l) => l.startsWith(kit.issuer))).toBe(true)
      expect(log).toContain(`${kit.api}/orders/1`)
      expect(log).toContain(`${otherOrigin}/plain`)
      // …and the other origin got neither a token nor the certificate
      expect(otherSeen).toEqual([{ path: '/plain', authorization: undefined, peer: undefined }])
    } finally {
      await session.close()
    }
  })

  it('a rotation makes a new generation with the interceptors composed again (the new certificate is presented, through them)', async () => {
    const log: string[] = []
    const dir = await mkdtemp(join(tmpdir(), 'bound-interceptors-'))
    const certFile = join(dir, 'svid.pem')
    const keyFile = join(dir, 'svid-key.pem')
    await copyFile(kit.pki.workload.certFile, certFile)
    await copyFile(kit.pki.workload.keyFile, keyFile)
    const source = await loadClientCertificate({ certFile, keyFile })
    const c = kit.clients.tlsClientAuth
    const session = createSession({ issuer: kit.issuer, clientId: c.clientId, clientAuth: tlsClientAuth(), grant: clientCredentials({ resource: kit.resource }), clientCertificate: source, ca: kit.ca, interceptors: [recorder(log)] })
    try {
      const fetch = createBoundFetch({ session, origins: [kit.api] })
      expect(await (await fetch(`${kit.api}/orders/1`)).json()).toMatchObject({ x5t: kit.pki.workload.x5tS256 })
      const before = log.length
      await copyFile(kit.pki.workloadRotated.certFile, certFile)
      await copyFile(kit.pki.workloadRotated.keyFile, keyFile)
      expect(await source.reload()).toBe(true)
      expect(await (await fetch(`${kit.api}/orders/2`)).json()).toMatchObject({ x5t: kit.pki.workloadRotated.x5tS256 })
      expect(log.slice(before)).toContain(`${kit.api}/orders/2`)
    } finally {
      await session.close()
      source.close()
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('a redirect interceptor beneath Bound never follows (maxRedirections 0): Bound follows itself, and the other origin gets no token or certificate', async () => {
    const c = kit.clients.tlsClientAuth
    const session = createSession({ issuer: kit.issuer, clientId: c.clientId, clientAuth: tlsClientAuth(), grant: clientCredentials({ resource: kit.resource }), clientCertificate: { cert: c.certificate.certPem, key: c.certificate.keyPem }, ca: kit.ca, interceptors: [interceptors.redirect({ maxRedirections: 5 })] })
    kit.rs.route('/hop', ({ res }) => void res.writeHead(302, { location: `${otherOrigin}/landed` }).end())
    try {
      otherSeen.length = 0
      const res = await createBoundFetch({ session, origins: [kit.api] })(`${kit.api}/hop`)
      expect(res.status).toBe(200)
      expect(res.redirected).toBe(true)
      expect(otherSeen).toEqual([{ path: '/landed', authorization: undefined, peer: undefined }])
    } finally {
      await session.close()
    }
  })

  it('cache beneath Bound: a credentialed response is never served from the cache to another request; a public one is', async () => {
    let apiHits = 0
    kit.rs.route('/cacheable', ({ res }) => void (apiHits++, res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'max-age=60' }).end('per-caller')))
    const c = kit.clients.secretBasic
    const session = createSession({ issuer: kit.issuer, clientId: c.clientId, clientAuth: clientSecretBasic(c.clientSecret), grant: clientCredentials({ resource: kit.resource }), dpop: await generateDpopKey(), ca: kit.ca, interceptors: [interceptors.cache()] })
    try {
      const fetch = createBoundFetch({ session, origins: [kit.api] })
      for (let i = 0; i < 3; i++) expect(await (await fetch(`${kit.api}/cacheable`)).text()).toBe('per-caller')
      // a request with Authorization is not stored by a shared cache (RFC 9111 §3.5): every one reached the API
      expect(apiHits).toBe(3)
      // the cache does work beneath Bound, for what is not credentialed
      const cacheableOther = createHttpsServer({ key: kit.pki.server.keyPem, cert: kit.pki.server.certPem }, (_req, res) => void (apiHits++, res.writeHead(200, { 'cache-control': 'public, max-age=60' }).end('public')))
      await new Promise<void>((r) => cacheableOther.listen(0, '127.0.0.1', r))
      const publicUrl = `https://localhost:${(cacheableOther.address() as AddressInfo).port}/public`
      apiHits = 0
      for (let i = 0; i < 3; i++) expect(await (await fetch(publicUrl)).text()).toBe('public')
      expect(apiHits).toBe(1)
      await new Promise((r) => cacheableOther.close(r))
    } finally {
      await session.close()
    }
  })

  it('retry beneath Bound is the unsafe order: the retried request re-sends the same DPoP proof and the resource server refuses it (compose retry above Bound)', async () => {
    let flaky = 0
    kit.rs.route('/flaky-beneath', ({ res }) => void (++flaky % 2 === 1 ? res.writeHead(503).end() : res.writeHead(200).end('ok')))
    const c = kit.clients.secretBasic
    const session = createSession({ issuer: kit.issuer, clientId: c.clientId, clientAuth: clientSecretBasic(c.clientSecret), grant: clientCredentials({ resource: kit.resource }), dpop: await generateDpopKey(), ca: kit.ca, interceptors: [interceptors.retry({ maxRetries: 1, minTimeout: 10, statusCodes: [503] })] })
    try {
      const fetch = createBoundFetch({ session, origins: [kit.api] })
      await (await fetch(`${kit.api}/orders`)).text() // the nonce is learned
      kit.rs.resetCounters()
      await (await fetch(`${kit.api}/flaky-beneath`)).text()
      expect(kit.rs.counters().replayedJti).toBeGreaterThanOrEqual(1)
    } finally {
      await session.close()
    }
  })

  it('interceptors that are not functions are ERR_INVALID_CONFIG; with a ready transport they belong to it', () => {
    const c = kit.clients.secretBasic
    expect(() => createSession({ issuer: kit.issuer, clientId: c.clientId, grant: clientCredentials(), interceptors: ['dns' as never] })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_CONFIG' }))
  })
})
