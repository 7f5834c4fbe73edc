import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { createServer, type Server } from 'node:http'
import { Agent, fetch as undiciFetch, interceptors, request, stream, type Dispatcher } from 'undici'
import { Writable } from 'node:stream'
import { startTestkit, type Testkit } from '@bound/testkit'
import { boundInterceptor, createBoundFetch } from '@bound/fetch'
import { createBoundAxios } from '@bound/axios'
import { createBoundGot } from '@bound/got'
import { clientCredentials, clientSecretBasic, createSession, type Session } from '@bound/oauth'
import { generateDpopKey } from '@bound/dpop'

// A request's lifecycle — abort, a failure while a response is held, bodies, upgrade requests —
// through the interceptor, by each interface undici calls it with: the callback one of undici 7's
// own handlers (`request`, `stream`, `fetch` with nothing composed after Bound's) and the controller
// one (the retry and redirect interceptors composed after it, as the README says); and a failure
// while a response is held through every other integration.
let kit: Testkit
let slow: Server
let slowOrigin: string
let openSockets = 0
const sessions: Session[] = []
const agents: Agent[] = []
beforeAll(async () => {
  kit = await startTestkit()
  kit.rs.route('/slow-headers', ({ res }) => void setTimeout(() => res.writeHead(200).end('late'), 10_000).unref())
  kit.rs.route('/echo', ({ res, body }) => void res.writeHead(200, { 'content-type': 'text/plain' }).end(`${body.length}:${body.toString()}`))
  // a listed API that answers 401 insufficient_scope with a body and keeps the connection open
  slow = createServer((req, res) => {
    req.resume()
    res.writeHead(401, { 'www-authenticate': 'DPoP error="insufficient_scope", scope="more"', 'content-type': 'text/plain' })
    res.write('held body')
  })
  slow.on('connection', (socket) => {
    openSockets++
    socket.once('close', () => openSockets--)
  })
  await new Promise<void>((r) => slow.listen(0, '127.0.0.1', r))
  slowOrigin = `http://127.0.0.1:${(slow.address() as { port: number }).port}`
})
beforeEach(() => kit.as.setFault(undefined))
afterAll(async () => {
  kit.as.setFault(undefined)
  await Promise.all(sessions.map((s) => s.close()))
  await Promise.all(agents.map((a) => a.destroy()))
  slow.closeAllConnections()
  await new Promise((r) => slow.close(r))
  await kit?.close()
})

async function newSession() {
  const c = kit.clients.secretBasic
  const session = createSession({ issuer: kit.issuer, clientId: c.clientId, clientAuth: clientSecretBasic(c.clientSecret), grant: clientCredentials({ resource: kit.resource, scope: 'orders:read' }), dpop: await generateDpopKey(), ca: kit.ca })
  sessions.push(session)
  return session
}
function agent() {
  const a = new Agent({ connect: { ca: kit.ca } })
  agents.push(a)
  return a
}

type Compose = (extra?: Partial<Parameters<typeof boundInterceptor>[0]>) => Promise<Dispatcher>
const composes: Record<string, Compose> = {
  'interceptor alone (undici’s callback interface)': async (extra = {}) => agent().compose(boundInterceptor({ session: await newSession(), origins: [kit.api, slowOrigin], ...extra })),
  'retry and redirect after it (the controller interface)': async (extra = {}) =>
    agent().compose(boundInterceptor({ session: await newSession(), origins: [kit.api, slowOrigin], ...extra }), interceptors.retry({ maxRetries: 1, minTimeout: 10 }), interceptors.redirect({ maxRedirections: 3 })),
}

describe.each(Object.keys(composes))('the interceptor, %s', (name) => {
  const compose = composes[name]!

  it('an abort before the response starts reaches the caller at once (never a hang)', async () => {
    const dispatcher = await compose()
    await (await request(`${kit.api}/orders`, { dispatcher })).body.dump() // a token is held: the fast path
    const started = Date.now()
    await expect(request(`${kit.api}/slow-headers`, { dispatcher, signal: AbortSignal.timeout(100) })).rejects.toMatchObject({ name: 'TimeoutError' })
    await expect(undiciFetch(`${kit.api}/slow-headers`, { dispatcher, signal: AbortSignal.timeout(100) })).rejects.toMatchObject({ name: 'TimeoutError' })
    expect(Date.now() - started).toBeLessThan(5_000)
  })

  it('a handler that aborts as its request starts gets one error, and nothing reaches the network', async () => {
    const dispatcher = await compose()
    await (await request(`${kit.api}/orders`, { dispatcher })).body.dump() // a token at hand: the fast path
    kit.rs.resetCounters()
    const errors: Error[] = []
    const opts = { origin: kit.api, path: '/orders', method: 'GET' } as Dispatcher.DispatchOptions
    // the controller interface
    dispatcher.dispatch(opts, {
      onRequestStart: (controller) => controller.abort(new Error('changed my mind')),
      onResponseError: (_c, err) => void errors.push(err),
    })
    // undici 7's callback interface
    dispatcher.dispatch(opts, {
      onConnect: (abort: (err?: Error) => void) => abort(new Error('changed my mind too')),
      onHeaders: () => true,
      onData: () => true,
      onComplete: () => {},
      onError: (err: Error) => void errors.push(err),
    } as unknown as Dispatcher.DispatchHandler)
    await new Promise((r) => setTimeout(r, 200))
    expect(errors.map((e) => e.message)).toEqual(['changed my mind', 'changed my mind too'])
    expect(kit.rs.counters().requests).toBe(0)
  })

  it('an abort while the token request hangs at the AS reaches the caller at once', async () => {
    const dispatcher = await compose()
    kit.as.setFault({ kind: 'hang' })
    await expect(request(`${kit.api}/orders`, { dispatcher, signal: AbortSignal.timeout(200) })).rejects.toMatchObject({ name: 'TimeoutError' })
    kit.as.setFault(undefined)
    // the session is not stuck: the next request earns and goes
    expect((await request(`${kit.api}/orders`, { dispatcher })).statusCode).toBe(200)
  })

  it('SEC-06: a handler that gives up on a held challenge (onInsufficientScope throws): the caller gets the error, the held response is let go', async () => {
    const dispatcher = await compose({ onInsufficientScope: () => { throw new Error('no widening today') } })
    await expect(request(`${slowOrigin}/x`, { dispatcher, signal: AbortSignal.timeout(5_000) })).rejects.toThrow('no widening today')
    // the held response (its body never ends) is aborted: its connection closes, nothing waits on it
    for (let i = 0; i < 100 && openSockets > 0; i++) await new Promise((r) => setTimeout(r, 20))
    expect(openSockets).toBe(0)
  })

  it('bodies: a string is sent again after a nonce challenge; a fetch body of known length too; a stream of unknown length once', async () => {
    const dispatcher = await compose()
    kit.rs.rotateNonce() // the first attempt meets use_dpop_nonce
    const r1 = await request(`${kit.api}/echo`, { dispatcher, method: 'POST', body: 'hello' })
    expect(await r1.body.text()).toBe('5:hello')
    kit.rs.rotateNonce()
    const r2 = await undiciFetch(`${kit.api}/echo`, { dispatcher, method: 'POST', body: 'from fetch' })
    expect(await r2.text()).toBe('10:from fetch')
    kit.rs.rotateNonce()
    const r3 = await undiciFetch(`${kit.api}/echo`, { dispatcher, method: 'POST', body: new Blob(['a'.repeat(70_000)]).stream() as never, duplex: 'half' })
    expect(r3.status).toBe(401) // more than 64 KiB of unknown length: sent once, the challenge comes back
    await r3.arrayBuffer()
  })

  it('undici.stream gets the body (the callback interface end to end)', async () => {
    const dispatcher = await compose()
    const chunks: Buffer[] = []
    await stream(`${kit.api}/orders`, { dispatcher, method: 'GET' }, ({ statusCode }) => {
      expect(statusCode).toBe(200)
      return new Writable({ write: (chunk: Buffer, _e, cb) => (chunks.push(chunk), cb()) })
    })
    expect(JSON.parse(Buffer.concat(chunks).toString())).toMatchObject({ binding: 'dpop' })
  })

  it('an upgrade (WebSocket) or CONNECT request to a listed origin is refused with ERR_INVALID_INPUT, no network call', async () => {
    const dispatcher = await compose()
    kit.rs.resetCounters()
    await expect(dispatcher.upgrade({ path: '/ws', origin: kit.api, protocol: 'websocket' } as Dispatcher.UpgradeOptions & { origin: string })).rejects.toMatchObject({ code: 'ERR_INVALID_INPUT' })
    expect(kit.rs.counters().requests).toBe(0)
  })
})

describe('every integration: the engine gives up while it holds a challenge (onInsufficientScope throws)', () => {
  const fail = { onInsufficientScope: () => { throw new Error('no widening today') } }
  const calls: Record<string, (session: Session) => (url: string) => Promise<unknown>> = {
    'bound fetch': (session) => { const f = createBoundFetch({ session, origins: [slowOrigin], ...fail }); return (url) => f(url) },
    'axios adapter': (session) => { const a = createBoundAxios({ session, origins: [slowOrigin], ...fail }); return (url) => a.get(url) },
    'got hooks': (session) => { const g = createBoundGot({ session, origins: [slowOrigin], ...fail }, { retry: { limit: 0 } }); return (url) => g(url) },
  }
  it.each(Object.keys(calls))('SEC-06, %s: the caller gets the error and the held response’s connection closes at once', async (name) => {
    const call = calls[name]!(await newSession())
    await expect(call(`${slowOrigin}/x`)).rejects.toThrow('no widening today')
    for (let i = 0; i < 100 && openSockets > 0; i++) await new Promise((r) => setTimeout(r, 20))
    expect(openSockets).toBe(0)
  })
})
