// Issue 14 — HTTP/2 (NET-05): `allowH2` offers h2 by ALPN; an origin that picks it gets DPoP-bound
// requests over HTTP/2, verified by the testkit's resource server (oauth4webapi and jose), directly
// and inside a proxy's CONNECT tunnel. Without the option the same server is spoken to in HTTP/1.1.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { startTestkit, type Testkit } from '@bound/testkit'
import { createBoundFetch } from '@bound/fetch'
import { clientCredentials, clientSecretBasic, createSession, type Session, type SessionOptions } from '@bound/oauth'
import { createTransport, type Transport } from '@bound/http'
import { generateDpopKey } from '@bound/dpop'
import { isBoundError } from '@bound/core'
import { startConnectProxy, type ConnectProxy } from './support/connect-proxy.js'

let kit: Testkit
const sessions: Session[] = []
const transports: Transport[] = []
const proxies: ConnectProxy[] = []
beforeAll(async () => {
  // the RS speaks h2 and HTTP/1.1 (ALPN); the AS (oidc-provider) HTTP/1.1 only
  kit = await startTestkit({ rsHttp2: true })
  kit.rs.route('/protocol', ({ req, res, auth }) => void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ httpVersion: req.httpVersion, jkt: auth.jkt })))
})
afterEach(async () => {
  await Promise.all(sessions.splice(0).map((s) => s.close()))
  await Promise.all(transports.splice(0).map((t) => t.close()))
  await Promise.all(proxies.splice(0).map((p) => p.close()))
})
afterAll(async () => {
  await kit?.close()
})

async function bound(origin: string, transportOptions?: Parameters<typeof createTransport>[0]) {
  const c = kit.clients.secretBasic
  const over: Partial<SessionOptions> = { ca: kit.ca }
  if (transportOptions) {
    const transport = createTransport({ ca: kit.ca, ...transportOptions })
    transports.push(transport)
    delete over.ca
    over.transport = transport
  }
  const session = createSession({ issuer: kit.issuer, clientId: c.clientId, clientAuth: clientSecretBasic(c.clientSecret), grant: clientCredentials({ resource: kit.resource }), dpop: await generateDpopKey(), ...over })
  sessions.push(session)
  return { session, fetch: createBoundFetch({ session, origins: [origin] }) }
}

describe('HTTP/2 (issue 14)', () => {
  it('NET-05: with allowH2: true, DPoP requests to an h2 origin go over HTTP/2 and verify (nonce challenge and retry included); the AS, HTTP/1.1 only, still works', async () => {
    const { session, fetch } = await bound(kit.api, { allowH2: true })
    kit.rs.resetCounters()
    kit.as.resetCounters()
    const first = await fetch(`${kit.api}/protocol`)
    expect(first.status).toBe(200)
    expect(await first.json()).toEqual({ httpVersion: '2.0', jkt: session.dpop!.jkt })
    // concurrent requests multiplexed on the h2 connection(s)
    const many = await Promise.all(Array.from({ length: 50 }, (_, i) => fetch(`${kit.api}/protocol?i=${i}`).then(async (r) => ({ status: r.status, body: (await r.json()) as { httpVersion: string } }))))
    expect(many.filter((r) => r.status !== 200 || r.body.httpVersion !== '2.0')).toEqual([])
    const rs = kit.rs.counters()
    expect(rs).toMatchObject({ verified: 51, verifierDisagreements: 0, nonceChallenges: 1 })
    expect(rs.lastProof?.payload['htu']).toBe(`${kit.api}/protocol`)
    expect(kit.as.counters().tokensIssued).toBe(1)
  })

  it('NET-05: the default stays HTTP/1.1 against the same h2-capable origin (no allowH2, and allowH2: false)', async () => {
    for (const options of [undefined, { allowH2: false }]) {
      const { fetch } = await bound(kit.api, options)
      const res = await fetch(`${kit.api}/protocol`)
      expect(res.status).toBe(200)
      expect(await res.json()).toMatchObject({ httpVersion: '1.1' })
    }
  })

  it('NET-05 NET-02: through a CONNECT proxy, h2 is negotiated inside the tunnel with the origin; htu is the origin', async () => {
    const proxy = await startConnectProxy()
    proxies.push(proxy)
    const api = `https://api.bound.test:${new URL(kit.api).port}` // a name only the proxy resolves
    const { fetch } = await bound(api, { allowH2: true, proxy: proxy.url })
    kit.rs.resetCounters()
    const res = await fetch(`${api}/protocol`)
    expect(res.status).toBe(200)
    expect(await res.json()).toMatchObject({ httpVersion: '2.0' })
    expect(proxy.records.map((r) => r.target)).toContain(`api.bound.test:${new URL(kit.api).port}`)
    expect(kit.rs.counters().lastProof?.payload['htu']).toBe(`${api}/protocol`)
    expect(kit.rs.counters().verifierDisagreements).toBe(0)
  })

  it('NET-05: allowH2 that is not a boolean is ERR_INVALID_CONFIG naming the option', () => {
    for (const value of ['true', 1, null]) {
      let error: unknown
      try {
        createTransport({ allowH2: value as never })
      } catch (e) {
        error = e
      }
      expect(isBoundError(error) && error.code === 'ERR_INVALID_CONFIG').toBe(true)
      expect((error as Error).message).toMatch(/allowH2/)
    }
  })
})
