// Issue 14 — egress proxies (NET-01, NET-02, SEC-07): a real CONNECT proxy on loopback in front of
// the testkit's resource server, reached under a name only the proxy resolves (api.bound.test), so
// the client's traffic to it is not loopback traffic. The AS stays on 127.0.0.1: loopback is never
// proxied (a deliberate rule: plain-http loopback traffic must not cross a proxy in clear).
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { Agent, ProxyAgent, request } from 'undici'
import { startTestkit, type Testkit } from '@bound/testkit'
import { boundInterceptor, createBoundFetch } from '@bound/fetch'
import { clientCredentials, clientSecretBasic, createSession, tlsClientAuth, type Session } from '@bound/oauth'
import { createTransport } from '@bound/http'
import { generateDpopKey } from '@bound/dpop'
import { isBoundError } from '@bound/core'
import { createBoundAxios } from '@bound/axios'
import { createBoundGot } from '@bound/got'
import { startConnectProxy, type ConnectProxy } from './support/connect-proxy.js'

let kit: Testkit
let api: string // https://api.bound.test:PORT — the testkit's RS, by a name only the proxy resolves
const proxies: ConnectProxy[] = []
const sessions: Session[] = []
beforeAll(async () => {
  kit = await startTestkit()
  api = `https://api.bound.test:${new URL(kit.api).port}`
})
afterEach(async () => {
  await Promise.all(sessions.splice(0).map((s) => s.close()))
  await Promise.all(proxies.splice(0).map((p) => p.close()))
})
afterAll(async () => {
  await kit?.close()
})

async function proxy(options?: Parameters<typeof startConnectProxy>[0]) {
  const p = await startConnectProxy(options)
  proxies.push(p)
  return p
}
async function dpopSession(proxySetting: Parameters<typeof createSession>[0]['proxy']) {
  const c = kit.clients.secretBasic
  const session = createSession({ issuer: kit.issuer, clientId: c.clientId, clientAuth: clientSecretBasic(c.clientSecret), grant: clientCredentials({ resource: kit.resource }), dpop: await generateDpopKey(), ca: kit.ca, proxy: proxySetting })
  sessions.push(session)
  return session
}

describe('egress proxy (issue 14)', () => {
  it.each(['axios adapter', 'got hooks'])('NET-01/NET-02: through the %s, requests take the session’s CONNECT tunnel and the proxy reads no credential', async (name) => {
    const p = await proxy()
    const session = await dpopSession(p.url)
    const call = name === 'axios adapter'
      ? async (path: string) => (await createBoundAxios({ session, origins: [api] }).get(`${api}${path}`)).data as Record<string, unknown>
      : async (path: string) => (await createBoundGot({ session, origins: [api] })(`${api}${path}`).json())
    expect(await call('/orders/1')).toMatchObject({ binding: 'dpop' })
    const token = await session.token()
    expect(new Set(p.records.map((r) => r.target))).toEqual(new Set([`api.bound.test:${new URL(kit.api).port}`]))
    expect(p.plainRequests).toEqual([])
    const relayed = p.relayed()
    expect(relayed.length).toBeGreaterThan(1000)
    expect(relayed).not.toContain(token.value)
    expect(relayed).not.toContain('dpop+jwt')
  })

  it('NET-01/NET-02: DPoP requests to the API go through a CONNECT tunnel; htu is the origin; the proxy sees only host:port and ciphertext; the AS on loopback is reached directly', async () => {
    const p = await proxy()
    const session = await dpopSession(p.url)
    const fetch = createBoundFetch({ session, origins: [api] })
    const token = await session.token()
    kit.rs.resetCounters?.()
    for (const path of ['/orders/1?page=2', '/orders/2']) {
      const res = await fetch(`${api}${path}`)
      expect(res.status).toBe(200)
      expect(await res.json()).toMatchObject({ binding: 'dpop' })
    }
    // tunnels (one per pooled connection: the nonce challenge's retry may open a second) to the API
    // only: the AS (127.0.0.1) was not proxied
    expect(p.records.length).toBeGreaterThanOrEqual(1)
    expect(new Set(p.records.map((r) => r.target))).toEqual(new Set([`api.bound.test:${new URL(kit.api).port}`]))
    expect(p.records[0]!.head).toMatch(/^CONNECT api\.bound\.test:\d+ HTTP\/1\.1/)
    expect(p.records[0]!.head.toLowerCase()).not.toMatch(/authorization: dpop|dpop:/)
    expect(p.plainRequests).toEqual([])
    // everything relayed was TLS: neither the token nor a proof header is readable by the proxy
    const relayed = p.relayed()
    expect(relayed.length).toBeGreaterThan(1000)
    expect(relayed).not.toContain(token.value)
    expect(relayed).not.toContain('dpop+jwt')
    expect(relayed.toLowerCase()).not.toContain('authorization')
  })

  it('NET-01: an AS that is not on loopback is reached through the proxy too: the token request tunnels, and the proxy reads neither the client secret nor the token', async () => {
    const p = await proxy()
    const c = kit.clients.secretBasic
    const as = `https://as.bound.test:${new URL(kit.issuer).port}`
    // (no DPoP here: the testkit's AS checks htu against its own 127.0.0.1 URL)
    const session = createSession({ tokenEndpoint: `${as}/token`, clientId: c.clientId, clientAuth: clientSecretBasic(c.clientSecret), grant: clientCredentials({ resource: kit.resource }), ca: kit.ca, proxy: p.url })
    sessions.push(session)
    const token = await session.token()
    expect(token.type).toBe('Bearer')
    expect(p.records.map((r) => r.target)).toEqual([`as.bound.test:${new URL(kit.issuer).port}`])
    const relayed = p.relayed()
    expect(relayed).not.toContain(token.value)
    expect(relayed).not.toContain(c.clientSecret)
    expect(relayed).not.toContain(Buffer.from(`${c.clientId}:${c.clientSecret}`).toString('base64'))
  })

  it('NET-02: an mTLS session presents its certificate to the origin inside the tunnel (certificate-bound token accepted), never to the proxy', async () => {
    const p = await proxy()
    const c = kit.clients.tlsClientAuth
    const session = createSession({ issuer: kit.issuer, clientId: c.clientId, clientAuth: tlsClientAuth(), grant: clientCredentials({ resource: kit.resource }), clientCertificate: { cert: c.certificate.certPem, key: c.certificate.keyPem }, ca: kit.ca, proxy: p.url })
    sessions.push(session)
    const fetch = createBoundFetch({ session, origins: [api] })
    const res = await fetch(`${api}/orders`)
    expect(res.status).toBe(200)
    expect(await res.json()).toMatchObject({ binding: 'mtls', x5t: c.certificate.x5tS256 })
    expect(p.records.map((r) => r.status)).toEqual([200])
    // the proxy is plain HTTP: had the certificate been offered to it, there would be no TLS to carry it;
    // what it relayed is the origin's handshake, and no token in clear
    expect(p.relayed()).not.toContain((await session.token()).value)
  })

  it('NET-01: with the interceptor the user\'s dispatcher decides the route: composed on a ProxyAgent, DPoP requests tunnel through it with htu = the origin', async () => {
    const p = await proxy()
    const session = await dpopSession(false)
    const agent = new ProxyAgent({ uri: p.url, requestTls: { ca: kit.ca } }).compose(boundInterceptor({ session, origins: [api] }))
    try {
      const res = await request(`${api}/orders/9?x=1`, { dispatcher: agent })
      expect(res.statusCode).toBe(200)
      expect(await res.body.json()).toMatchObject({ binding: 'dpop' })
      expect(p.records.length).toBeGreaterThanOrEqual(1)
      expect(p.relayed()).not.toContain((await session.token()).value)
    } finally {
      await agent.close()
    }
  })

  it('NET-02: with the interceptor, mTLS requests go over the session\'s transport and its proxy (certificate inside the tunnel), whatever the user\'s Agent is', async () => {
    const p = await proxy()
    const c = kit.clients.tlsClientAuth
    const session = createSession({ issuer: kit.issuer, clientId: c.clientId, clientAuth: tlsClientAuth(), grant: clientCredentials({ resource: kit.resource }), clientCertificate: { cert: c.certificate.certPem, key: c.certificate.keyPem }, ca: kit.ca, proxy: p.url })
    sessions.push(session)
    const agent = new Agent().compose(boundInterceptor({ session, origins: [api] }))
    try {
      const res = await request(`${api}/orders/9`, { dispatcher: agent })
      expect(res.statusCode).toBe(200)
      expect(await res.body.json()).toMatchObject({ binding: 'mtls', x5t: c.certificate.x5tS256 })
      expect(p.records.map((r) => r.status)).toContain(200)
    } finally {
      await agent.close()
    }
  })

  it('NO_PROXY (NET-01): a host in noProxy is connected to directly (the proxy sees nothing; the name does not resolve here, so the direct attempt fails)', async () => {
    const p = await proxy()
    const session = await dpopSession({ url: p.url, noProxy: 'localhost,.bound.test' })
    const fetch = createBoundFetch({ session, origins: [api] })
    const err = await fetch(`${api}/orders`).catch((e: unknown) => e)
    expect(isBoundError(err, 'ERR_NETWORK')).toBe(true)
    expect(String((err as Error).message)).toMatch(/ENOTFOUND|EAI_AGAIN/)
    expect(p.records).toEqual([])
  })

  it('SEC-07: a proxy asking for credentials (407) is ERR_PROXY naming the proxy, not the API; with credentials in the URL it tunnels, and they never appear in an error', async () => {
    const p = await proxy({ auth: { user: 'egress', pass: 'pr0xy-s3cret' } })
    const refused = await dpopSession(p.url)
    const err = await createBoundFetch({ session: refused, origins: [api] })(`${api}/orders`).catch((e: unknown) => e)
    expect(isBoundError(err, 'ERR_PROXY')).toBe(true)
    expect((err as Error).message).toContain(p.url)
    expect((err as Error).message).toContain('407')
    expect((err as Error).message).toContain('api.bound.test')

    const withAuth = new URL(p.url)
    withAuth.username = 'egress'
    withAuth.password = 'pr0xy-s3cret'
    const ok = await dpopSession(withAuth.href)
    const res = await createBoundFetch({ session: ok, origins: [api] })(`${api}/orders`)
    expect(res.status).toBe(200)
    expect(p.records.at(-1)!.status).toBe(200)

    const wrong = new URL(withAuth)
    wrong.password = 'not-the-s3cret'
    const bad = await dpopSession(wrong.href)
    const err2 = await createBoundFetch({ session: bad, origins: [api] })(`${api}/orders`).catch((e: unknown) => e)
    expect(isBoundError(err2, 'ERR_PROXY')).toBe(true)
    const printed = `${(err2 as Error).message} ${JSON.stringify(err2)} ${String((err2 as Error).stack)}`
    expect(printed).not.toContain('not-the-s3cret')
    expect(printed).not.toContain('egress:')
  })

  it('a proxy that refuses the tunnel (502) is ERR_PROXY with the status; nothing reached the API', async () => {
    const p = await proxy({ refuse: () => 502 })
    const session = await dpopSession(p.url)
    kit.rs.resetCounters?.()
    const before = kit.rs.counters().requests
    const err = await createBoundFetch({ session, origins: [api] })(`${api}/orders`).catch((e: unknown) => e)
    expect(isBoundError(err, 'ERR_PROXY')).toBe(true)
    expect((err as Error).message).toMatch(/refused the tunnel \(HTTP 502\)/)
    expect(kit.rs.counters().requests).toBe(before)
  })

  it('a proxy that cannot be reached is ERR_PROXY naming it', async () => {
    const p = await proxy()
    const url = p.url
    await p.close()
    proxies.splice(proxies.indexOf(p), 1)
    const session = await dpopSession(url)
    const err = await createBoundFetch({ session, origins: [api] })(`${api}/orders`).catch((e: unknown) => e)
    expect(isBoundError(err, 'ERR_PROXY')).toBe(true)
    expect((err as Error).message).toContain(`The proxy ${url} could not be reached`)
  })

  it('NET-01: HTTPS_PROXY from the environment is used by default (read when the session is made); proxy: false ignores it', async () => {
    const p = await proxy()
    const saved = { HTTPS_PROXY: process.env.HTTPS_PROXY, https_proxy: process.env.https_proxy, NO_PROXY: process.env.NO_PROXY, no_proxy: process.env.no_proxy }
    process.env.https_proxy = p.url
    delete process.env.NO_PROXY
    delete process.env.no_proxy
    let fromEnv: Session
    let ignoring: Session
    try {
      fromEnv = await dpopSession(undefined)
      ignoring = await dpopSession(false)
    } finally {
      for (const [k, v] of Object.entries(saved)) {
        if (v === undefined) delete process.env[k]
        else process.env[k] = v
      }
    }
    expect((await createBoundFetch({ session: fromEnv, origins: [api] })(`${api}/orders`)).status).toBe(200)
    const tunnels = p.records.length
    expect(tunnels).toBeGreaterThanOrEqual(1)
    // without the proxy the name does not resolve: a direct attempt, which the proxy never sees
    await expect(createBoundFetch({ session: ignoring, origins: [api] })(`${api}/orders`)).rejects.toMatchObject({ code: 'ERR_NETWORK' })
    expect(p.records).toHaveLength(tunnels)
  })

  it('a proxy setting that is not a URL is ERR_INVALID_CONFIG without echoing it (it may hold credentials)', () => {
    expect(() => createTransport({ proxy: 'user:s3cret@proxy' })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_CONFIG' }))
    try {
      createTransport({ proxy: 'socks5://user:s3cret@127.0.0.1:1080' })
      expect.unreachable()
    } catch (err) {
      expect((err as Error).message).not.toContain('s3cret')
      expect((err as Error).message).toContain('socks5:')
    }
  })
})
