import { Readable } from 'node:stream'
import { describe, expect, it, vi } from 'vitest'
import type { Dispatcher } from 'undici'
import { isBoundError } from '@bound/core'
import type { BoundToken, Session } from '@bound/oauth'
import { createBoundFetch, type BoundFetchOptions } from '../src/bound-fetch.js'
import { createBoundSender } from '../src/internal.js'
import { rejection } from './support.js'

// createBoundFetch's redirect rules over a fake session: only the seam the engine uses (token,
// tokenNow, adopt, invalidate, isCurrent, useResourceMetadata, hasAuthorizationServer, dpop,
// events, transport), with a transport that records each request and answers from a table. Its
// tokenNow has no token at hand (every request goes through the engine) unless `fast` is set.

const API = 'https://api.example.com'
const OTHER = 'https://other.example.com'
const UNLISTED = 'https://elsewhere.example.net'

const token: BoundToken = {
  value: 'fake-bearer-value',
  type: 'Bearer',
  label: 'sha256:fake',
  cacheKey: 'k',
  generation: 1,
  binding: {},
  expiresAt: Date.now() + 3_600_000,
  receivedAt: Date.now(),
  lifetimeAssumed: false,
  scope: undefined,
}

interface Sent {
  url: string
  method: string
  headers: Record<string, string>
  body: unknown
  presentCertificate: boolean | undefined
}

interface Canned {
  status: number
  headers?: Record<string, string | string[]>
  body?: string
}

type Route = Canned | ((sent: Sent) => Canned)

function fakeBody(text: string) {
  const body = Readable.from([Buffer.from(text)], { objectMode: false })
  const dump = vi.fn(async () => {
    body.resume()
  })
  return Object.assign(body, { dump })
}

/** A fake session whose transport answers `routes[url]` (else 200 "ok"). */
function fakeSession(routes: Record<string, Route> = {}, fast = false) {
  const sent: Sent[] = []
  const dumps: ReturnType<typeof vi.fn>[] = []
  const emit = vi.fn()
  const request = vi.fn(async (url: URL, options: { method: string; headers: Record<string, string>; body?: unknown; presentCertificate?: boolean }) => {
    const s: Sent = { url: url.href, method: options.method, headers: { ...options.headers }, body: options.body, presentCertificate: options.presentCertificate }
    sent.push(s)
    const route = routes[url.href] ?? { status: 200, body: 'ok' }
    const canned = typeof route === 'function' ? route(s) : route
    const body = fakeBody(canned.body ?? '')
    dumps.push(body.dump)
    return { statusCode: canned.status, headers: canned.headers ?? {}, body, trailers: {}, opaque: null, context: {} } as unknown as Dispatcher.ResponseData
  })
  const tokenFn = vi.fn(async () => token)
  const tokenNow = vi.fn(() => (fast ? token : undefined))
  const session = {
    hasAuthorizationServer: true,
    token: tokenFn,
    tokenNow,
    adopt: vi.fn(),
    invalidate: vi.fn(),
    isCurrent: () => true,
    useResourceMetadata: vi.fn(),
    dpop: undefined,
    events: { emit, on: vi.fn(() => () => {}) },
    transport: { request },
  } as unknown as Session
  return { session, sent, dumps, emit, tokenFn, tokenNow, request }
}

const redirect = (status: number, location: string): Canned => ({ status, headers: { location } })

function setup(routes: Record<string, Route>, options: Partial<BoundFetchOptions> = {}, fast = false) {
  const fake = fakeSession(routes, fast)
  const fetch = createBoundFetch({ session: fake.session, origins: [API, OTHER], ...options })
  return { ...fake, fetch }
}

const credentialed = (s: Sent) => s.headers.authorization === 'Bearer fake-bearer-value' && s.presentCertificate === true
const uncredentialed = (s: Sent) => s.headers.authorization === undefined && s.headers.dpop === undefined && s.headers.cookie === undefined && s.presentCertificate === false

describe('createBoundFetch: credentials', () => {
  it('a listed origin gets the Bearer token and the client certificate; an unlisted one neither', async () => {
    const { fetch, sent } = setup({})
    const res = await fetch(`${API}/a`)
    expect(await res.text()).toBe('ok')
    expect(res.redirected).toBe(false)
    expect(res.url).toBe(`${API}/a`)
    await fetch(`${UNLISTED}/b`, { headers: { cookie: 'mine=1' } })
    expect(sent).toHaveLength(2)
    expect(credentialed(sent[0]!)).toBe(true)
    expect(sent[1]!.headers.authorization).toBeUndefined()
    expect(sent[1]!.presentCertificate).toBe(false)
    // a request aimed at an unlisted origin is the caller's own: its own headers go as given
    expect(sent[1]!.headers.cookie).toBe('mine=1')
  })
  it('a token at hand (tokenNow) goes out without token(); a 401 it meets goes through the engine with that token first', async () => {
    let n = 0
    const { fetch, sent, tokenFn, tokenNow, session } = setup({ [`${API}/a`]: () => (++n === 1 ? { status: 200, body: 'ok' } : { status: 401, headers: { 'www-authenticate': 'Bearer error="invalid_token"' } }) }, {}, true)
    expect(await (await fetch(`${API}/a`)).text()).toBe('ok')
    expect(tokenNow).toHaveBeenCalledTimes(1)
    expect(tokenFn).not.toHaveBeenCalled()
    expect(credentialed(sent[0]!)).toBe(true)
    // the second meets invalid_token: the engine drops the token the fast path sent and retries once with token()
    expect((await fetch(`${API}/a`)).status).toBe(401)
    expect(session.invalidate).toHaveBeenCalledWith(token)
    expect(tokenFn).toHaveBeenCalledTimes(1)
    expect(sent).toHaveLength(3)
  })
})

describe('createBoundFetch: redirects change the method as fetch does', () => {
  it.each([301, 302])('%i after a POST: GET, without the body and the body headers', async (status) => {
    const { fetch, sent, dumps } = setup({ [`${API}/form`]: redirect(status, '/done') })
    const res = await fetch(`${API}/form`, { method: 'POST', body: 'a=1', headers: { 'content-type': 'application/x-www-form-urlencoded', 'content-language': 'en', 'x-keep': 'k' } })
    expect(res.status).toBe(200)
    expect(sent.map((s) => `${s.method} ${s.url}`)).toEqual([`POST ${API}/form`, `GET ${API}/done`])
    expect(sent[0]!.body).toBe('a=1')
    expect(sent[1]!.body).toBeNull()
    expect(sent[1]!.headers['content-type']).toBeUndefined()
    expect(sent[1]!.headers['content-language']).toBeUndefined()
    expect(sent[1]!.headers['x-keep']).toBe('k')
    expect(credentialed(sent[1]!)).toBe(true)
    expect(dumps[0]).toHaveBeenCalled() // the redirect's body was dropped
  })

  it.each([301, 302])('%i after a PUT keeps PUT and the body (only POST becomes GET)', async (status) => {
    const { fetch, sent } = setup({ [`${API}/put`]: redirect(status, '/put2') })
    await fetch(`${API}/put`, { method: 'PUT', body: 'payload' })
    expect(sent[1]!.method).toBe('PUT')
    expect(sent[1]!.body).toBe('payload')
  })

  it('303 after a DELETE or a PUT: GET without body; a HEAD stays HEAD', async () => {
    const { fetch, sent } = setup({ [`${API}/x`]: redirect(303, `${API}/see-other`) })
    await fetch(`${API}/x`, { method: 'PUT', body: 'b', headers: { 'content-type': 'text/plain' } })
    expect(sent[1]).toMatchObject({ method: 'GET', body: null, url: `${API}/see-other` })
    expect(sent[1]!.headers['content-type']).toBeUndefined()
    await fetch(`${API}/x`, { method: 'DELETE' })
    expect(sent[3]!.method).toBe('GET')
    await fetch(`${API}/x`, { method: 'HEAD' })
    expect(sent[5]!.method).toBe('HEAD')
  })

  it.each([307, 308])('%i keeps the method, the body and its headers', async (status) => {
    const { fetch, sent } = setup({ [`${API}/upload`]: redirect(status, '/upload-here') })
    const res = await fetch(`${API}/upload`, { method: 'POST', body: JSON.stringify({ a: 1 }), headers: { 'content-type': 'application/json' } })
    expect(res.status).toBe(200)
    expect(sent).toHaveLength(2)
    expect(sent[1]).toMatchObject({ url: `${API}/upload-here`, method: 'POST', body: '{"a":1}' })
    expect(sent[1]!.headers['content-type']).toBe('application/json')
  })

  it('a streamed body and a 307: the 307 is returned as it is, the stream not sent again', async () => {
    const { fetch, sent } = setup({ [`${API}/stream`]: redirect(307, '/again') })
    const stream = new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(new TextEncoder().encode('once'))
        c.close()
      },
    })
    const res = await fetch(`${API}/stream`, { method: 'POST', body: stream, duplex: 'half' } as RequestInit)
    expect(res.status).toBe(307)
    expect(res.headers.get('location')).toBe('/again')
    expect(res.redirected).toBe(false)
    expect(sent).toHaveLength(1)
    expect(sent[0]!.body).toBeInstanceOf(Readable) // a web stream goes to undici as a Node stream
  })

  it('a streamed body and a 303: followed, as a GET without the stream', async () => {
    const { fetch, sent } = setup({ [`${API}/stream`]: redirect(303, '/result') })
    const body = (async function* () {
      yield new Uint8Array([1])
    })()
    const res = await fetch(`${API}/stream`, { method: 'POST', body: body as never })
    expect(res.status).toBe(200)
    expect(sent.map((s) => s.method)).toEqual(['POST', 'GET'])
    expect(sent[1]!.body).toBeNull()
  })
})

describe('createBoundFetch: redirect modes and limits', () => {
  it("redirect: 'manual' returns the 3xx", async () => {
    const { fetch, sent } = setup({ [`${API}/m`]: redirect(302, `${API}/n`) })
    const res = await fetch(`${API}/m`, { redirect: 'manual' })
    expect(res.status).toBe(302)
    expect(res.headers.get('location')).toBe(`${API}/n`)
    expect(sent).toHaveLength(1)
  })

  it("redirect: 'error' throws ERR_INVALID_INPUT", async () => {
    const { fetch, sent, dumps } = setup({ [`${API}/m`]: redirect(301, `${API}/n`) })
    const err = await rejection(fetch(`${API}/m`, { redirect: 'error' }))
    expect(isBoundError(err, 'ERR_INVALID_INPUT')).toBe(true)
    expect(sent).toHaveLength(1)
    expect(dumps[0]).toHaveBeenCalled()
  })

  it('a 3xx without Location is returned as it is', async () => {
    const { fetch, sent } = setup({ [`${API}/m`]: { status: 302 } })
    expect((await fetch(`${API}/m`)).status).toBe(302)
    expect(sent).toHaveLength(1)
  })

  it('maxRedirects hops are followed; one more is ERR_INVALID_INPUT', async () => {
    const chain = { [`${API}/0`]: redirect(302, '/1'), [`${API}/1`]: redirect(302, '/2'), [`${API}/2`]: redirect(302, '/3') }
    const ok = setup(chain, { maxRedirects: 3 })
    const res = await ok.fetch(`${API}/0`)
    expect(res.status).toBe(200)
    expect(res.url).toBe(`${API}/3`)
    expect(ok.sent).toHaveLength(4)
    const over = setup(chain, { maxRedirects: 2 })
    const err = await rejection(over.fetch(`${API}/0`))
    expect(isBoundError(err, 'ERR_INVALID_INPUT')).toBe(true)
    expect((err as Error).message).toContain('more than 2 redirects')
    expect(over.sent.map((s) => s.url)).toEqual([`${API}/0`, `${API}/1`, `${API}/2`])
  })

  it('maxRedirects: 0 follows none', async () => {
    const { fetch, sent } = setup({ [`${API}/0`]: redirect(301, '/1') }, { maxRedirects: 0 })
    expect(isBoundError(await rejection(fetch(`${API}/0`)), 'ERR_INVALID_INPUT')).toBe(true)
    expect(sent).toHaveLength(1)
  })

  it('an endless loop ends at the default limit (10)', async () => {
    const { fetch, sent } = setup({ [`${API}/loop`]: redirect(302, '/loop') })
    expect(isBoundError(await rejection(fetch(`${API}/loop`)), 'ERR_INVALID_INPUT')).toBe(true)
    expect(sent).toHaveLength(11)
  })

  it('res.redirected and res.url name the final URL (relative Locations resolved per hop)', async () => {
    const { fetch, sent } = setup({ [`${API}/a/b`]: redirect(301, 'c?x=1'), [`${API}/a/c?x=1`]: redirect(308, '//api.example.com/final') })
    const res = await fetch(`${API}/a/b`)
    expect(res.redirected).toBe(true)
    expect(res.url).toBe(`${API}/final`)
    expect(sent.map((s) => s.url)).toEqual([`${API}/a/b`, `${API}/a/c?x=1`, `${API}/final`])
  })
})

describe('createBoundFetch: where a redirect may go', () => {
  it('https → plain http (not loopback) is ERR_INSECURE_TRANSPORT, and nothing is sent there', async () => {
    const { fetch, sent, dumps } = setup({ [`${API}/a`]: redirect(302, 'http://api.example.com/a') })
    const err = await rejection(fetch(`${API}/a`))
    expect(isBoundError(err, 'ERR_INSECURE_TRANSPORT')).toBe(true)
    expect(sent).toHaveLength(1)
    expect(dumps[0]).toHaveBeenCalled()
  })

  it('https → loopback http is followed (uncredentialed: another origin)', async () => {
    const { fetch, sent } = setup({ [`${API}/a`]: redirect(302, 'http://127.0.0.1:8080/cb') })
    expect((await fetch(`${API}/a`)).url).toBe('http://127.0.0.1:8080/cb')
    expect(uncredentialed(sent[1]!)).toBe(true)
  })

  it.each(['ftp://api.example.com/file', 'data:text/plain,hi', 'javascript:alert(1)', 'file:///etc/passwd'])('a Location of %s is refused (ERR_INVALID_INPUT)', async (location) => {
    const { fetch, sent } = setup({ [`${API}/a`]: redirect(302, location) })
    expect(isBoundError(await rejection(fetch(`${API}/a`)), 'ERR_INVALID_INPUT')).toBe(true)
    expect(sent).toHaveLength(1)
  })

  it('another origin, even a listed one, gets no authorization, dpop, cookie or certificate — nor does any later hop', async () => {
    const { fetch, sent, tokenFn } = setup({
      [`${API}/start`]: redirect(302, `${OTHER}/hop`), // listed
      [`${OTHER}/hop`]: redirect(307, `${API}/back`), // back to the first origin: still uncredentialed
      [`${API}/back`]: redirect(308, `${API}/end`),
    })
    const res = await fetch(`${API}/start`, { headers: { cookie: 'sid=secret', dpop: 'caller-proof', 'x-app': '1' } })
    expect(res.status).toBe(200)
    expect(res.url).toBe(`${API}/end`)
    expect(sent.map((s) => s.url)).toEqual([`${API}/start`, `${OTHER}/hop`, `${API}/back`, `${API}/end`])
    expect(credentialed(sent[0]!)).toBe(true)
    expect(sent[0]!.headers.cookie).toBe('sid=secret')
    for (const s of sent.slice(1)) {
      expect(uncredentialed(s)).toBe(true)
      expect(s.headers['x-app']).toBe('1')
    }
    expect(tokenFn).toHaveBeenCalledTimes(1)
  })

  it('a caller’s own authorization header does not follow a change of origin either', async () => {
    const { fetch, sent } = setup({ [`${UNLISTED}/a`]: redirect(302, 'https://third.example.org/b') })
    await fetch(`${UNLISTED}/a`, { headers: { authorization: 'Basic dXNlcjpwYXNz', cookie: 'c=1' } })
    expect(sent[0]!.headers.authorization).toBe('Basic dXNlcjpwYXNz')
    expect(uncredentialed(sent[1]!)).toBe(true)
  })

  it("otherOrigins: 'error' refuses a redirect to an unlisted origin (ERR_ORIGIN_NOT_ALLOWED) without requesting it", async () => {
    const { fetch, sent, dumps } = setup({ [`${API}/a`]: redirect(302, `${UNLISTED}/x`), [`${API}/b`]: redirect(302, `${OTHER}/y`) }, { otherOrigins: 'error' })
    const err = await rejection(fetch(`${API}/a`))
    expect(isBoundError(err, 'ERR_ORIGIN_NOT_ALLOWED')).toBe(true)
    expect(sent.map((s) => s.url)).toEqual([`${API}/a`])
    expect(dumps[0]).toHaveBeenCalled()
    // a listed origin is still reached (without credentials)
    const res = await fetch(`${API}/b`)
    expect(res.url).toBe(`${OTHER}/y`)
    expect(uncredentialed(sent[2]!)).toBe(true)
    // and a first request to an unlisted origin is refused before anything is sent
    expect(isBoundError(await rejection(fetch(`${UNLISTED}/direct`)), 'ERR_ORIGIN_NOT_ALLOWED')).toBe(true)
    expect(sent).toHaveLength(3)
  })
})

describe('createBoundFetch: the unlisted-origin report', () => {
  it('a first request to an unlisted origin emits origin.unlisted once, with the nearest listed origin', async () => {
    const { fetch, emit } = setup({ 'https://api.exmaple.com/x': redirect(302, 'https://typo2.example.org/') })
    await fetch('https://api.exmaple.com/x')
    await fetch('https://api.exmaple.com/y')
    const reports = emit.mock.calls.filter(([type]) => type === 'origin.unlisted')
    // once per origin; the redirect target (typo2.example.org) was reached by a hop, not aimed at
    expect(reports).toEqual([['origin.unlisted', { origin: 'https://api.exmaple.com', nearest: API }]])
  })

  it('nearest prefers the same host on another port or scheme', async () => {
    const { fetch, emit } = setup({})
    await fetch('https://other.example.com:8443/')
    expect(emit).toHaveBeenCalledWith('origin.unlisted', { origin: 'https://other.example.com:8443', nearest: OTHER })
  })

  it('a listed origin is not reported', async () => {
    const { fetch, emit } = setup({})
    await fetch(`${API}/`)
    expect(emit.mock.calls.some(([type]) => type === 'origin.unlisted')).toBe(false)
  })
})

describe('createBoundSender (internal)', () => {
  it('a per-call maxRedirects overrides the sender’s', async () => {
    const fake = fakeSession({ [`${API}/0`]: redirect(302, '/1'), [`${API}/1`]: redirect(302, '/2') })
    const send = createBoundSender({ session: fake.session, origins: [API] })
    expect((await send(`${API}/0`)).url).toBe(`${API}/2`)
    expect(fake.sent).toHaveLength(3)
    const err = await rejection(send(`${API}/0`, undefined, { maxRedirects: 1 }))
    expect(isBoundError(err, 'ERR_INVALID_INPUT')).toBe(true)
    expect(fake.sent).toHaveLength(5)
  })

  it('crossedOrigin: no credentials even to a listed origin, the caller’s dropped, no unlisted report', async () => {
    const fake = fakeSession({})
    const send = createBoundSender({ session: fake.session, origins: [API] })
    const res = await send(`${API}/after-hop`, { headers: { authorization: 'Bearer carried-by-client', cookie: 'c=1', dpop: 'p', 'proxy-authorization': 'Basic x', 'x-keep': '1' } }, { crossedOrigin: true })
    expect(res.status).toBe(200)
    const s = fake.sent[0]!
    expect(uncredentialed(s)).toBe(true)
    expect(s.headers['proxy-authorization']).toBeUndefined()
    expect(s.headers['x-keep']).toBe('1')
    expect(fake.tokenFn).not.toHaveBeenCalled()
    expect(fake.emit).not.toHaveBeenCalledWith('origin.unlisted', expect.anything())
  })
})
