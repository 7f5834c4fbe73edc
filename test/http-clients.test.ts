import { createServer as createHttpsServer, type Server } from 'node:https'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { TLSSocket } from 'node:tls'
import type { AddressInfo } from 'node:net'
import { Readable } from 'node:stream'
import { gzipSync } from 'node:zlib'
import { Agent as HttpsAgent } from 'node:https'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import axios, { AxiosError } from 'axios'
import got, { HTTPError, RequestError } from 'got'
import { startTestkit, type Testkit } from '@bound/testkit'
import { boundAdapter, createBoundAxios, getChallenges as axiosChallenges } from '@bound/axios'
import { boundHooks, createBoundGot, getChallenges as gotChallenges } from '@bound/got'
import { clientCredentials, clientSecretBasic, createSession, tlsClientAuth, type Session, type SessionOptions } from '@bound/oauth'
import { generateDpopKey } from '@bound/dpop'
import { isBoundError } from '@bound/core'

// Issue 14: what is particular to the axios adapter and the got hooks — each client's own URL
// building, options, errors and body forms — against the testkit's real AS and verifying RS and a
// hostile HTTPS server. The shared scenarios (challenges, leaks) run through both in
// engine-table.test.ts and leaks.test.ts.

interface Seen { path: string; authorization: string | undefined; dpop: string | undefined; peer: string | undefined }
let kit: Testkit
let evil: { origin: string; seen: Seen[]; server: Server }
const sessions: Session[] = []
let flaky = 0

beforeAll(async () => {
  kit = await startTestkit()
  const seen: Seen[] = []
  const server = createHttpsServer({ key: kit.pki.server.keyPem, cert: kit.pki.server.certPem, requestCert: true, rejectUnauthorized: false }, (req: IncomingMessage, res: ServerResponse) => {
    const peer = (req.socket as TLSSocket).getPeerCertificate()
    seen.push({ path: req.url ?? '', authorization: req.headers.authorization, dpop: req.headers.dpop as string | undefined, peer: peer?.subject?.CN as string | undefined })
    res.writeHead(200, { 'content-type': 'application/json' }).end('{"hostile":true}')
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  evil = { origin: `https://127.0.0.1:${(server.address() as AddressInfo).port}`, seen, server }
  kit.rs.route('/flaky', ({ res }) => void (++flaky % 2 === 1 ? res.writeHead(503).end() : res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}')))
  kit.rs.route('/hang', () => {})
  kit.rs.route('/big', ({ res }) => void res.writeHead(200, { 'content-type': 'text/plain' }).end('x'.repeat(100_000)))
  kit.rs.route('/gzip', ({ res }) => void res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'gzip' }).end(gzipSync('{"zipped":true}')))
  kit.rs.route('/to-plain', ({ res }) => void res.writeHead(302, { location: 'http://bound.invalid/landed' }).end())
  kit.rs.route('/to-evil', ({ res }) => void res.writeHead(302, { location: `${evil.origin}/landed` }).end())
})
beforeEach(() => {
  evil.seen.length = 0
  kit.rs.clearStepUp()
})
afterAll(async () => {
  await Promise.all(sessions.map((s) => s.close()))
  await new Promise((r) => evil?.server.close(r))
  await kit?.close()
})

async function newSession(over: Partial<SessionOptions> = {}) {
  const c = kit.clients.secretBasic
  const session = createSession({ issuer: kit.issuer, clientId: c.clientId, clientAuth: clientSecretBasic(c.clientSecret), grant: clientCredentials({ resource: kit.resource }), dpop: await generateDpopKey(), ca: kit.ca, ...over })
  sessions.push(session)
  return session
}
const noCredentials = (seen: Seen[]) => seen.every((s) => s.authorization === undefined && s.dpop === undefined && s.peer === undefined)
/** A loopback port nobody listens on. */
async function closedPort() {
  const s = createHttpsServer()
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r))
  const port = (s.address() as AddressInfo).port
  await new Promise((r) => s.close(r))
  return port
}

describe('the axios adapter', () => {
  it('a JSON POST with params goes out DPoP-bound and comes back parsed by axios', async () => {
    const session = await newSession()
    const api = createBoundAxios({ session, origins: [kit.api] }, { baseURL: kit.api })
    const { data, status, headers } = await api.post('/orders', { item: 'tea' }, { params: { page: 2 } })
    expect(status).toBe(200)
    expect(data).toMatchObject({ method: 'POST', path: '/orders', binding: 'dpop', jkt: session.dpop!.jkt, body: '{"item":"tea"}' })
    expect(headers['content-type']).toContain('application/json')
    expect(kit.rs.seen().at(-1)).toMatchObject({ status: 200 })
  })

  it('SEC: an absolute URL overriding baseURL reaches the other origin without credentials; with otherOrigins "error" nothing is sent', async () => {
    const session = await newSession()
    const api = axios.create({ baseURL: kit.api, adapter: boundAdapter({ session, origins: [kit.api] }) })
    expect((await api.get('/orders')).status).toBe(200) // a token is held
    expect((await api.get(`${evil.origin}/x`)).data).toEqual({ hostile: true })
    const strict = axios.create({ baseURL: kit.api, adapter: boundAdapter({ session, origins: [kit.api], otherOrigins: 'error' }) })
    const err = await strict.get(`${evil.origin}/y`).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(AxiosError)
    expect(err).toMatchObject({ code: 'ERR_ORIGIN_NOT_ALLOWED' })
    expect(isBoundError((err as AxiosError).cause, 'ERR_ORIGIN_NOT_ALLOWED')).toBe(true)
    expect(evil.seen.map((s) => s.path)).toEqual(['/x'])
    expect(noCredentials(evil.seen)).toBe(true)
  })

  it('SEC: a protocol-relative url (//evil-host/…) under baseURL is refused before any network call', async () => {
    const session = await newSession()
    const api = createBoundAxios({ session, origins: [kit.api] }, { baseURL: kit.api })
    const err = await api.get(`//${new URL(evil.origin).host}/orders`).catch((e: unknown) => e)
    expect(err).toMatchObject({ code: AxiosError.ERR_INVALID_URL })
    expect(evil.seen).toEqual([])
  })

  it('SEC: settings that would bypass the session’s transport are refused, naming the option and what to use', async () => {
    const session = await newSession()
    const api = createBoundAxios({ session, origins: [kit.api] }, { baseURL: kit.api })
    for (const config of [{ httpsAgent: new HttpsAgent() }, { proxy: { protocol: 'http', host: '127.0.0.1', port: 3128 } }, { socketPath: '/tmp/x.sock' }]) {
      const err = await api.get('/orders', config).catch((e: unknown) => e)
      expect(isBoundError(err, 'ERR_INVALID_CONFIG')).toBe(true)
      expect((err as Error).message).toContain(Object.keys(config)[0])
    }
  })

  it('SEC: a redirect from https to plain http is refused; a redirect elsewhere carries no credentials (DPOP-29)', async () => {
    const session = await newSession()
    const api = createBoundAxios({ session, origins: [kit.api] }, { baseURL: kit.api })
    await expect(api.get('/to-plain')).rejects.toMatchObject({ code: 'ERR_INSECURE_TRANSPORT' })
    expect((await api.get('/to-evil')).data).toEqual({ hostile: true })
    expect(noCredentials(evil.seen)).toBe(true)
    // maxRedirects: 0 hands the redirect back, which axios's default validateStatus rejects
    await expect(api.get('/to-evil', { maxRedirects: 0 })).rejects.toMatchObject({ response: { status: 302 } })
  })

  it('timeout, cancellation and maxContentLength give axios’s own errors; a refused connection keeps its system code', async () => {
    const session = await newSession()
    const api = createBoundAxios({ session, origins: [kit.api] }, { baseURL: kit.api })
    await expect(api.get('/hang', { timeout: 300 })).rejects.toMatchObject({ code: AxiosError.ECONNABORTED, message: 'timeout of 300ms exceeded' })
    const controller = new AbortController()
    const pending = api.get('/hang', { signal: controller.signal })
    setTimeout(() => controller.abort(), 100)
    const canceled = await pending.catch((e: unknown) => e)
    expect(axios.isCancel(canceled)).toBe(true)
    await expect(api.get('/big', { maxContentLength: 1000 })).rejects.toMatchObject({ code: AxiosError.ERR_BAD_RESPONSE, message: 'maxContentLength size of 1000 exceeded' })
    const closed = `https://127.0.0.1:${await closedPort()}`
    const refused = await createBoundAxios({ session, origins: [closed] }).get(`${closed}/x`).catch((e: unknown) => e)
    expect(refused).toMatchObject({ code: 'ECONNREFUSED' })
    expect(isBoundError((refused as AxiosError).cause, 'ERR_NETWORK')).toBe(true)
  })

  it('a gzip body arrives decoded with its coding headers removed; responseType arraybuffer and stream work', async () => {
    const session = await newSession()
    const api = createBoundAxios({ session, origins: [kit.api] }, { baseURL: kit.api })
    const zipped = await api.get('/gzip')
    expect(zipped.data).toEqual({ zipped: true })
    expect(zipped.headers['content-encoding']).toBeUndefined()
    const buf = await api.get('/big', { responseType: 'arraybuffer' })
    expect(Buffer.isBuffer(buf.data) && buf.data.length).toBe(100_000)
    const streamed = await api.get('/big', { responseType: 'stream' })
    let n = 0
    for await (const chunk of streamed.data as Readable) n += (chunk as Buffer).length
    expect(n).toBe(100_000)
  })

  it('a streamed body is sent once: a nonce challenge on it is returned, never answered by sending it again', async () => {
    const session = await newSession()
    const api = createBoundAxios({ session, origins: [kit.api] }, { baseURL: kit.api, validateStatus: () => true })
    expect((await api.get('/orders')).status).toBe(200)
    kit.rs.rotateNonce()
    kit.rs.resetCounters()
    const res = await api.post('/orders', Readable.from([Buffer.from('chunk-1'), Buffer.from('chunk-2')]), { headers: { 'content-type': 'application/octet-stream' } })
    expect(res.status).toBe(401)
    expect(axiosChallenges(res).map((c) => c.kind)).toContain('dpop-nonce')
    expect(kit.rs.counters().requests).toBe(1)
  })

  it('a step-up Bound could not answer reaches the caller as an AxiosError whose challenges name ERR_STEP_UP_REQUIRED', async () => {
    kit.rs.requireStepUp('/admin', { acr_values: 'urn:bound:mfa' })
    const session = await newSession()
    const err = await createBoundAxios({ session, origins: [kit.api] }, { baseURL: kit.api }).get('/admin/x').catch((e: unknown) => e)
    expect(err).toMatchObject({ code: AxiosError.ERR_BAD_REQUEST, response: { status: 401 } })
    expect(axiosChallenges(err).find((c) => c.boundError)?.boundError?.code).toBe('ERR_STEP_UP_REQUIRED')
  })

  it('mTLS: the certificate-bound token and the certificate go to the listed origin only', async () => {
    const c = kit.clients.tlsClientAuth
    const session = await newSession({ clientId: c.clientId, clientAuth: tlsClientAuth(), clientCertificate: { cert: c.certificate.certPem, key: c.certificate.keyPem }, dpop: undefined })
    const api = createBoundAxios({ session, origins: [kit.api] })
    expect((await api.get(`${kit.api}/orders`)).data).toMatchObject({ binding: 'mtls', x5t: c.certificate.x5tS256 })
    await api.get(`${evil.origin}/plain`)
    expect(evil.seen).toEqual([{ path: '/plain', authorization: undefined, dpop: undefined, peer: undefined }])
  })
})

describe('the got hooks', () => {
  it('a JSON POST goes out DPoP-bound and comes back parsed by got', async () => {
    const session = await newSession()
    const api = createBoundGot({ session, origins: [kit.api] }, { prefixUrl: kit.api })
    const order = await api.post('orders', { json: { item: 'tea' }, searchParams: { page: 2 } }).json()
    expect(order).toMatchObject({ method: 'POST', path: '/orders', binding: 'dpop', jkt: session.dpop!.jkt, body: '{"item":"tea"}' })
  })

  it('every got retry is a new request with a new proof: none replayed, none rejected', async () => {
    const session = await newSession()
    const api = got.extend({ hooks: boundHooks({ session, origins: [kit.api] }), retry: { limit: 2, statusCodes: [503], calculateDelay: ({ computedValue }) => (computedValue ? 10 : 0) } })
    expect((await api(`${kit.api}/orders`)).statusCode).toBe(200)
    flaky = 0
    kit.rs.resetCounters()
    const res = await api(`${kit.api}/flaky`)
    expect(res.statusCode).toBe(200)
    expect(res.retryCount).toBe(1)
    expect(kit.rs.counters()).toMatchObject({ requests: 2, replayedJti: 0, rejectedProofs: 0 })
  })

  it('SEC: another origin gets no credentials; otherOrigins "error" refuses it with got’s RequestError carrying Bound’s code', async () => {
    const session = await newSession()
    const api = createBoundGot({ session, origins: [kit.api] })
    expect((await api(`${kit.api}/orders`)).statusCode).toBe(200)
    expect(await api(`${evil.origin}/x`).json()).toEqual({ hostile: true })
    const err = await createBoundGot({ session, origins: [kit.api], otherOrigins: 'error' })(`${evil.origin}/y`).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(RequestError)
    expect(err).toMatchObject({ code: 'ERR_ORIGIN_NOT_ALLOWED' })
    expect(isBoundError((err as RequestError).cause, 'ERR_ORIGIN_NOT_ALLOWED')).toBe(true)
    expect(evil.seen.map((s) => s.path)).toEqual(['/x'])
    expect(noCredentials(evil.seen)).toBe(true)
  })

  it('SEC: a redirect from https to plain http is refused; a redirect elsewhere carries no credentials (DPOP-29)', async () => {
    const session = await newSession()
    const api = createBoundGot({ session, origins: [kit.api] }, { prefixUrl: kit.api })
    await expect(api('to-plain')).rejects.toMatchObject({ code: 'ERR_INSECURE_TRANSPORT' })
    expect(await api('to-evil').json()).toEqual({ hostile: true })
    expect(evil.seen.map((s) => s.path)).toEqual(['/landed'])
    expect(noCredentials(evil.seen)).toBe(true)
  })

  it('SEC: settings that would bypass the session’s transport are refused, naming the option', async () => {
    const session = await newSession()
    const api = createBoundGot({ session, origins: [kit.api] }, { prefixUrl: kit.api })
    for (const [name, extra] of [['agent', { agent: { https: new HttpsAgent() } }], ['https', { https: { certificateAuthority: kit.ca } }], ['https', { https: { rejectUnauthorized: false } }]] as const) {
      const err = await api('orders', extra).catch((e: unknown) => e)
      expect(err).toMatchObject({ code: 'ERR_INVALID_CONFIG', message: expect.stringContaining(`got option ${name}`) })
    }
  })

  it('a streamed body is sent once and not retried: a nonce challenge on it is returned as the 401 it is', async () => {
    const session = await newSession()
    const api = createBoundGot({ session, origins: [kit.api] }, { prefixUrl: kit.api, throwHttpErrors: false })
    expect((await api('orders')).statusCode).toBe(200)
    kit.rs.rotateNonce()
    kit.rs.resetCounters()
    const res = await api.post('orders', { body: Readable.from([Buffer.from('chunk-1'), Buffer.from('chunk-2')]), retry: { limit: 3, statusCodes: [401] } })
    expect(res.statusCode).toBe(401)
    expect(gotChallenges(res).map((c) => c.kind)).toContain('dpop-nonce')
    expect(kit.rs.counters().requests).toBe(1)
    // a replayable body is answered: new proof with the nonce, same body
    expect(await api.post('orders', { body: 'again' }).json()).toMatchObject({ body: 'again', binding: 'dpop' })
  })

  it('got.stream: a download works; a body piped into the stream is refused rather than silently dropped', async () => {
    const session = await newSession()
    const api = createBoundGot({ session, origins: [kit.api] }, { prefixUrl: kit.api })
    let n = 0
    for await (const chunk of api.stream('big')) n += (chunk as Buffer).length
    expect(n).toBe(100_000)
    const upload = api.stream.post('orders')
    const failed = new Promise((resolve) => upload.on('error', resolve))
    upload.end('piped')
    expect(await failed).toMatchObject({ code: 'ERR_INVALID_INPUT' })
  })

  it('timeout.request, a refused connection and a gzip body behave as got users expect', async () => {
    const session = await newSession()
    const api = createBoundGot({ session, origins: [kit.api] }, { prefixUrl: kit.api, retry: { limit: 0 } })
    await expect(api('hang', { timeout: { request: 300 } })).rejects.toMatchObject({ code: 'ETIMEDOUT' })
    const closed = `https://127.0.0.1:${await closedPort()}`
    const refused = await createBoundGot({ session, origins: [closed] }, { retry: { limit: 0 } })(`${closed}/x`).catch((e: unknown) => e)
    expect(refused).toMatchObject({ code: 'ECONNREFUSED' })
    expect(await api('gzip').json()).toEqual({ zipped: true })
  })

  it('a step-up Bound could not answer reaches the caller as got’s HTTPError whose challenges name ERR_STEP_UP_REQUIRED', async () => {
    kit.rs.requireStepUp('/admin', { acr_values: 'urn:bound:mfa' })
    const session = await newSession()
    const err = await createBoundGot({ session, origins: [kit.api] }, { prefixUrl: kit.api })('admin/x').catch((e: unknown) => e)
    expect(err).toBeInstanceOf(HTTPError)
    expect(gotChallenges(err).find((c) => c.boundError)?.boundError?.code).toBe('ERR_STEP_UP_REQUIRED')
  })

  it('the caller’s own beforeRequest hooks given to createBoundGot run before Bound’s', async () => {
    const session = await newSession()
    const seen: string[] = []
    const api = createBoundGot({ session, origins: [kit.api] }, { prefixUrl: kit.api, hooks: { beforeRequest: [(o) => void seen.push(String(o.url))] } })
    expect(await api('orders/7').json()).toMatchObject({ path: '/orders/7', binding: 'dpop' })
    expect(seen).toEqual([`${kit.api}/orders/7`])
  })

  it('mTLS: the certificate-bound token and the certificate go to the listed origin only', async () => {
    const c = kit.clients.tlsClientAuth
    const session = await newSession({ clientId: c.clientId, clientAuth: tlsClientAuth(), clientCertificate: { cert: c.certificate.certPem, key: c.certificate.keyPem }, dpop: undefined })
    const api = createBoundGot({ session, origins: [kit.api] })
    expect(await api(`${kit.api}/orders`).json()).toMatchObject({ binding: 'mtls', x5t: c.certificate.x5tS256 })
    await api(`${evil.origin}/plain`)
    expect(evil.seen).toEqual([{ path: '/plain', authorization: undefined, dpop: undefined, peer: undefined }])
  })
})
