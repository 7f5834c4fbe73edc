// NET-01: which origins go through which proxy — undici EnvHttpProxyAgent's reading of the
// environment, plus Bound's rule that loopback is never proxied.
import { describe, expect, it } from 'vitest'
import { createProxyRoutes } from '../src/proxy.js'

const via = (routes: ReturnType<typeof createProxyRoutes>, url: string) => routes.proxyFor(new URL(url))?.display

describe('proxy routes (NET-01)', () => {
  it('HTTPS_PROXY for https, HTTP_PROXY for http; https falls back to HTTP_PROXY; lower case wins', () => {
    const both = createProxyRoutes('env', { HTTPS_PROXY: 'http://secure:3128', HTTP_PROXY: 'http://plain:3128' })
    expect(via(both, 'https://api.example.com')).toBe('http://secure:3128')
    expect(via(both, 'http://api.example.com')).toBe('http://plain:3128')
    const onlyHttp = createProxyRoutes('env', { HTTP_PROXY: 'http://plain:3128' })
    expect(via(onlyHttp, 'https://api.example.com')).toBe('http://plain:3128')
    const lower = createProxyRoutes('env', { https_proxy: 'http://lower:1', HTTPS_PROXY: 'http://upper:2' })
    expect(via(lower, 'https://api.example.com')).toBe('http://lower:1')
    expect(createProxyRoutes('env', {}).enabled).toBe(false)
    expect(via(createProxyRoutes('env', {}), 'https://api.example.com')).toBeUndefined()
  })

  it('NO_PROXY: hosts, domain suffixes with or without a leading dot or *., host:port, *, separated by commas or spaces', () => {
    const routes = createProxyRoutes('env', { HTTPS_PROXY: 'http://p:3128', NO_PROXY: 'internal.example, .corp.example *.svc.local api.example.com:8443' })
    expect(via(routes, 'https://internal.example')).toBeUndefined()
    expect(via(routes, 'https://a.b.internal.example')).toBeUndefined()
    expect(via(routes, 'https://notinternal.example')).toBe('http://p:3128')
    expect(via(routes, 'https://x.corp.example')).toBeUndefined()
    expect(via(routes, 'https://orders.svc.local')).toBeUndefined()
    expect(via(routes, 'https://api.example.com:8443')).toBeUndefined()
    expect(via(routes, 'https://api.example.com')).toBe('http://p:3128') // port 443 is not 8443
    expect(via(createProxyRoutes('env', { HTTPS_PROXY: 'http://p:3128', no_proxy: '*' }), 'https://anything.example')).toBeUndefined()
  })

  it('loopback destinations are never proxied, whatever NO_PROXY says', () => {
    const routes = createProxyRoutes('http://p:3128', {})
    for (const url of ['http://127.0.0.1:8080', 'https://localhost:8443', 'http://[::1]:80', 'http://api.localhost']) expect(via(routes, url)).toBeUndefined()
    expect(via(routes, 'https://api.example.com')).toBe('http://p:3128')
  })

  it('explicit settings: a URL or { url, noProxy } ignores the environment; false means none', () => {
    const env = { HTTPS_PROXY: 'http://env:1' }
    expect(via(createProxyRoutes({ url: 'https://explicit:443', noProxy: 'skip.example' }, env), 'https://api.example.com')).toBe('https://explicit')
    expect(via(createProxyRoutes({ url: 'https://explicit:443', noProxy: 'skip.example' }, env), 'https://skip.example')).toBeUndefined()
    expect(createProxyRoutes(false, env).enabled).toBe(false)
  })

  it('SEC-07: credentials in a proxy URL are kept for the connection and never in what may be printed; bad values are refused without being echoed', () => {
    const routes = createProxyRoutes('http://user:pa%24%24@proxy.corp:3128', {})
    const proxy = routes.proxyFor(new URL('https://api.example.com'))!
    expect(proxy.display).toBe('http://proxy.corp:3128')
    expect(proxy.uri).toContain('user:pa%24%24@')
    for (const bad of ['not a url :secret', 'ftp://u:secret@x', 'socks5://u:secret@x:1080']) {
      let message = ''
      try {
        createProxyRoutes('env', { HTTPS_PROXY: bad })
      } catch (err) {
        message = (err as Error).message
        expect(err).toMatchObject({ code: 'ERR_INVALID_CONFIG' })
      }
      expect(message).toMatch(/HTTPS_PROXY/)
      expect(message).not.toContain('secret')
    }
  })
})
