import { createServer, Agent as HttpsAgent, type Server } from 'node:https'
import type { AddressInfo } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import express, { type ErrorRequestHandler } from 'express'
import { auth, requiredScopes } from 'express-oauth2-jwt-bearer'
import { startTestkit, type Testkit } from '@bound/testkit'
import { createBoundFetch } from '@bound/fetch'
import { clientCredentials, clientSecretBasic, createSession, type Session } from '@bound/oauth'
import { generateDpopKey } from '@bound/dpop'

// Bound's requests checked by a verifier nobody on this project wrote: Auth0's Express middleware
// (express-oauth2-jwt-bearer), which verifies RFC 9068 JWT access tokens and RFC 9449 DPoP proofs
// (htm, htu, iat, ath, cnf.jkt). It keeps no nonce and no proof jti cache of its own.
//
// How it computes htu (dist/index.js, `auth` and `resolveHost`): `${req.protocol}://${host}${req.originalUrl}`,
// then query and fragment dropped and percent-encodings normalised on both sides. `req.protocol`
// comes from the TLS socket unless 'trust proxy' is set, and the host is the Host header
// (X-Forwarded-Host only from a trusted proxy). The app below is reached directly over TLS, so it
// leaves 'trust proxy' off: the htu it expects is the URL Bound connected to, and no client can
// steer it with X-Forwarded-* headers.

/** What the Express app saw of one request (and the status it answered). */
interface Seen {
  method: string
  originalUrl: string
  scheme: string | undefined
  htu: string | undefined
  htm: string | undefined
  jti: string | undefined
  status?: number
}

let kit: Testkit
let server: Server
let api: string
let jwksAgent: HttpsAgent
const seen: Seen[] = []
const sessions: Session[] = []

/** The claims of a compact JWS, without verifying it (the middleware does that). */
function claimsOf(jws: string | undefined): Record<string, unknown> | undefined {
  try {
    return JSON.parse(Buffer.from(jws?.split('.')[1] ?? '', 'base64url').toString('utf8')) as Record<string, unknown>
  } catch {
    return undefined
  }
}


/** The middleware's errors carry their status and WWW-Authenticate header; answer with them as JSON. */
const onError: ErrorRequestHandler = (err: { status?: number; code?: string; message?: string; headers?: Record<string, string> }, _req, res, _next) => {
  res.status(err.status ?? 500).set(err.headers ?? {}).json({ ...(err.code ? { error: err.code } : {}), error_description: err.message })
}

/** The protected API: the middleware (DPoP required), a scope check, then an echo of what the handler saw. */
function protectedApi(audience: string): express.Express {
  const app = express()
  app.disable('x-powered-by')
  // Record every request as it arrives: the Authorization scheme and the proof's claims.
  app.use((req, res, next) => {
    const proof = claimsOf(req.get('dpop'))
    const entry: Seen = {
      method: req.method,
      originalUrl: req.originalUrl,
      scheme: req.get('authorization')?.split(' ')[0],
      htu: typeof proof?.['htu'] === 'string' ? proof['htu'] : undefined,
      htm: typeof proof?.['htm'] === 'string' ? proof['htm'] : undefined,
      jti: typeof proof?.['jti'] === 'string' ? proof['jti'] : undefined,
    }
    seen.push(entry)
    res.on('finish', () => {
      entry.status = res.statusCode
    })
    next()
  })
  app.use(auth({
    issuer: kit.issuer,
    jwksUri: kit.as.jwksUri,
    agent: jwksAgent, // trusts the testkit CA for the JWKS
    audience,
    tokenSigningAlg: 'ES256',
    strict: true, // RFC 9068: typ at+jwt, and sub, client_id, jti, iat present
    dpop: { enabled: true, required: true },
  }))
  app.use(requiredScopes('orders:read'))
  app.use(express.json())
  app.use((req, res) => {
    res.json({ ok: true, method: req.method, originalUrl: req.originalUrl, query: req.query, body: req.body as unknown, sub: req.auth?.payload.sub, cnf: req.auth?.payload['cnf'] })
  })
  app.use(onError)
  return app
}

beforeAll(async () => {
  kit = await startTestkit()
  jwksAgent = new HttpsAgent({ ca: kit.ca })
  let app: express.Express | undefined
  server = createServer({ key: kit.pki.server.keyPem, cert: kit.pki.server.certPem }, (req, res) => {
    if (app) app(req, res)
    else res.writeHead(503).end()
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  api = `https://127.0.0.1:${(server.address() as AddressInfo).port}`
  // The API's origin is its audience: the AS issues RFC 9068 JWT access tokens for it.
  kit.as.addResource({ resource: api, scope: 'orders:read orders:write' })
  app = protectedApi(api)
})

afterAll(async () => {
  await Promise.all(sessions.map((s) => s.close()))
  if (server) {
    server.closeAllConnections()
    await new Promise((resolve) => server.close(resolve))
  }
  jwksAgent?.destroy()
  await kit?.close()
})

async function boundClient() {
  const c = kit.clients.secretBasic
  const session = createSession({
    issuer: kit.issuer,
    clientId: c.clientId,
    clientAuth: clientSecretBasic(c.clientSecret),
    grant: clientCredentials({ resource: api, scope: 'orders:read' }),
    dpop: await generateDpopKey(),
    ca: kit.ca,
  })
  sessions.push(session)
  return { session, fetch: createBoundFetch({ session, origins: [api] }) }
}

/** The requests the app saw since `mark` (a `seen.length`). */
const since = (mark: number) => seen.slice(mark)

describe('a third-party resource server verifier (express-oauth2-jwt-bearer) accepts what Bound sends', () => {
  it('DPOP-05/14: a GET with a query string: 200, and the proof names the URL without its query', async () => {
    const { session, fetch } = await boundClient()
    const mark = seen.length
    const res = await fetch(`${api}/orders?status=open&page=2`)
    expect(res.status).toBe(200)
    expect(await res.json()).toMatchObject({
      method: 'GET',
      originalUrl: '/orders?status=open&page=2',
      query: { status: 'open', page: '2' },
      sub: kit.clients.secretBasic.clientId,
      cnf: { jkt: session.dpop!.jkt },
    })
    // one request, no retry: the middleware asks for no nonce
    expect(since(mark)).toEqual([expect.objectContaining({ method: 'GET', scheme: 'DPoP', htm: 'GET', htu: `${api}/orders`, status: 200 })])
  })

  it('DPOP-04: a POST with a JSON body: 200, the body arrives intact and htm is POST', async () => {
    const { fetch } = await boundClient()
    const mark = seen.length
    const res = await fetch(`${api}/orders`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ item: 'tea', qty: 2 }) })
    expect(res.status).toBe(200)
    expect(await res.json()).toMatchObject({ method: 'POST', originalUrl: '/orders', body: { item: 'tea', qty: 2 } })
    expect(since(mark)).toEqual([expect.objectContaining({ method: 'POST', htm: 'POST', htu: `${api}/orders`, status: 200 })])
  })

  it('DPOP-06: a percent-encoded path: 200, and htu keeps the encoding exactly as on the request line', async () => {
    const { fetch } = await boundClient()
    const path = '/orders/caf%C3%A9/a%20b%2Fc'
    const mark = seen.length
    const res = await fetch(`${api}${path}`)
    expect(res.status).toBe(200)
    expect(await res.json()).toMatchObject({ originalUrl: path })
    expect(since(mark)).toEqual([expect.objectContaining({ originalUrl: path, htu: `${api}${path}`, status: 200 })])
  })

  it('DPOP-04: HEAD: 200 without a body, htm HEAD', async () => {
    const { fetch } = await boundClient()
    const mark = seen.length
    const res = await fetch(`${api}/orders/1`, { method: 'HEAD' })
    expect(res.status).toBe(200)
    expect(await res.text()).toBe('')
    expect(since(mark)).toEqual([expect.objectContaining({ method: 'HEAD', htm: 'HEAD', htu: `${api}/orders/1`, status: 200 })])
  })

  it('GRANT-07/DPOP-10: 50 concurrent requests: all 200, one token, 50 distinct proofs', async () => {
    const { fetch } = await boundClient()
    kit.as.resetCounters()
    const mark = seen.length
    const responses = await Promise.all(Array.from({ length: 50 }, (_, i) => fetch(`${api}/orders/${i}?n=${i}`)))
    expect(responses.map((r) => r.status)).toEqual(Array.from({ length: 50 }, () => 200))
    const bodies = (await Promise.all(responses.map((r) => r.json()))) as Array<{ originalUrl: string }>
    expect(bodies.map((b) => b.originalUrl).sort()).toEqual(Array.from({ length: 50 }, (_, i) => `/orders/${i}?n=${i}`).sort())
    // one token request (after the AS's nonce challenge) for all fifty callers
    expect(kit.as.counters()).toMatchObject({ tokensIssued: 1, nonceChallenges: 1 })
    const requests = since(mark)
    expect(requests).toHaveLength(50)
    expect(new Set(requests.map((r) => r.jti)).size).toBe(50)
    expect(requests.every((r) => r.status === 200 && r.htu === `${api}${r.originalUrl.split('?')[0]!}`)).toBe(true)
  })
})

describe('the verifier really checks the proof (negative controls)', () => {
  it('DPOP-04/05/15: a proof for another URL or method, a proof by another key, or the token as Bearer without a proof is refused', async () => {
    const { session, fetch } = await boundClient()
    expect((await fetch(`${api}/orders`)).status).toBe(200) // a token is held
    const token = await session.token()
    const url = `${api}/orders`
    const send = (headers: Record<string, string>) => session.transport.fetch(url, { headers })
    const proof = (method: string, target: string) => session.dpop!.proof(method, target, { accessToken: token.value })
    const other = (await boundClient()).session.dpop!

    // The middleware answers a bad proof (and a request without one) with 400 and a token it will
    // not accept with 401, where DPOP-23 expects an RS to say 401; Bound decides on the error code,
    // not the status (DPOP-21), so either works with it.
    const cases: Array<[name: string, headers: Record<string, string>, status: number, error: string, detail: RegExp]> = [
      ['proof for another URL', { authorization: `DPoP ${token.value}`, dpop: await proof('GET', `${api}/somewhere-else`) }, 400, 'invalid_dpop_proof', /htu mismatch/],
      ['proof for another method', { authorization: `DPoP ${token.value}`, dpop: await proof('POST', url) }, 400, 'invalid_dpop_proof', /htm mismatch/],
      ['proof by another key', { authorization: `DPoP ${token.value}`, dpop: await other.proof('GET', url, { accessToken: token.value }) }, 401, 'invalid_token', /confirmation mismatch/],
      ['the token as Bearer, no proof', { authorization: `Bearer ${token.value}` }, 400, '', /.*/],
    ]
    const mark = seen.length
    for (const [name, headers, status, error, detail] of cases) {
      const res = await send(headers)
      expect(res.status, name).toBe(status)
      const body = (await res.json()) as { error: string; error_description: string }
      if (error) {
        expect(body.error, name).toBe(error)
        expect(body.error_description, name).toMatch(detail)
        expect(res.headers.get('www-authenticate'), name).toContain(`error="${error}"`)
      } else {
        // DPoP required and no proof: the challenge names the DPoP scheme and its algs, without an error
        expect(res.headers.get('www-authenticate'), name).toMatch(/^DPoP algs="[^"]*ES256/)
      }
    }
    expect(since(mark).map((r) => r.status)).toEqual([400, 400, 401, 400])

    // and a correct proof, made the same way by hand, is accepted: the refusals above are the proofs' fault
    const ok = await send({ authorization: `DPoP ${token.value}`, dpop: await proof('GET', url) })
    expect(ok.status).toBe(200)
  })
})
