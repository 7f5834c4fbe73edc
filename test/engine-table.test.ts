import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { Agent, fetch as undiciFetch, interceptors, request, type Dispatcher } from 'undici'
import { startTestkit, type Testkit } from '@bound/testkit'
import { boundInterceptor, createBoundFetch, type BoundOptions } from '@bound/fetch'
import { clientCredentials, clientSecretBasic, createSession, type Session } from '@bound/oauth'
import { generateDpopKey } from '@bound/dpop'
import { createBoundAxios } from '@bound/axios'
import { createBoundGot } from '@bound/got'

// One table of scenarios, run through the fetch wrapper, the undici interceptor, the axios adapter
// and the got hooks: all sit on the same challenge engine, so all must behave the same.
let kit: Testkit
const sessions: Session[] = []
beforeAll(async () => {
  kit = await startTestkit()
  let flaky = 0
  kit.rs.route('/flaky', ({ res }) => void (++flaky % 2 === 1 ? res.writeHead(503).end() : res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}')))
})
beforeEach(() => {
  kit.rs.clearStepUp()
  kit.rs.clearClaims()
  kit.rs.clearScope()
  kit.rs.clearRevocations()
})
afterAll(async () => {
  await Promise.all(sessions.map((s) => s.close()))
  await Promise.all(agents.map((a) => a.close()))
  await kit?.close()
})

/** The user's own dispatcher: trusts the testkit's CA, presents no client certificate. */
const agents: Agent[] = []
function userAgent() {
  const agent = new Agent({ connect: { ca: kit.ca } })
  agents.push(agent)
  return agent
}

interface Client {
  session: Session
  call(path: string, init?: { method?: string; body?: string }): Promise<{ status: number; json(): Promise<Record<string, unknown>> }>
}
type Extra = Partial<Omit<BoundOptions, 'session' | 'origins'>>

async function newSession() {
  const c = kit.clients.secretBasic
  const session = createSession({ issuer: kit.issuer, clientId: c.clientId, clientAuth: clientSecretBasic(c.clientSecret), grant: clientCredentials({ resource: kit.resource, scope: 'orders:read' }), dpop: await generateDpopKey(), ca: kit.ca })
  sessions.push(session)
  return session
}

/** `undici.request` on the dispatcher `compose` makes around Bound's interceptor. */
async function viaRequest(extra: Extra, compose: (bound: Dispatcher.DispatcherComposeInterceptor) => Dispatcher): Promise<Client> {
  const session = await newSession()
  const dispatcher = compose(boundInterceptor({ session, origins: [kit.api], ...extra }))
  return {
    session,
    call: async (path, init) => {
      const r = await request(`${kit.api}${path}`, { dispatcher, method: (init?.method ?? 'GET') as Dispatcher.HttpMethod, body: init?.body })
      return { status: r.statusCode, json: () => r.body.json() as Promise<Record<string, unknown>> }
    },
  }
}

const clients: Record<string, (extra?: Extra) => Promise<Client>> = {
  'fetch wrapper': async (extra = {}) => {
    const session = await newSession()
    const fetch = createBoundFetch({ session, origins: [kit.api], ...extra })
    return { session, call: async (path, init) => { const r = await fetch(`${kit.api}${path}`, init); return { status: r.status, json: () => r.json() as Promise<Record<string, unknown>> } } }
  },
  'undici interceptor': (extra = {}) => viaRequest(extra, (bound) => userAgent().compose(bound, interceptors.retry({ maxRetries: 2, minTimeout: 10 }))),
  // (nothing composed after Bound's: undici.request's and fetch's own handlers reach it directly —
  // the callback interface of undici 7, not the controller one the retry interceptor speaks)
  'undici.request, interceptor alone': (extra = {}) => viaRequest(extra, (bound) => userAgent().compose(bound)),
  'undici fetch on the composed agent': async (extra = {}) => {
    const session = await newSession()
    const dispatcher = userAgent().compose(boundInterceptor({ session, origins: [kit.api], ...extra }))
    return {
      session,
      call: async (path, init) => {
        const r = await undiciFetch(`${kit.api}${path}`, { dispatcher, method: init?.method ?? 'GET', body: init?.body })
        return { status: r.status, json: () => r.json() as Promise<Record<string, unknown>> }
      },
    }
  },
  'axios adapter': async (extra = {}) => {
    const session = await newSession()
    const api = createBoundAxios({ session, origins: [kit.api], ...extra }, { baseURL: kit.api, validateStatus: () => true, responseType: 'text', transformResponse: (d: unknown) => d })
    return {
      session,
      call: async (path, init) => {
        const r = await api.request({ url: path, method: init?.method ?? 'GET', data: init?.body })
        return { status: r.status, json: async () => JSON.parse(r.data as string) as Record<string, unknown> }
      },
    }
  },
  'got hooks': async (extra = {}) => {
    const session = await newSession()
    const api = createBoundGot({ session, origins: [kit.api], ...extra }, { throwHttpErrors: false, retry: { limit: 2, statusCodes: [503], methods: ['GET', 'POST'] } })
    return {
      session,
      call: async (path, init) => {
        const r = await api(`${kit.api}${path}`, { method: (init?.method ?? 'GET') as 'GET', body: init?.body })
        return { status: r.statusCode, json: async () => JSON.parse(r.body) as Record<string, unknown> }
      },
    }
  },
}

describe.each(Object.keys(clients))('the same engine through the %s', (name) => {
  const make = clients[name]!
  it('earns a DPoP-bound token, answers both nonce challenges, and the RS verifies the request', async () => {
    const client = await make()
    const res = await client.call('/orders')
    expect(res.status).toBe(200)
    expect(await res.json()).toMatchObject({ binding: 'dpop', jkt: client.session.dpop!.jkt })
  })
  it('answers a nonce rotation with a new proof and the same token', async () => {
    const client = await make()
    expect((await client.call('/orders')).status).toBe(200)
    const token = await client.session.token()
    kit.rs.rotateNonce()
    expect((await client.call('/orders', { method: 'POST', body: 'x' })).status).toBe(200)
    expect((await client.session.token()).value).toBe(token.value)
  })
  it('recovers from a revocation with one new token', async () => {
    const client = await make()
    expect((await client.call('/orders')).status).toBe(200)
    kit.rs.revokeToken((await client.session.token()).value)
    kit.as.resetCounters()
    expect((await client.call('/orders')).status).toBe(200)
    expect(kit.as.counters().tokensIssued).toBe(1)
  })
  it('steps up through onStepUp', async () => {
    kit.rs.requireStepUp('/admin', { acr_values: 'urn:bound:mfa' })
    const client = await make({ onStepUp: (c) => ({ acr_values: c.acrValues!.join(' ') }) })
    expect(await (await client.call('/admin/x')).json()).toMatchObject({ acr: 'urn:bound:mfa' })
  })
  it('STEP-03: 60 concurrent requests meeting one step-up level share one onStepUp call, and all succeed', async () => {
    kit.rs.requireStepUp('/admin', { acr_values: 'urn:bound:mfa' })
    let calls = 0
    const client = await make({ onStepUp: async (c) => (calls++, await new Promise((r) => setTimeout(r, 30)), { acr_values: c.acrValues!.join(' ') }) })
    expect((await client.call('/orders')).status).toBe(200) // a token at hand: the requests below start on the fast path
    const statuses = await Promise.all(Array.from({ length: 60 }, () => client.call('/admin/users').then((r) => r.status)))
    expect(statuses.filter((s) => s !== 200)).toEqual([])
    expect(calls).toBe(1)
  })
  it('answers a claims challenge', async () => {
    kit.rs.requireClaims('/pay', { access_token: { acrs: { essential: true, value: 'cp1' } } })
    const client = await make()
    expect((await client.call('/pay')).status).toBe(200)
  })
  it('widens the scope once on insufficient_scope', async () => {
    kit.rs.requireScope('/write', 'orders:write')
    const client = await make()
    expect((await client.call('/write/1', { method: 'POST', body: '{}' })).status).toBe(200)
  })
  it('returns a refused step-up (no onStepUp) as the 401 it is', async () => {
    kit.rs.requireStepUp('/admin', { acr_values: 'urn:bound:mfa' })
    const client = await make()
    expect((await client.call('/admin/x')).status).toBe(401)
  })
})

describe('the interceptor composed with undici’s retry interceptor', () => {
  it('every retry gets a fresh proof when retry is the outer interceptor (listed last)', async () => {
    const session = await newSession()
    const dispatcher = userAgent().compose(boundInterceptor({ session, origins: [kit.api] }), interceptors.retry({ maxRetries: 2, minTimeout: 10, statusCodes: [503] }))
    kit.rs.resetCounters()
    const res = await request(`${kit.api}/flaky`, { dispatcher })
    expect(res.statusCode).toBe(200)
    await res.body.dump()
    expect(kit.rs.counters()).toMatchObject({ replayedJti: 0, rejectedProofs: 0 })
  })
  it('in the other order, the retry would replay the same proof — and the RS refuses it', async () => {
    const session = await newSession()
    const dispatcher = userAgent().compose(interceptors.retry({ maxRetries: 2, minTimeout: 10, statusCodes: [503] }), boundInterceptor({ session, origins: [kit.api] }))
    await (await request(`${kit.api}/orders`, { dispatcher })).body.dump() // learn the nonce first
    kit.rs.resetCounters()
    const res = await request(`${kit.api}/flaky`, { dispatcher })
    await res.body.dump()
    expect(kit.rs.counters().replayedJti).toBeGreaterThanOrEqual(1)
  })
})
