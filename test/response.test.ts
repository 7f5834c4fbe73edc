import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { brotliCompressSync, deflateRawSync, deflateSync, gzipSync } from 'node:zlib'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createBoundFetch } from '@bound/fetch'
import { clientCredentials, createSession, type Session } from '@bound/oauth'
import { generateDpopKey } from '@bound/dpop'

// A plain loopback server (no auth): these tests pin fetch semantics of what the bound fetch returns.
let server: Server
let origin: string
let session: Session
const payload = JSON.stringify({ hello: 'world', list: Array.from({ length: 50 }, (_, i) => i) })
beforeAll(async () => {
  server = createServer((req, res) => {
    const u = new URL(req.url ?? '/', 'http://x')
    const enc = u.searchParams.get('enc')
    const body = enc === 'gzip' ? gzipSync(payload) : enc === 'deflate' ? deflateSync(payload) : enc === 'deflate-raw' ? deflateRawSync(payload) : enc === 'br' ? brotliCompressSync(payload) : Buffer.from(payload)
    if (u.pathname === '/empty') return void res.writeHead(204).end()
    if (u.pathname === '/sse') {
      res.writeHead(200, { 'content-type': 'text/event-stream' })
      res.write('data: one\n\n')
      setTimeout(() => res.end('data: two\n\n'), 50)
      return
    }
    res.writeHead(200, { 'content-type': 'application/json', ...(enc ? { 'content-encoding': enc === 'deflate-raw' ? 'deflate' : enc } : {}), 'set-cookie': ['a=1', 'b=2'], 'x-echo-accept-encoding': String(req.headers['accept-encoding']) })
    res.end(req.method === 'HEAD' ? undefined : body)
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  session = createSession({ tokenEndpoint: `${origin}/token`, clientId: 'c', grant: clientCredentials(), dpop: await generateDpopKey() })
  session.adopt({}, { access_token: 'tok', token_type: 'DPoP', expires_in: 3600 })
})
afterAll(async () => {
  await session?.close()
  await new Promise((r) => server?.close(r))
})
const fetch = () => createBoundFetch({ session, origins: [origin] })

describe('the Response a bound fetch returns', () => {
  it.each(['gzip', 'deflate', 'deflate-raw', 'br', ''])('decodes content-encoding %s like fetch', async (enc) => {
    const res = await fetch()(`${origin}/data?enc=${enc}`)
    expect(await res.json()).toEqual(JSON.parse(payload))
    expect(res.headers.get('x-echo-accept-encoding')).toBe('gzip, deflate, br')
  })

  it('is a platform Response with status, statusText, headers (repeated set-cookie), url, ok', async () => {
    const res = await fetch()(`${origin}/data`)
    expect(res).toBeInstanceOf(Response)
    expect([res.status, res.statusText, res.ok, res.url, res.redirected]).toEqual([200, 'OK', true, `${origin}/data`, false])
    expect(res.headers.getSetCookie()).toEqual(['a=1', 'b=2'])
    expect(res.bodyUsed).toBe(false)
    await res.text()
    expect(res.bodyUsed).toBe(true)
    await expect(res.text()).rejects.toThrow(TypeError)
  })

  it('body is a web ReadableStream when asked for, and clone() gives two readable copies', async () => {
    const res = await fetch()(`${origin}/data?enc=gzip`)
    const copy = res.clone()
    const reader = res.body!.getReader()
    const chunks: Uint8Array[] = []
    for (let r = await reader.read(); !r.done; r = await reader.read()) chunks.push(r.value)
    expect(JSON.parse(Buffer.concat(chunks).toString())).toEqual(JSON.parse(payload))
    expect(await copy.json()).toEqual(JSON.parse(payload))
    expect(res.bodyUsed).toBe(true)
  })

  it('streams (server-sent events arrive before the response ends)', async () => {
    const res = await fetch()(`${origin}/sse`)
    const reader = res.body!.getReader()
    const first = await reader.read()
    expect(Buffer.from(first.value!).toString()).toBe('data: one\n\n')
    let rest = ''
    for (let r = await reader.read(); !r.done; r = await reader.read()) rest += Buffer.from(r.value).toString()
    expect(rest).toBe('data: two\n\n')
  })

  it('clone() then reading the original (what ky does) works, for small and large bodies', async () => {
    const res = await fetch()(`${origin}/data`)
    const copy = res.clone()
    expect(await res.json()).toEqual(JSON.parse(payload))
    expect(await copy.text()).toBe(payload)
  })

  it('204 and HEAD have a null body', async () => {
    const empty = await fetch()(`${origin}/empty`)
    expect([empty.status, empty.body]).toEqual([204, null])
    expect(await empty.text()).toBe('')
    const head = await fetch()(`${origin}/data`, { method: 'HEAD' })
    expect(head.body).toBeNull()
  })

  it('blob(), bytes() and arrayBuffer() agree', async () => {
    const a = await (await fetch()(`${origin}/data`)).arrayBuffer()
    const b = await (await (await fetch()(`${origin}/data?enc=br`)).blob()).arrayBuffer()
    expect(Buffer.from(a).toString()).toBe(payload)
    expect(Buffer.from(b).toString()).toBe(payload)
  })
})
