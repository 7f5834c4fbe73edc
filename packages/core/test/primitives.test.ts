import { describe, expect, it } from 'vitest'
import { createEmitter, createLru, createSingleFlight } from '../src/internal.js'

describe('createSingleFlight', () => {
  it('shares one task among concurrent callers and forgets it when it settles', async () => {
    const flights = createSingleFlight<string, number>()
    let calls = 0
    const task = () => new Promise<number>((resolve) => setTimeout(() => resolve(++calls), 5))
    const results = await Promise.all(Array.from({ length: 100 }, () => flights.run('k', task)))
    expect(new Set(results)).toEqual(new Set([1]))
    expect(flights.size).toBe(0)
    expect(await flights.run('k', task)).toBe(2)
  })
  it('does not cache failures, including synchronous throws', async () => {
    const flights = createSingleFlight<string, number>()
    await expect(flights.run('k', () => { throw new Error('boom') })).rejects.toThrow('boom')
    await expect(flights.run('k', async () => 7)).resolves.toBe(7)
  })
})

describe('createLru', () => {
  it('stays within its bound and evicts the least recently used', () => {
    const lru = createLru<number, number>(3)
    for (let i = 0; i < 10_000; i++) lru.set(i, i)
    expect(lru.size).toBe(3)
    lru.get(9997)
    lru.set(10_000, 0)
    expect(lru.has(9997)).toBe(true)
    expect(lru.has(9998)).toBe(false)
  })
})

describe('createEmitter', () => {
  it('calls listeners in order and isolates a throwing listener', () => {
    const events = createEmitter<{ a: { n: number } }>()
    const seen: number[] = []
    events.on('a', () => { throw new Error('listener bug') })
    const off = events.on('a', (e) => seen.push(e.n))
    events.emit('a', { n: 1 })
    off()
    events.emit('a', { n: 2 })
    expect(seen).toEqual([1])
  })
})

describe('assertSecureUrl (DPOP-31)', async () => {
  const { assertSecureUrl } = await import('../src/index.js')
  it('allows https anywhere and http only on loopback', () => {
    expect(assertSecureUrl('https://as.example.com/t', 'x').host).toBe('as.example.com')
    for (const u of ['http://127.0.0.1:8080/', 'http://localhost/', 'http://[::1]:3000/', 'http://127.9.9.9/']) expect(() => assertSecureUrl(u, 'x')).not.toThrow()
    for (const u of ['http://10.0.0.1/', 'http://example.com/', 'http://localhost.example.com/', 'http://127.0.0.1.nip.io/']) expect(() => assertSecureUrl(u, 'x')).toThrow(expect.objectContaining({ code: 'ERR_INSECURE_TRANSPORT' }))
    expect(() => assertSecureUrl('ftp://a/', 'x')).toThrow(expect.objectContaining({ code: 'ERR_INVALID_INPUT' }))
    expect(() => assertSecureUrl('nope', 'x')).toThrow(expect.objectContaining({ code: 'ERR_INVALID_INPUT' }))
  })
})

describe('assertResourceIndicator (RFC 8707 §2)', async () => {
  const { assertResourceIndicator, assertSecureUrl } = await import('../src/index.js')
  it('takes an absolute URI; refuses a relative one, a fragment and user information, never echoing it', () => {
    expect(assertResourceIndicator('https://api.example.com/v1', 'resource')).toBe('https://api.example.com/v1')
    expect(assertResourceIndicator('urn:example:api', 'resource')).toBe('urn:example:api')
    for (const bad of ['/relative', 'https://api.example.com/#frag', 'https://svc:hunter2@api.example.com']) {
      let err: unknown
      try {
        assertResourceIndicator(bad, 'resource')
      } catch (e) {
        err = e
      }
      expect(err).toMatchObject({ code: 'ERR_INVALID_CONFIG' })
      expect(String((err as Error).message)).not.toContain('hunter2')
    }
  })
  it('assertSecureUrl refuses user information the same way', () => {
    expect(() => assertSecureUrl('https://svc:hunter2@as.example.com', 'issuer')).toThrow(expect.objectContaining({ code: 'ERR_INVALID_CONFIG', message: expect.not.stringContaining('hunter2') }))
  })
})
