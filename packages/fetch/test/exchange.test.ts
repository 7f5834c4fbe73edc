import { Readable } from 'node:stream'
import { brotliCompressSync, deflateRawSync, deflateSync, gzipSync } from 'node:zlib'
import { describe, expect, it, vi } from 'vitest'
import type { Dispatcher } from 'undici'
import { toExchange } from '../src/exchange.js'

// toExchange over a fake undici ResponseData: a Node Readable with the methods undici's body has
// (dump, and — when `fast` — text/arrayBuffer, which the Response uses when it may).

type RawHeaders = Record<string, string | string[]>

function fakeData(status: number, headers: RawHeaders, payload: string | Uint8Array | Uint8Array[] = '', { fast = false } = {}) {
  const chunks = Array.isArray(payload) ? payload : [typeof payload === 'string' ? Buffer.from(payload) : payload]
  const body = Readable.from(chunks.map((c) => Buffer.from(c)), { objectMode: false })
  const readAll = async () => {
    const parts: Buffer[] = []
    for await (const c of body) parts.push(c as Buffer)
    return Buffer.concat(parts)
  }
  const dump = vi.fn(async (_opts?: { limit?: number }) => {
    body.resume()
  })
  const fastText = vi.fn(async () => (await readAll()).toString('utf8'))
  Object.assign(body, { dump }, fast ? { text: fastText } : {})
  const data = { statusCode: status, headers, body, trailers: {}, opaque: null, context: {} } as unknown as Dispatcher.ResponseData
  return { data, dump, fastText, body }
}

const url = new URL('https://api.example.com/orders?page=2')
const respond = (status: number, headers: RawHeaders, payload?: string | Uint8Array | Uint8Array[], method = 'GET', fast = false) =>
  toExchange(fakeData(status, headers, payload, { fast }).data).toResponse(url, false, method)

/** Splits `bytes` into pieces of `size` (so decoders see more than one chunk). */
const pieces = (bytes: Uint8Array, size: number) => {
  const out: Uint8Array[] = []
  for (let i = 0; i < bytes.length; i += size) out.push(bytes.subarray(i, i + size))
  return out
}

const LONG = 'The quick brown fox jumps over the lazy dog. '.repeat(400)

describe('toExchange: the exchange', () => {
  it('status; headers.get is case-insensitive, joins repeats with ", ", null when absent', () => {
    const ex = toExchange(fakeData(401, { 'www-authenticate': ['DPoP error="use_dpop_nonce"', 'Bearer realm="x"'], 'dpop-nonce': 'n1' }).data)
    expect(ex.status).toBe(401)
    expect(ex.headers.get('WWW-Authenticate')).toBe('DPoP error="use_dpop_nonce", Bearer realm="x"')
    expect(ex.headers.get('DPoP-Nonce')).toBe('n1')
    expect(ex.headers.get('location')).toBeNull()
  })

  it('discard dumps the body within a cap: 64 KiB, and 5 seconds', async () => {
    const { data, dump } = fakeData(302, { location: '/x' }, 'ignored')
    await toExchange(data).discard()
    expect(dump).toHaveBeenCalledTimes(1)
    const { limit, signal } = dump.mock.calls[0]![0] as { limit: number; signal: AbortSignal }
    expect(limit).toBe(65_536)
    expect(signal).toBeInstanceOf(AbortSignal)
    expect(signal.aborted).toBe(false)
  })

  it('discard swallows a failing dump', async () => {
    const { data, dump } = fakeData(302, {}, '')
    dump.mockRejectedValueOnce(new Error('socket gone'))
    await expect(toExchange(data).discard()).resolves.toBeUndefined()
  })
})

describe('toExchange: toResponse', () => {
  it('is a real Response with status, statusText, url and redirected', () => {
    const ex = toExchange(fakeData(201, { 'content-type': 'application/json' }, '{}').data)
    const res = ex.toResponse(url, true, 'POST')
    expect(res).toBeInstanceOf(Response)
    expect(res.status).toBe(201)
    expect(res.ok).toBe(true)
    expect(res.statusText).toBe('Created')
    expect(res.url).toBe('https://api.example.com/orders?page=2')
    expect(res.redirected).toBe(true)
    expect(res.type).toBe('default')
    const plain = toExchange(fakeData(404, {}, '').data).toResponse(url, false, 'GET')
    expect(plain.redirected).toBe(false)
    expect(plain.ok).toBe(false)
    expect(plain.statusText).toBe('Not Found')
  })

  it('headers: a Headers built on demand, repeats kept (set-cookie one by one, others joined)', () => {
    const res = respond(200, { 'content-type': 'text/plain', 'set-cookie': ['a=1; Path=/', 'b=2; Path=/'], 'x-multi': ['one', 'two'] }, 'x')
    expect(res.headers).toBeInstanceOf(Headers)
    expect(res.headers).toBe(res.headers) // built once
    expect(res.headers.getSetCookie()).toEqual(['a=1; Path=/', 'b=2; Path=/'])
    expect(res.headers.get('x-multi')).toBe('one, two')
    expect(res.headers.get('Content-Type')).toBe('text/plain')
    expect([...res.headers.keys()]).toEqual(['content-type', 'set-cookie', 'set-cookie', 'x-multi'])
  })

  it.each([false, true])('text() and json() (undici fast path: %s)', async (fast) => {
    expect(await respond(200, {}, 'héllo', 'GET', fast).text()).toBe('héllo')
    expect(await respond(200, { 'content-type': 'application/json' }, '{"a":[1,2]}', 'GET', fast).json()).toEqual({ a: [1, 2] })
  })

  it('text() uses undici’s own text() when it may', async () => {
    const { data, fastText } = fakeData(200, {}, 'fast', { fast: true })
    expect(await toExchange(data).toResponse(url, false, 'GET').text()).toBe('fast')
    expect(fastText).toHaveBeenCalledTimes(1)
  })

  it('arrayBuffer(), bytes() and blob() (with the content-type), over several chunks', async () => {
    const chunks = [new Uint8Array([1, 2]), new Uint8Array([3]), new Uint8Array([4, 5, 6])]
    const ab = await respond(200, {}, chunks).arrayBuffer()
    expect(ab).toBeInstanceOf(ArrayBuffer)
    expect([...new Uint8Array(ab)]).toEqual([1, 2, 3, 4, 5, 6])
    const bytes = await (respond(200, {}, chunks) as Response & { bytes(): Promise<Uint8Array> }).bytes() // (not in @types/node 20's Response)
    expect(bytes).toBeInstanceOf(Uint8Array)
    expect([...bytes]).toEqual([1, 2, 3, 4, 5, 6])
    const blob = await respond(200, { 'content-type': 'image/png' }, chunks).blob()
    expect(blob.type).toBe('image/png')
    expect([...new Uint8Array(await blob.arrayBuffer())]).toEqual([1, 2, 3, 4, 5, 6])
  })

  it('formData() of an urlencoded body', async () => {
    const form = await respond(200, { 'content-type': 'application/x-www-form-urlencoded' }, 'a=1&b=x+y').formData()
    expect(form.get('a')).toBe('1')
    expect(form.get('b')).toBe('x y')
  })

  it('body is a web ReadableStream of the bytes; reading it uses the body', async () => {
    const res = respond(200, {}, ['ab', 'cd'].map((s) => Buffer.from(s)))
    expect(res.bodyUsed).toBe(false)
    const body = res.body!
    expect(body).toBeInstanceOf(ReadableStream)
    expect(res.body).toBe(body)
    const reader = body.getReader()
    // as fetch's: locked is not used (but no longer readable by text())…
    expect(res.bodyUsed).toBe(false)
    await expect(res.text()).rejects.toThrow(TypeError)
    let text = ''
    for (let r = await reader.read(); !r.done; r = await reader.read()) text += Buffer.from(r.value).toString()
    expect(text).toBe('abcd')
    // …read is
    expect(res.bodyUsed).toBe(true)
    await expect(res.text()).rejects.toThrow(TypeError)
  })

  it('bodyUsed as the platform Response says it: a partly read body whose reader let go is used', async () => {
    const ours = respond(200, {}, ['ab', 'cd'].map((s) => Buffer.from(s)))
    const platform = new Response('abcd')
    for (const res of [ours, platform]) {
      const reader = res.body!.getReader()
      await reader.read()
      reader.releaseLock()
    }
    expect(platform.bodyUsed).toBe(true)
    expect(ours.bodyUsed).toBe(platform.bodyUsed)
    await expect(ours.text()).rejects.toThrow(TypeError)
  })

  it('url has no fragment, as fetch’s', async () => {
    for (const href of ['https://api.example.com/a?x=1#frag', 'https://api.example.com/a#']) {
      expect(toExchange(fakeData(200, {}, '').data).toResponse(new URL(href), false, 'GET').url).toBe(href.slice(0, href.indexOf('#')))
    }
  })

  it('body asked for but not read: text() still reads it (through the stream)', async () => {
    const res = respond(200, {}, 'via-stream', 'GET', true)
    expect(res.body).toBeInstanceOf(ReadableStream)
    expect(await res.text()).toBe('via-stream')
    expect(res.bodyUsed).toBe(true)
  })

  it.each([false, true])('bodyUsed after a read, and a second read throws TypeError (fast: %s)', async (fast) => {
    const res = respond(200, {}, '{"x":1}', 'GET', fast)
    expect(res.bodyUsed).toBe(false)
    await res.text()
    expect(res.bodyUsed).toBe(true)
    await expect(res.text()).rejects.toThrow(TypeError)
    await expect(res.json()).rejects.toThrow(TypeError)
    await expect(res.arrayBuffer()).rejects.toThrow(TypeError)
    await expect(res.blob()).rejects.toThrow(TypeError)
    expect(() => res.clone()).toThrow(TypeError)
  })

  it('clone() gives two independent readable copies', async () => {
    const res = respond(200, { 'content-type': 'text/plain', 'x-a': '1' }, [Buffer.from('copy'), Buffer.from('-me')])
    const copy = res.clone()
    expect(copy).toBeInstanceOf(Response)
    expect(copy.status).toBe(200)
    expect(copy.statusText).toBe('OK')
    expect(copy.url).toBe(url.href)
    expect(copy.headers.get('x-a')).toBe('1')
    // the copy read first, in full, then the original
    expect(await copy.text()).toBe('copy-me')
    expect(copy.bodyUsed).toBe(true)
    expect(res.bodyUsed).toBe(false)
    expect(await res.text()).toBe('copy-me')
    // and a copy of a copy of a redirected response stays redirected
    const redirected = toExchange(fakeData(200, {}, 'r').data).toResponse(url, true, 'GET')
    const c2 = redirected.clone()
    expect(c2.redirected).toBe(true)
    expect(await Promise.all([c2.text(), redirected.arrayBuffer().then((b) => Buffer.from(b).toString())])).toEqual(['r', 'r'])
  })

  it('HEAD, 204 and 304 have a null body (dumped), and read as empty', async () => {
    for (const [status, method] of [[200, 'HEAD'], [204, 'GET'], [304, 'GET'], [205, 'POST']] as const) {
      const { data, dump } = fakeData(status, { 'content-length': '5' }, 'hello')
      const res = toExchange(data).toResponse(url, false, method)
      expect(res.body).toBeNull()
      expect(dump).toHaveBeenCalled()
      expect(await res.text()).toBe('')
      expect(res.headers.get('content-length')).toBe('5')
    }
  })
})

describe('toExchange: content codings, decoded as fetch does', () => {
  it('gzip and x-gzip', async () => {
    expect(await respond(200, { 'content-encoding': 'gzip' }, pieces(gzipSync(LONG), 100)).text()).toBe(LONG)
    expect(await respond(200, { 'content-encoding': 'X-GZIP' }, gzipSync('x')).text()).toBe('x')
  })

  it('deflate, zlib-wrapped and raw', async () => {
    expect(await respond(200, { 'content-encoding': 'deflate' }, pieces(deflateSync(LONG), 64)).text()).toBe(LONG)
    expect(await respond(200, { 'content-encoding': 'deflate' }, pieces(deflateRawSync(LONG), 64)).text()).toBe(LONG)
    expect(await respond(200, { 'content-encoding': 'deflate' }, deflateRawSync('raw')).text()).toBe('raw')
  })

  it('br', async () => {
    expect(await respond(200, { 'content-encoding': 'br' }, pieces(brotliCompressSync(LONG), 50)).text()).toBe(LONG)
  })

  it('several codings, undone last first; identity ignored', async () => {
    const twice = gzipSync(deflateSync('layers'))
    expect(await respond(200, { 'content-encoding': 'deflate, gzip' }, twice).text()).toBe('layers')
    expect(await respond(200, { 'content-encoding': 'identity, br' }, brotliCompressSync('id')).text()).toBe('id')
  })

  it('decoded through body and clone() too', async () => {
    const res = respond(200, { 'content-encoding': 'gzip' }, gzipSync('streamed'))
    const copy = res.clone()
    expect(await new Response(res.body).text()).toBe('streamed')
    expect(await copy.text()).toBe('streamed')
  })

  it('an unknown coding: the bytes as they are', async () => {
    const gz = gzipSync('kept')
    const res = respond(200, { 'content-encoding': 'compress' }, gz)
    expect(Buffer.from(await res.arrayBuffer()).equals(gz)).toBe(true)
    expect(await respond(200, { 'content-encoding': 'identity' }, 'plain').text()).toBe('plain')
  })

  it('a truncated gzip body does not throw: what was decoded is returned', async () => {
    const gz = gzipSync(LONG)
    const text = await respond(200, { 'content-encoding': 'gzip' }, gz.subarray(0, gz.length - 12)).text()
    expect(text.length).toBeGreaterThan(0)
    expect(LONG.startsWith(text)).toBe(true)
  })

  // (undici's fetch decodes deflate and br with a sync finishFlush too: a cut tail is not an error)
  it.each([
    ['deflate (zlib-wrapped)', 'deflate', deflateSync],
    ['deflate (raw)', 'deflate', deflateRawSync],
    ['br', 'br', brotliCompressSync],
  ] as const)('a truncated %s body does not throw either', async (_name, coding, compress) => {
    const packed = compress(LONG)
    const text = await respond(200, { 'content-encoding': coding }, pieces(packed.subarray(0, packed.length - 10), 256)).text()
    expect(text.length).toBeGreaterThan(0)
    expect(LONG.startsWith(text)).toBe(true)
  })

  it('an unknown coding anywhere in the list: the bytes as they are, none of the codings undone', async () => {
    // fetch drops every decoder when one coding is unknown; half-decoding would hand over bytes that are neither
    const gz = gzipSync('kept')
    expect(Buffer.from(await respond(200, { 'content-encoding': 'compress, gzip' }, gz).arrayBuffer()).equals(gz)).toBe(true)
    expect(Buffer.from(await respond(200, { 'content-encoding': 'gzip, compress' }, gz).arrayBuffer()).equals(gz)).toBe(true)
  })

  it('a corrupt gzip, deflate or br body rejects the read', async () => {
    await expect(respond(200, { 'content-encoding': 'gzip' }, Buffer.from('definitely not gzip')).text()).rejects.toThrow()
    // (tolerating a cut tail is not tolerating garbage)
    await expect(respond(200, { 'content-encoding': 'deflate' }, Buffer.from([0x78, 0x9c, 0xff, 0xff, 0xff, 0xff])).text()).rejects.toThrow()
    await expect(respond(200, { 'content-encoding': 'br' }, Buffer.from('not brotli at all, not at all')).text()).rejects.toThrow()
  })
})
