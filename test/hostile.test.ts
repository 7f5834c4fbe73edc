import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import { createTestPki } from '@bound/testkit'
import type { AddressInfo } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createBoundFetch } from '@bound/fetch'
import { clientCredentials, createSession, type Session } from '@bound/oauth'
import { generateDpopKey } from '@bound/dpop'

// Hostile resource servers (issue 8). Plain loopback servers: what they do wrong is the point.
let session: Session
const servers: ReturnType<typeof createServer>[] = []
async function serve(handler: (req: IncomingMessage, res: ServerResponse) => void, host = '127.0.0.1') {
  const server = createServer(handler)
  servers.push(server)
  await new Promise<void>((r) => server.listen(0, host, r))
  return `http://${host}:${(server.address() as AddressInfo).port}`
}
beforeAll(async () => {
  session = createSession({ tokenEndpoint: 'http://127.0.0.1:9/token', clientId: 'c', grant: clientCredentials(), dpop: await generateDpopKey(), maxNonceOrigins: 10 })
  session.adopt({}, { access_token: 'held-token', token_type: 'DPoP', expires_in: 3600 })
})
afterAll(async () => {
  await session.close()
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))))
})

describe('hostile resource servers (issue 8)', () => {
  it('a 64 KB WWW-Authenticate header is parsed in bounded time and the response returned', async () => {
    const huge = `DPoP error="use_dpop_nonce", x="${'a'.repeat(60_000)}"`
    let hits = 0
    const origin = await serve((_req, res) => void (hits++, res.writeHead(401, { 'www-authenticate': huge }).end()))
    const started = Date.now()
    const res = await createBoundFetch({ session, origins: [origin] })(`${origin}/x`)
    expect(res.status).toBe(401)
    expect(Date.now() - started).toBeLessThan(2_000)
    expect(hits).toBe(1) // no nonce with it: nothing to retry with
  })

  it('a redirect loop ends after the hop limit with a typed error', async () => {
    let hits = 0
    const origin = await serve((req, res) => void (hits++, res.writeHead(302, { location: `/loop/${hits}` }).end()))
    await expect(createBoundFetch({ session, origins: [origin], maxRedirects: 5 })(`${origin}/loop`)).rejects.toMatchObject({ code: 'ERR_INVALID_INPUT', message: expect.stringContaining('more than 5 redirects') })
    expect(hits).toBe(6)
  })

  it('a redirect from https to plain http on the network is refused without connecting', async () => {
    const pki = await createTestPki()
    try {
      const server = createHttpsServer({ key: pki.server.keyPem, cert: pki.server.certPem }, (_req, res) => void res.writeHead(307, { location: 'http://internal.example.invalid/steal' }).end())
      servers.push(server as never)
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
      const origin = `https://127.0.0.1:${(server.address() as AddressInfo).port}`
      const s = createSession({ tokenEndpoint: 'https://127.0.0.1:9/token', clientId: 'c', grant: clientCredentials(), dpop: await generateDpopKey(), ca: pki.caPem })
      s.adopt({}, { access_token: 'held-token-2', token_type: 'DPoP', expires_in: 3600 })
      await expect(createBoundFetch({ session: s, origins: [origin] })(`${origin}/x`)).rejects.toMatchObject({ code: 'ERR_INSECURE_TRANSPORT' })
      await s.close()
    } finally {
      await pki.remove()
    }
  })

  it('a response that never ends can be aborted while its body is read', async () => {
    const origin = await serve((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' })
      res.write('partial…')
      // and never end
    })
    const ac = new AbortController()
    const res = await createBoundFetch({ session, origins: [origin] })(`${origin}/stream`, { signal: ac.signal })
    expect(res.status).toBe(200)
    setTimeout(() => ac.abort(new Error('enough')), 100)
    const started = Date.now()
    await expect(res.text()).rejects.toBeDefined()
    expect(Date.now() - started).toBeLessThan(2_000)
  })

  it('many origins each setting a nonce: the nonce store stays within its bound', async () => {
    const origins: string[] = []
    for (let i = 0; i < 30; i++) origins.push(await serve((_req, res) => void res.writeHead(200, { 'dpop-nonce': `n-${i}-${Math.random().toString(36).slice(2)}` }).end('ok')))
    const fetch = createBoundFetch({ session, origins })
    for (const origin of origins) expect((await fetch(`${origin}/x`)).status).toBe(200)
    expect(session.dpop!.nonces.size).toBe(10) // maxNonceOrigins
  })

  it('10,000 distinct origins through the nonce store: bounded (unit-level scale)', () => {
    for (let i = 0; i < 10_000; i++) session.dpop!.observe(`https://h${i}.example`, new Headers({ 'DPoP-Nonce': `n${i}` }))
    expect(session.dpop!.nonces.size).toBe(10)
  })
})

describe('network failures look like fetch’s, and are typed', () => {
  it('a refused connection is a TypeError (as with the platform fetch) and a BoundError ERR_NETWORK with the cause', async () => {
    const { isBoundError } = await import('@bound/core')
    const err = await createBoundFetch({ session, origins: ['http://127.0.0.1:9'] })('http://127.0.0.1:9/x').catch((e: unknown) => e) as TypeError & { cause?: { code?: string } }
    expect(err).toBeInstanceOf(TypeError)
    expect(isBoundError(err, 'ERR_NETWORK')).toBe(true)
    expect(err.cause?.code).toBe('ECONNREFUSED')
    expect(err.message).toMatch(/^fetch failed/)
  })
})
