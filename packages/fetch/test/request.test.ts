import { Readable } from 'node:stream'
import { describe, expect, it } from 'vitest'
import { isBoundError } from '@bound/core'
import { prepareRequest } from '../src/request.js'
import { rejection } from './support.js'

// prepareRequest: `fetch(input, init)` arguments broken into what Bound sends (and sends again).

const bytesOf = (body: unknown) => Buffer.from(body as Uint8Array).toString('utf8')
const prepare = (input: string | URL | Request, init?: RequestInit) => prepareRequest(input as never, init)

describe('prepareRequest: the URL', () => {
  it('takes a string, a URL and a Request', async () => {
    expect((await prepare('https://api.example.com/a?x=1')).url.href).toBe('https://api.example.com/a?x=1')
    const url = new URL('https://api.example.com/b')
    const fromUrl = await prepare(url)
    expect(fromUrl.url).toBeInstanceOf(URL)
    expect(fromUrl.url.href).toBe('https://api.example.com/b')
    expect((await prepare(new Request('https://api.example.com/c?q=1'))).url.href).toBe('https://api.example.com/c?q=1')
  })

  it('refuses a relative URL with ERR_INVALID_INPUT', async () => {
    const err = await rejection(prepare('/orders'))
    expect(isBoundError(err, 'ERR_INVALID_INPUT')).toBe(true)
    expect((err as Error).cause).toBeInstanceOf(TypeError)
  })
})

describe('prepareRequest: the method', () => {
  it('defaults to GET, and takes the Request’s method', async () => {
    expect((await prepare('https://api.example.com/')).method).toBe('GET')
    expect((await prepare(new Request('https://api.example.com/', { method: 'DELETE' }))).method).toBe('DELETE')
  })

  it('upper-cases the standard methods only, as fetch does (patch stays patch)', async () => {
    const methodOf = async (method: string) => (await prepare('https://api.example.com/', { method })).method
    expect(await methodOf('get')).toBe('GET')
    expect(await methodOf('pOsT')).toBe('POST')
    expect(await methodOf('delete')).toBe('DELETE')
    expect(await methodOf('options')).toBe('OPTIONS')
    expect(await methodOf('patch')).toBe('patch')
    expect(await methodOf('PATCH')).toBe('PATCH')
    expect(await methodOf('propfind')).toBe('propfind')
  })

  it('init.method overrides the Request’s', async () => {
    expect((await prepare(new Request('https://api.example.com/', { method: 'PUT' }), { method: 'post' })).method).toBe('POST')
  })

  it('refuses a method that is not an HTTP token with ERR_INVALID_INPUT', async () => {
    for (const method of ['GE T', 'GET\r\nX-Injected: 1', 'P(ST', '']) {
      expect(isBoundError(await rejection(prepare('https://api.example.com/', { method })), 'ERR_INVALID_INPUT')).toBe(true)
    }
  })
})

describe('prepareRequest: headers', () => {
  it('flattens to lower-case names, repeated names combined as Headers combines them', async () => {
    const { headers } = await prepare('https://api.example.com/', {
      headers: [
        ['X-Trace', 'a'],
        ['x-trace', 'b'],
        ['Content-Language', 'en'],
      ],
    })
    expect({ ...headers }).toEqual({ 'x-trace': 'a, b', 'content-language': 'en', accept: '*/*', 'accept-encoding': 'gzip, deflate, br' })
  })

  it('takes a Headers, a record, and a Request’s headers; init.headers replaces the Request’s', async () => {
    expect((await prepare('https://api.example.com/', { headers: new Headers({ 'X-A': '1' }) })).headers['x-a']).toBe('1')
    expect((await prepare('https://api.example.com/', { headers: { 'X-B': '2' } })).headers['x-b']).toBe('2')
    const req = new Request('https://api.example.com/', { headers: { 'X-From-Request': 'r' } })
    expect((await prepare(req)).headers['x-from-request']).toBe('r')
    const replaced = await prepare(new Request('https://api.example.com/', { headers: { 'X-From-Request': 'r' } }), { headers: { 'X-From-Init': 'i' } })
    expect(replaced.headers['x-from-request']).toBeUndefined()
    expect(replaced.headers['x-from-init']).toBe('i')
  })

  it('adds accept: */* and accept-encoding only when absent', async () => {
    const defaults = await prepare('https://api.example.com/')
    expect(defaults.headers.accept).toBe('*/*')
    expect(defaults.headers['accept-encoding']).toBe('gzip, deflate, br')
    const own = await prepare('https://api.example.com/', { headers: { Accept: 'application/json', 'Accept-Encoding': 'identity' } })
    expect(own.headers.accept).toBe('application/json')
    expect(own.headers['accept-encoding']).toBe('identity')
  })

  it('refuses an invalid header the way Headers does', async () => {
    await expect(prepare('https://api.example.com/', { headers: { 'bad name': 'x' } })).rejects.toThrow(TypeError)
  })
})

describe('prepareRequest: bodies', () => {
  const url = 'https://api.example.com/upload'

  it('no body: null and replayable', async () => {
    const r = await prepare(url, { method: 'POST' })
    expect(r.body).toBeNull()
    expect(r.replayable).toBe(true)
    expect(r.headers['content-type']).toBeUndefined()
  })

  it('a string: as is, text/plain;charset=UTF-8 unless a content-type is set', async () => {
    const plain = await prepare(url, { method: 'POST', body: 'héllo' })
    expect(plain.body).toBe('héllo')
    expect(plain.replayable).toBe(true)
    expect(plain.headers['content-type']).toBe('text/plain;charset=UTF-8')
    const json = await prepare(url, { method: 'POST', body: '{}', headers: { 'Content-Type': 'application/json' } })
    expect(json.headers['content-type']).toBe('application/json')
  })

  it('a Uint8Array, an ArrayBuffer and a DataView: their bytes (the view’s window only), no content-type', async () => {
    const u8 = await prepare(url, { method: 'POST', body: new Uint8Array([1, 2, 3]) })
    expect([...(u8.body as Uint8Array)]).toEqual([1, 2, 3])
    expect(u8.headers['content-type']).toBeUndefined()
    const ab = await prepare(url, { method: 'POST', body: new Uint8Array([4, 5]).buffer })
    expect(ab.body).toBeInstanceOf(Uint8Array)
    expect([...(ab.body as Uint8Array)]).toEqual([4, 5])
    const backing = new Uint8Array([0, 1, 2, 3, 4, 5, 6, 7]).buffer
    const dv = await prepare(url, { method: 'POST', body: new DataView(backing, 2, 3) })
    expect([...(dv.body as Uint8Array)]).toEqual([2, 3, 4])
    const view = await prepare(url, { method: 'POST', body: new Uint16Array([0x0102]) })
    expect((view.body as Uint8Array).byteLength).toBe(2)
    expect([u8, ab, dv, view].every((r) => r.replayable)).toBe(true)
  })

  it('URLSearchParams: the encoded form and the form content-type', async () => {
    const r = await prepare(url, { method: 'POST', body: new URLSearchParams({ a: '1 2', b: 'é&' }) })
    expect(r.body).toBe('a=1+2&b=%C3%A9%26')
    expect(r.headers['content-type']).toBe('application/x-www-form-urlencoded;charset=UTF-8')
    const own = await prepare(url, { method: 'POST', body: new URLSearchParams({ a: '1' }), headers: { 'content-type': 'application/x-custom' } })
    expect(own.headers['content-type']).toBe('application/x-custom')
  })

  it('a Blob: its bytes and its type (none when it has none)', async () => {
    const typed = await prepare(url, { method: 'POST', body: new Blob(['<a/>'], { type: 'application/xml' }) })
    expect(bytesOf(typed.body)).toBe('<a/>')
    expect(typed.headers['content-type']).toBe('application/xml')
    expect(typed.replayable).toBe(true)
    const untyped = await prepare(url, { method: 'POST', body: new Blob(['x']) })
    expect(untyped.headers['content-type']).toBeUndefined()
  })

  it('FormData: multipart/form-data with the boundary its bytes use', async () => {
    const form = new FormData()
    form.set('name', 'value-1')
    form.set('file', new Blob(['file-bytes'], { type: 'text/plain' }), 'f.txt')
    const r = await prepare(url, { method: 'POST', body: form })
    const type = r.headers['content-type']!
    const boundary = /^multipart\/form-data; boundary=(.+)$/.exec(type)?.[1]
    expect(boundary).toBeTruthy()
    const text = bytesOf(r.body)
    expect(text.startsWith(`--${boundary}\r\n`)).toBe(true)
    expect(text).toContain('name="name"\r\n\r\nvalue-1\r\n')
    expect(text).toContain('filename="f.txt"')
    expect(text).toContain('file-bytes')
    expect(r.replayable).toBe(true)
    // and it parses back as the same form
    const back = await new Response(r.body as Uint8Array, { headers: { 'content-type': type } }).formData()
    expect(back.get('name')).toBe('value-1')
  })

  it('a ReadableStream, a Node Readable or an async iterable: passed on as is, not replayable', async () => {
    const web = new ReadableStream<Uint8Array>({ start: (c) => c.close() })
    const webReq = await prepare(url, { method: 'POST', body: web, duplex: 'half' } as RequestInit)
    expect(webReq.body).toBe(web)
    expect(webReq.replayable).toBe(false)
    const node = Readable.from([Buffer.from('x')])
    const nodeReq = await prepare(url, { method: 'POST', body: node as never })
    expect(nodeReq.body).toBe(node)
    expect(nodeReq.replayable).toBe(false)
    const iterable = (async function* () { yield new Uint8Array([1]) })()
    const itReq = await prepare(url, { method: 'POST', body: iterable as never })
    expect(itReq.body).toBe(iterable)
    expect(itReq.replayable).toBe(false)
  })

  it('refuses an unsupported body with ERR_INVALID_INPUT', async () => {
    for (const body of [42, { some: 'object' }, true]) {
      const err = await rejection(prepare(url, { method: 'POST', body: body as never }))
      expect(isBoundError(err, 'ERR_INVALID_INPUT')).toBe(true)
    }
  })

  it('a Request’s body is read once, into replayable bytes, with its content-type', async () => {
    const req = new Request(url, { method: 'POST', body: 'from-request' })
    const r = await prepare(req)
    expect(req.bodyUsed).toBe(true)
    expect(r.body).toBeInstanceOf(Uint8Array)
    expect(bytesOf(r.body)).toBe('from-request')
    expect(r.replayable).toBe(true)
    expect(r.method).toBe('POST')
    expect(r.headers['content-type']).toBe('text/plain;charset=UTF-8')
  })

  it('init.body replaces a Request’s body, which is then not read', async () => {
    const req = new Request(url, { method: 'POST', body: 'from-request' })
    const r = await prepare(req, { body: 'from-init' })
    expect(r.body).toBe('from-init')
    expect(req.bodyUsed).toBe(false)
  })
})

describe('prepareRequest: signal and redirect', () => {
  it('carries init.signal and init.redirect; default redirect is follow', async () => {
    const controller = new AbortController()
    const r = await prepare('https://api.example.com/', { signal: controller.signal, redirect: 'manual' })
    expect(r.signal).toBe(controller.signal)
    expect(r.redirect).toBe('manual')
    const d = await prepare('https://api.example.com/')
    expect(d.redirect).toBe('follow')
    expect(d.signal).toBeUndefined()
  })

  it('carries a Request’s signal (aborting follows it) and redirect; init overrides both', async () => {
    const controller = new AbortController()
    const req = new Request('https://api.example.com/', { signal: controller.signal, redirect: 'error' })
    const r = await prepare(req)
    expect(r.redirect).toBe('error')
    expect(r.signal?.aborted).toBe(false)
    controller.abort(new Error('stop'))
    expect(r.signal?.aborted).toBe(true)
    const other = new AbortController()
    const o = await prepare(new Request('https://api.example.com/', { redirect: 'error' }), { redirect: 'follow', signal: other.signal })
    expect(o.redirect).toBe('follow')
    expect(o.signal).toBe(other.signal)
  })

  it('signal: null in init keeps the Request’s signal', async () => {
    const controller = new AbortController()
    const r = await prepare(new Request('https://api.example.com/', { signal: controller.signal }), { signal: null })
    controller.abort()
    expect(r.signal?.aborted).toBe(true)
  })
})

describe('prepareRequest refuses what fetch refuses', () => {
  it('a body on GET or HEAD is ERR_INVALID_INPUT, as fetch throws', async () => {
    for (const method of ['GET', 'HEAD', 'get']) {
      await expect(prepareRequest('https://api.example.com/x', { method, body: 'x' })).rejects.toMatchObject({ code: 'ERR_INVALID_INPUT', message: expect.stringContaining('cannot have a body') })
    }
    await expect(prepareRequest('https://api.example.com/x', { method: 'POST', body: 'x' })).resolves.toMatchObject({ method: 'POST', body: 'x' })
  })
})
