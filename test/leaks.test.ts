import { createServer as createHttpsServer, type Server } from 'node:https'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { TLSSocket } from 'node:tls'
import type { AddressInfo } from 'node:net'
import { inspect } from 'node:util'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { Agent, interceptors, request, type Dispatcher } from 'undici'
import { startTestkit, type Testkit } from '@bound/testkit'
import { boundInterceptor, createBoundFetch, getChallenges, type BoundOptions } from '@bound/fetch'
import { clientCredentials, clientSecretBasic, createSession, noClientAuth, tlsClientAuth, type Session, type SessionOptions } from '@bound/oauth'
import { generateDpopKey } from '@bound/dpop'
import { createBoundAxios, getChallenges as axiosChallenges } from '@bound/axios'
import { createBoundGot, getChallenges as gotChallenges } from '@bound/got'

// Issue 13: every credential leak the attacker review found, as the attacker's move against the
// testkit's real AS and verifying RS plus hostile HTTPS servers on loopback — run through the
// bound fetch AND the undici interceptor (on the user's own Agent) wherever both apply.

interface Seen { path: string; authorization: string | undefined; dpop: string | undefined; peer: string | undefined }
interface Hostile { origin: string; seen: Seen[]; handle: (req: IncomingMessage, res: ServerResponse) => void; server: Server }

let kit: Testkit
/** A hostile server on an origin outside `origins`. */
let evil: Hostile
/** A hostile API on a listed origin. */
let api2: Hostile
const sessions: Session[] = []
const agents: Agent[] = []

async function hostile(): Promise<Hostile> {
  const h = { seen: [] as Seen[], handle: (_req: IncomingMessage, res: ServerResponse) => void res.writeHead(200, { 'content-type': 'application/json' }).end('{"hostile":true}') } as Hostile
  h.server = createHttpsServer({ key: kit.pki.server.keyPem, cert: kit.pki.server.certPem, requestCert: true, rejectUnauthorized: false }, (req, res) => {
    const peer = (req.socket as TLSSocket).getPeerCertificate()
    h.seen.push({ path: req.url ?? '', authorization: req.headers.authorization, dpop: req.headers.dpop as string | undefined, peer: peer?.subject?.CN as string | undefined })
    h.handle(req, res)
  })
  await new Promise<void>((r) => h.server.listen(0, '127.0.0.1', r))
  h.origin = `https://127.0.0.1:${(h.server.address() as AddressInfo).port}`
  return h
}

beforeAll(async () => {
  kit = await startTestkit()
  evil = await hostile()
  api2 = await hostile()
  kit.rs.route('/to-evil', ({ res }) => void res.writeHead(302, { location: `${evil.origin}/landed` }).end())
  kit.rs.route('/to-evil-confused', ({ res }) => void res.writeHead(307, { location: `${evil.origin}//${new URL(kit.api).host}/orders` }).end())
  kit.rs.route('/to-api2', ({ res }) => void res.writeHead(302, { location: `${api2.origin}/landed` }).end())
  kit.rs.route('/whoami', ({ res, auth }) => void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ aud: auth.claims.aud, scope: auth.claims.scope, acr: auth.claims.acr ?? null })))
})
beforeEach(() => {
  evil.seen.length = 0
  api2.seen.length = 0
  evil.handle = (_req, res) => void res.writeHead(200, { 'content-type': 'application/json' }).end('{"hostile":true}')
  api2.handle = evil.handle
  kit.rs.clearStepUp()
})
afterAll(async () => {
  await Promise.all(sessions.map((s) => s.close()))
  await Promise.all(agents.map((a) => a.close()))
  await Promise.all([evil, api2].map((h) => new Promise((r) => h?.server.close(r))))
  await kit?.close()
})

async function newSession(over: Partial<SessionOptions> = {}) {
  const c = kit.clients.secretBasic
  const session = createSession({ issuer: kit.issuer, clientId: c.clientId, clientAuth: clientSecretBasic(c.clientSecret), grant: clientCredentials({ resource: kit.resource, scope: 'orders:read' }), dpop: await generateDpopKey(), ca: kit.ca, ...over })
  sessions.push(session)
  return session
}

/** The user's own Agent: trusts the testkit CA, presents no client certificate. */
function userAgent() {
  const agent = new Agent({ connect: { ca: kit.ca } })
  agents.push(agent)
  return agent
}

interface Reply { status: number; text(): Promise<string>; stepUpError: string | undefined }
interface Client {
  session: Session
  call(url: string | { origin: string; path: string }, init?: { method?: string; body?: string }): Promise<Reply>
  /** false: nothing follows redirects here (the 3xx comes back to the caller) */
  followsRedirects?: false
}
type Extra = Partial<Omit<BoundOptions, 'session'>>

const integrations: Record<string, (extra?: Extra, session?: Session) => Promise<Client>> = {
  'bound fetch': async (extra = {}, given) => {
    const session = given ?? (await newSession())
    const fetch = createBoundFetch({ session, origins: [kit.api, api2.origin], ...extra })
    return {
      session,
      async call(url, init) {
        const res = await fetch(typeof url === 'string' ? url : `${url.origin}${url.path}`, init)
        return { status: res.status, text: () => res.text(), stepUpError: getChallenges(res).find((c) => c.boundError)?.boundError?.code }
      },
    }
  },
  'undici interceptor': async (extra = {}, given) => {
    const session = given ?? (await newSession())
    // the documented order: Bound's first (innermost), then retry, then redirect (outermost)
    const dispatcher = userAgent().compose(boundInterceptor({ session, origins: [kit.api, api2.origin], ...extra }), interceptors.retry({ maxRetries: 1, minTimeout: 10 }), interceptors.redirect({ maxRedirections: 5 }))
    return {
      session,
      async call(url, init) {
        const res = await request(url as string, { dispatcher, method: (init?.method ?? 'GET') as Dispatcher.HttpMethod, body: init?.body })
        const header = res.headers['www-authenticate']
        return { status: res.statusCode, text: () => res.body.text(), stepUpError: res.statusCode === 401 && String(header).includes('insufficient_user_authentication') ? 'ERR_STEP_UP_REQUIRED' : undefined }
      },
    }
  },
  // nothing composed after Bound's: undici.request's own handler reaches it (undici 7's callback
  // interface, which Bound then speaks to the dispatcher too); no redirect is followed
  'undici interceptor alone': async (extra = {}, given) => {
    const session = given ?? (await newSession())
    const dispatcher = userAgent().compose(boundInterceptor({ session, origins: [kit.api, api2.origin], ...extra }))
    return {
      session,
      followsRedirects: false,
      async call(url, init) {
        const res = await request(url as string, { dispatcher, method: (init?.method ?? 'GET') as Dispatcher.HttpMethod, body: init?.body })
        const header = res.headers['www-authenticate']
        return { status: res.statusCode, text: () => res.body.text(), stepUpError: res.statusCode === 401 && String(header).includes('insufficient_user_authentication') ? 'ERR_STEP_UP_REQUIRED' : undefined }
      },
    }
  },
  'axios adapter': async (extra = {}, given) => {
    const session = given ?? (await newSession())
    const api = createBoundAxios({ session, origins: [kit.api, api2.origin], ...extra }, { validateStatus: () => true, responseType: 'text', transformResponse: (d: unknown) => d })
    return {
      session,
      async call(url, init) {
        const res = await api.request({ url: typeof url === 'string' ? url : `${url.origin}${url.path}`, method: init?.method ?? 'GET', data: init?.body })
        return { status: res.status, text: async () => res.data as string, stepUpError: axiosChallenges(res).find((c) => c.boundError)?.boundError?.code }
      },
    }
  },
  'got hooks': async (extra = {}, given) => {
    const session = given ?? (await newSession())
    const api = createBoundGot({ session, origins: [kit.api, api2.origin], ...extra }, { throwHttpErrors: false, retry: { limit: 1 } })
    return {
      session,
      async call(url, init) {
        const res = await api(typeof url === 'string' ? url : `${url.origin}${url.path}`, { method: (init?.method ?? 'GET') as 'GET', body: init?.body })
        return { status: res.statusCode, text: async () => res.body, stepUpError: gotChallenges(res).find((c) => c.boundError)?.boundError?.code }
      },
    }
  },
}

const noCredentials = (seen: Seen[]) => seen.every((s) => s.authorization === undefined && s.dpop === undefined && s.peer === undefined)

describe.each(Object.keys(integrations))('SEC: credentials go only where they belong, through the %s', (name) => {
  const make = integrations[name]!

  it('origin confusion: a URL whose path starts with //api-host reaches the other host with no token and no proof', async () => {
    const client = await make()
    expect((await client.call(`${kit.api}/orders`)).status).toBe(200) // a token is held
    const apiHost = new URL(kit.api).host
    for (const path of [`//${apiHost}/orders`, `/\\${apiHost}/orders`]) await (await client.call(`${evil.origin}${path}`)).text()
    expect(evil.seen.length).toBe(2)
    expect(noCredentials(evil.seen)).toBe(true)
  })

  it('a redirect to another origin: the hop carries no token, proof or certificate (DPOP-29)', async () => {
    const client = await make()
    const res = await client.call(`${kit.api}/to-evil`)
    expect(res.status).toBe(client.followsRedirects === false ? 302 : 200)
    expect(evil.seen.map((s) => s.path)).toEqual(client.followsRedirects === false ? [] : ['/landed'])
    expect(noCredentials(evil.seen)).toBe(true)
  })

  it('a redirect to https://evil//api-host/… (origin confusion by redirect): nothing credentialed reaches evil', async () => {
    const client = await make()
    await (await client.call(`${kit.api}/to-evil-confused`)).text()
    expect(evil.seen.length).toBe(client.followsRedirects === false ? 0 : 1)
    expect(noCredentials(evil.seen)).toBe(true)
  })

  it('a redirect between two listed origins: the hop that changed origin carries no credentials', async () => {
    const client = await make()
    expect((await client.call(`${kit.api}/to-api2`)).status).toBe(client.followsRedirects === false ? 302 : 200)
    expect(api2.seen.map((s) => s.path)).toEqual(client.followsRedirects === false ? [] : ['/landed'])
    expect(noCredentials(api2.seen)).toBe(true)
  })

  it('step-up approvals are scoped: an approval for the API is not reused for another listed origin asking the same level', async () => {
    kit.rs.requireStepUp('/admin', { acr_values: 'urn:bound:mfa' })
    api2.handle = (_req, res) => void res.writeHead(401, { 'www-authenticate': 'DPoP error="insufficient_user_authentication", acr_values="urn:bound:mfa"' }).end()
    const asked: string[] = []
    const client = await make({ onStepUp: (c) => (asked.push(c.origin), { acr_values: c.acrValues!.join(' ') }) })
    const ok = await client.call(`${kit.api}/admin/approve`)
    expect(JSON.parse(await ok.text())).toMatchObject({ acr: 'urn:bound:mfa' })
    await (await client.call(`${api2.origin}/admin/delete-everything`)).text()
    expect(asked).toEqual([kit.api, api2.origin]) // its own onStepUp call
    // the first request to api2 carried the plain token, never the step-up token earned for the API
    const first = api2.seen[0]!.authorization!.replace(/^DPoP /, '')
    expect(JSON.parse(Buffer.from(first.split('.')[1]!, 'base64url').toString()).acr).toBeUndefined()
  })

  it('acceptedAcrValues: a level outside the allow-list never reaches onStepUp', async () => {
    api2.handle = (_req, res) => void res.writeHead(401, { 'www-authenticate': 'DPoP error="insufficient_user_authentication", acr_values="urn:evil:push-me"' }).end()
    let asked = 0
    const client = await make({ acceptedAcrValues: ['urn:bound:mfa'], onStepUp: () => (asked++, { acr_values: 'x' }) })
    const res = await client.call(`${api2.origin}/admin`)
    expect(res.status).toBe(401)
    expect(res.stepUpError).toBe('ERR_STEP_UP_REQUIRED')
    expect(asked).toBe(0)
  })

  it('a listed API asking a new level on every request is prompted at most 3 times a minute', async () => {
    let n = 0
    api2.handle = (_req, res) => void res.writeHead(401, { 'www-authenticate': `DPoP error="insufficient_user_authentication", acr_values="urn:level:${++n}"` }).end()
    let asked = 0
    const client = await make({ onStepUp: () => (asked++, false) })
    for (let i = 0; i < 8; i++) await (await client.call(`${api2.origin}/admin/${i}`)).text()
    expect(asked).toBe(3)
  })
})

describe('SEC: the undici interceptor decides the destination from the origin alone', () => {
  it('a credentialed origin with a path that is not origin-form is refused before any network call', async () => {
    const session = await newSession()
    const dispatcher = userAgent().compose(boundInterceptor({ session, origins: [kit.api] }))
    kit.rs.resetCounters()
    for (const path of [`//${new URL(evil.origin).host}/x`, '/\\evil.example/x', `${evil.origin}/x`, '*']) {
      await expect(dispatcher.request({ origin: kit.api, path, method: 'GET' })).rejects.toMatchObject({ code: 'ERR_INVALID_INPUT' })
    }
    expect(kit.rs.counters().requests).toBe(0)
    expect(evil.seen).toEqual([])
  })

  it('otherOrigins: "error" refuses the //api-host confusion too, and evil gets nothing', async () => {
    const session = await newSession()
    const dispatcher = userAgent().compose(boundInterceptor({ session, origins: [kit.api], otherOrigins: 'error' }))
    await expect(request(`${evil.origin}//${new URL(kit.api).host}/orders`, { dispatcher })).rejects.toMatchObject({ code: 'ERR_ORIGIN_NOT_ALLOWED' })
    expect(evil.seen).toEqual([])
  })

  it('a redirect interceptor composed inside Bound’s (the unsafe order) does not follow a credentialed redirect: the proof never travels', async () => {
    const session = await newSession()
    const dispatcher = userAgent().compose(interceptors.redirect({ maxRedirections: 3 }), boundInterceptor({ session, origins: [kit.api] }))
    const res = await request(`${kit.api}/to-evil`, { dispatcher })
    await res.body.dump()
    expect(res.statusCode).toBe(302) // handed back; compose redirect after Bound's to follow it safely
    expect(evil.seen).toEqual([])
  })

  it('mTLS: credentialed requests go over the session’s certificate, the user’s Agent presents none elsewhere', async () => {
    const c = kit.clients.tlsClientAuth
    const session = createSession({ issuer: kit.issuer, clientId: c.clientId, clientAuth: tlsClientAuth(), grant: clientCredentials({ resource: kit.resource }), clientCertificate: { cert: c.certificate.certPem, key: c.certificate.keyPem }, ca: kit.ca })
    sessions.push(session)
    const dispatcher = userAgent().compose(boundInterceptor({ session, origins: [kit.api] }))
    const ok = await request(`${kit.api}/orders`, { dispatcher })
    expect(await ok.body.json()).toMatchObject({ binding: 'mtls', x5t: c.certificate.x5tS256 })
    await (await request(`${evil.origin}/plain`, { dispatcher })).body.dump()
    expect(evil.seen).toEqual([{ path: '/plain', authorization: undefined, dpop: undefined, peer: undefined }])
    // the session exposes no certificate-presenting dispatcher to compose onto
    expect('dispatcher' in session.transport).toBe(false)
  })
})

describe('SEC: configured resource and scope never vanish, and the cache stays bounded', () => {
  it('after other needs evict the default entry, its token is earned again with the configured resource and scope', async () => {
    const session = await newSession({ maxCachedTokens: 2 })
    const fetch = createBoundFetch({ session, origins: [kit.api] })
    expect(await (await fetch(`${kit.api}/whoami`)).json()).toMatchObject({ aud: kit.resource, scope: 'orders:read' })
    // other needs (granted or refused) take the two places; the default entry, unused meanwhile, goes
    for (let i = 0; i < 4; i++) await session.token({ scope: `orders:read churn:${i}` }).catch(() => undefined)
    kit.as.resetCounters()
    expect(await (await fetch(`${kit.api}/whoami`)).json()).toMatchObject({ aud: kit.resource, scope: 'orders:read' })
    expect(kit.as.counters().tokensIssued).toBe(1) // evicted, and re-earned with its own parameters
  })

  it('a distinct claims challenge per request costs one token request each and leaves no extra cached token', async () => {
    let n = 0
    api2.handle = (req, res) => {
      if (req.headers.authorization && n > 0 && api2.seen.length % 2 === 0) return void res.writeHead(200).end('ok')
      const claims = Buffer.from(JSON.stringify({ access_token: { nonce_claim: { value: `v${++n}` } } })).toString('base64url')
      res.writeHead(401, { 'www-authenticate': `DPoP error="insufficient_claims", claims="${claims}"` }).end()
    }
    const session = await newSession()
    const fetch = createBoundFetch({ session, origins: [api2.origin] })
    const acquired: string[] = []
    session.events.on('token.acquired', (e) => acquired.push(e.cacheKey))
    for (let i = 0; i < 10; i++) await (await fetch(`${api2.origin}/x`)).text()
    expect(acquired.length).toBeLessThanOrEqual(11)
    expect(new Set(acquired).size).toBe(1) // claims never make a new cache key
  })
})

describe('SEC: an unpinned session hands its client credentials to no AS that metadata alone chose', () => {
  let evilAsHits = 0
  let evilAs: Hostile
  beforeAll(async () => {
    evilAs = await hostile()
    evilAs.handle = (req, res) => {
      evilAsHits++
      if (req.url?.startsWith('/.well-known/')) return void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ issuer: evilAs.origin, token_endpoint: `${evilAs.origin}/token` }))
      res.writeHead(400, { 'content-type': 'application/json' }).end('{"error":"invalid_request"}')
    }
  })
  afterAll(() => new Promise((r) => evilAs.server.close(r)))
  beforeEach(() => {
    evilAsHits = 0
    api2.handle = (req, res) => {
      if (req.url?.startsWith('/.well-known/oauth-protected-resource')) return void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ resource: `${api2.origin}/tools`, authorization_servers: [evilAs.origin] }))
      res.writeHead(401, { 'www-authenticate': `Bearer resource_metadata="${api2.origin}/.well-known/oauth-protected-resource"` }).end()
    }
  })

  it.each(Object.keys(integrations))('a confidential client (client_secret_basic, no issuer): ERR_INVALID_CONFIG through the %s, and the hostile AS sees nothing', async (name) => {
    const session = createSession({ clientId: 'c', clientAuth: clientSecretBasic('the-secret'), grant: clientCredentials(), dpop: await generateDpopKey(), ca: kit.ca })
    sessions.push(session)
    const client = await integrations[name]!({ origins: [api2.origin] }, session)
    await expect(client.call(`${api2.origin}/tools`)).rejects.toMatchObject({ code: 'ERR_INVALID_CONFIG', message: expect.stringContaining('trustedIssuers') })
    expect(evilAsHits).toBe(0)
  })

  it('a public client (no client authentication) may follow the metadata, as MCP clients do', async () => {
    const session = createSession({ clientId: 'c', clientAuth: noClientAuth(), grant: clientCredentials(), dpop: await generateDpopKey(), ca: kit.ca })
    sessions.push(session)
    await createBoundFetch({ session, origins: [api2.origin] })(`${api2.origin}/tools`).catch(() => undefined)
    expect(session.issuer).toBe(evilAs.origin)
    expect(evilAsHits).toBeGreaterThan(0)
  })

  it('trustedIssuers lets a confidential client follow an AS it names', async () => {
    const session = createSession({ clientId: 'c', clientAuth: clientSecretBasic('s'), grant: clientCredentials(), trustedIssuers: [evilAs.origin], ca: kit.ca })
    sessions.push(session)
    await createBoundFetch({ session, origins: [api2.origin] })(`${api2.origin}/tools`).catch(() => undefined)
    expect(session.issuer).toBe(evilAs.origin)
  })

  it('authorization_servers pass the resource_metadata guard: no loopback AS for a non-loopback resource, no plain http, no userinfo', () => {
    const session = createSession({ clientId: 'c', grant: clientCredentials() })
    sessions.push(session)
    for (const as of ['https://127.0.0.1:9/', 'http://as.example.com', 'https://u:pw@as.example.com']) {
      expect(() => session.useResourceMetadata({ resource: 'https://api.example.com', authorization_servers: [as] })).toThrow()
    }
    expect(session.issuer).toBeUndefined()
  })
})

describe('SEC: userinfo in a configured URL is refused, and never echoed', () => {
  const secret = 'pa55-in-url'
  const cases: [string, () => unknown][] = [
    ['issuer', () => createSession({ issuer: `https://svc:${secret}@as.example.com`, clientId: 'c', grant: clientCredentials() })],
    ['tokenEndpoint', () => createSession({ tokenEndpoint: `https://svc:${secret}@as.example.com/token`, clientId: 'c', grant: clientCredentials() })],
    ['revocationEndpoint', () => createSession({ issuer: 'https://as.example.com', revocationEndpoint: `https://svc:${secret}@as.example.com/revoke`, clientId: 'c', grant: clientCredentials() })],
    ['trustedIssuers', () => createSession({ trustedIssuers: [`https://svc:${secret}@as.example.com`], clientId: 'c', grant: clientCredentials() })],
    ['grant resource', () => clientCredentials({ resource: `https://svc:${secret}@api.example.com` })],
    ['origins', () => createBoundFetch({ session: createSession({ clientId: 'c', grant: clientCredentials() }), origins: [`https://svc:${secret}@api.example.com`] })],
    ['resources', () => boundInterceptor({ session: createSession({ clientId: 'c', grant: clientCredentials() }), origins: ['https://api.example.com'], resources: { 'https://api.example.com': `https://svc:${secret}@api.example.com` } })],
    ['resourceMetadata.allowedOrigins', () => createBoundFetch({ session: createSession({ clientId: 'c', grant: clientCredentials() }), origins: ['https://api.example.com'], resourceMetadata: { allowedOrigins: [`https://svc:${secret}@meta.example.com`] } })],
  ]
  it.each(cases)('%s: ERR_INVALID_CONFIG; message, toJSON and util.inspect carry no secret', (_what, make) => {
    let err: unknown
    try {
      make()
    } catch (e) {
      err = e
    }
    expect(err).toMatchObject({ code: 'ERR_INVALID_CONFIG' })
    const shown = `${(err as Error).message} ${JSON.stringify(err)} ${inspect(err, { depth: 5 })}`
    expect(shown).not.toContain(secret)
  })

  it('an AS whose metadata names an endpoint with userinfo: refused, and no event or log line carries it', async () => {
    const as = await hostile()
    as.handle = (_req, res) => void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ issuer: as.origin, token_endpoint: `https://svc:${secret}@127.0.0.1:${new URL(as.origin).port}/token` }))
    const lines: string[] = []
    const logger = { debug: (...a: unknown[]) => lines.push(JSON.stringify(a)), info: (...a: unknown[]) => lines.push(JSON.stringify(a)), warn: (...a: unknown[]) => lines.push(JSON.stringify(a)), error: (...a: unknown[]) => lines.push(JSON.stringify(a)) }
    const session = createSession({ issuer: as.origin, clientId: 'c', grant: clientCredentials(), ca: kit.ca, telemetry: { logger } })
    sessions.push(session)
    session.events.on('token.failed', (e) => lines.push(JSON.stringify(e)))
    const err = await session.token().catch((e: unknown) => e)
    expect(err).toMatchObject({ code: 'ERR_INVALID_CONFIG' })
    expect(`${(err as Error).message} ${JSON.stringify(err)} ${inspect(err)} ${lines.join('\n')}`).not.toContain(secret)
    expect(lines.length).toBeGreaterThan(0)
    await new Promise((r) => as.server.close(r))
  })
})
