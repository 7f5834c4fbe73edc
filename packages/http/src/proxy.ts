import { BoundError, isLoopbackHost } from '@bound/core'

/**
 * An egress proxy given explicitly.
 *
 * @example
 * ```ts
 * const proxy: ProxyOptions = { url: 'http://proxy.corp.example:3128', noProxy: '.internal.example,10.0.0.1:8443' }
 * createSession({ …, proxy })
 * ```
 */
export interface ProxyOptions {
  /**
   * The proxy (`http://host:port` or `https://host:port`). Credentials may be given as userinfo
   * (`http://user:pass@host:port`, sent as `Proxy-Authorization: Basic`); they never appear in an
   * error, event or log line.
   */
  url: string | URL
  /**
   * Hosts that bypass the proxy, in `NO_PROXY`'s form: comma- or space-separated hosts, domain
   * suffixes (`.example.com` or `example.com` also match subdomains), `host:port`, or `*` for all.
   */
  noProxy?: string
}

/**
 * Where requests go: `'env'` (the default) reads `HTTPS_PROXY`, `HTTP_PROXY` and `NO_PROXY` (the
 * lower-case forms first) when the transport is made, with the semantics of undici's
 * `EnvHttpProxyAgent`; `false` never uses a proxy; a URL or {@link ProxyOptions} names one for
 * every origin (except `noProxy`). Loopback destinations never go through a proxy.
 *
 * @example
 * ```ts
 * createTransport({ proxy: false })                              // ignore the environment
 * createTransport({ proxy: 'http://proxy.corp.example:3128' })  // one proxy for everything
 * ```
 */
export type ProxySetting = 'env' | false | string | URL | ProxyOptions

/** One proxy as the transport uses it. */
export interface ResolvedProxy {
  /** The URL undici connects to (userinfo included: undici turns it into Proxy-Authorization). */
  readonly uri: string
  /** What errors and events may print: the proxy's origin, never its credentials. */
  readonly display: string
}

/** How each origin is routed: through which proxy, if any. */
export interface ProxyRoutes {
  /** The proxy for `url`, or `undefined` to connect directly. */
  proxyFor(url: URL): ResolvedProxy | undefined
  /** Whether any proxy is configured. */
  readonly enabled: boolean
}

const DEFAULT_PORTS: Record<string, number> = { 'http:': 80, 'https:': 443 }

/** A proxy URL checked and stripped to what may be printed. */
function resolveProxy(value: string | URL, where: string): ResolvedProxy {
  let url: URL
  try {
    url = new URL(String(value))
  } catch {
    // never echo the value: it may carry credentials
    throw new BoundError('ERR_INVALID_CONFIG', `${where} is not a URL (expected http://host:port or https://host:port)`)
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new BoundError('ERR_INVALID_CONFIG', `${where} must be an http: or https: URL, not ${url.protocol} (SOCKS is not supported)`)
  }
  return { uri: url.href, display: `${url.protocol}//${url.host}` }
}

interface NoProxyEntry {
  hostname: string
  port: number
}

/** `NO_PROXY` parsed the way undici's `EnvHttpProxyAgent` does. */
function parseNoProxy(value: string): { all: boolean; entries: NoProxyEntry[] } {
  if (value.trim() === '*') return { all: true, entries: [] }
  const entries: NoProxyEntry[] = []
  for (const entry of value.split(/[,\s]/)) {
    if (!entry) continue
    const withPort = /^(.+):(\d+)$/.exec(entry)
    entries.push({ hostname: (withPort ? withPort[1]! : entry).replace(/^\*?\./, '').toLowerCase(), port: withPort ? Number.parseInt(withPort[2]!, 10) : 0 })
  }
  return { all: false, entries }
}

/**
 * Resolves a {@link ProxySetting} into routes. `env` is read once, here: a process that changes
 * its proxy variables later makes a new transport (session).
 */
export function createProxyRoutes(setting: ProxySetting | undefined, env: NodeJS.ProcessEnv = process.env): ProxyRoutes {
  let httpProxy: ResolvedProxy | undefined
  let httpsProxy: ResolvedProxy | undefined
  let noProxy = ''
  if (setting === undefined || setting === 'env') {
    const http = env.http_proxy ?? env.HTTP_PROXY
    const https = env.https_proxy ?? env.HTTPS_PROXY
    if (http) httpProxy = resolveProxy(http, 'HTTP_PROXY')
    // as undici's EnvHttpProxyAgent: https origins use HTTPS_PROXY, else HTTP_PROXY
    httpsProxy = https ? resolveProxy(https, 'HTTPS_PROXY') : httpProxy
    noProxy = env.no_proxy ?? env.NO_PROXY ?? ''
  } else if (setting !== false) {
    const options: ProxyOptions = typeof setting === 'string' || setting instanceof URL ? { url: setting } : setting
    if (typeof options !== 'object' || options === null || options.url === undefined) throw new BoundError('ERR_INVALID_CONFIG', 'proxy must be "env", false, a URL, or { url, noProxy }')
    httpProxy = httpsProxy = resolveProxy(options.url, 'proxy.url')
    if (options.noProxy !== undefined && typeof options.noProxy !== 'string') throw new BoundError('ERR_INVALID_CONFIG', 'proxy.noProxy must be a string (NO_PROXY form)')
    noProxy = options.noProxy ?? ''
  }
  const bypass = parseNoProxy(noProxy)
  const direct = (url: URL): boolean => {
    const hostname = url.hostname.replace(/^\[|\]$/g, '').toLowerCase()
    // Loopback never leaves the machine directly; through a proxy it would, and plain-http loopback
    // traffic (allowed because it stays local) would cross the network in clear.
    if (isLoopbackHost(url.hostname)) return true
    if (bypass.all) return true
    const port = Number.parseInt(url.port, 10) || DEFAULT_PORTS[url.protocol] || 0
    for (const entry of bypass.entries) {
      if (entry.port && entry.port !== port) continue
      if (hostname === entry.hostname || hostname.endsWith(`.${entry.hostname}`)) return true
    }
    return false
  }
  return {
    enabled: httpProxy !== undefined || httpsProxy !== undefined,
    proxyFor(url) {
      const proxy = url.protocol === 'https:' ? httpsProxy : httpProxy
      if (proxy === undefined || direct(url)) return undefined
      return proxy
    },
  }
}

/**
 * A failure that happened at the proxy (it refused the tunnel, asked for credentials, or could not
 * be reached) as `ERR_PROXY` naming the proxy — not the API or AS behind it. Anything else is
 * returned as it is.
 */
export function proxyError(err: unknown, proxy: ResolvedProxy, target: URL): unknown {
  if (!(err instanceof Error)) return err
  const message = err.message
  const status = /Proxy response \((\d{3})\)/.exec(message)?.[1] ?? (/Proxy Authentication Required/.test(message) ? '407' : undefined)
  const code = (err as { code?: string }).code
  const unreachable = code === 'ECONNREFUSED' || code === 'ENOTFOUND' || code === 'EAI_AGAIN' || code === 'UND_ERR_CONNECT_TIMEOUT' || code === 'ECONNRESET'
  if (status === undefined && !(unreachable && proxyReached(err, proxy))) return err
  const what = status === '407'
    ? 'asked for credentials (HTTP 407 Proxy Authentication Required): give them in the proxy URL (http://user:pass@host:port) or HTTPS_PROXY'
    : status !== undefined
      ? `refused the tunnel (HTTP ${status})`
      : `could not be reached (${code})`
  return new BoundError('ERR_PROXY', `The proxy ${proxy.display} ${what}; nothing was sent to ${target.host}`, { cause: err })
}

/** Whether a connection error names the proxy's own address (so the proxy, not the target, failed). */
function proxyReached(err: Error, proxy: ResolvedProxy): boolean {
  const url = new URL(proxy.uri)
  const port = Number.parseInt(url.port, 10) || DEFAULT_PORTS[url.protocol]
  const e = err as { port?: number; address?: string; hostname?: string }
  return e.port === port || e.hostname === url.hostname || err.message.includes(`${url.hostname}:${port}`) || err.message.includes(url.hostname)
}
