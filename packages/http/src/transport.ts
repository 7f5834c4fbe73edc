import { createSecureContext, rootCertificates, type SecureContext } from 'node:tls'
import { Agent, ProxyAgent, fetch as undiciFetch, request as undiciRequest, type Dispatcher } from 'undici'
import { BoundError, systemClock, type Clock } from '@bound/core'
import { clockRule, durationMs, optionsChecker, pemListRule, z } from '@bound/core/internal'
import { assertCertificateValid, clientCertificateFromPem, type ClientCertificate, type ClientCertificatePem, type ClientIdentity, type Pem } from '@bound/mtls'
import { createProxyRoutes, proxyError, type ProxySetting, type ResolvedProxy } from './proxy.js'

/**
 * Options of {@link createTransport}.
 *
 * @example
 * ```ts
 * const transport = createTransport({ ca: internalCaPem, connectTimeoutMs: 3_000, keepAliveTimeoutMs: 10_000 })
 * createSession({ …, transport })
 * ```
 */
export interface TransportOptions {
  /**
   * Extra trust anchors (PEM), e.g. an internal CA. Added to Node's bundled roots, not replacing
   * them. Server certificates are always verified; there is no switch to turn that off.
   */
  ca?: Pem | readonly Pem[]
  /** A client certificate presented in the TLS handshake (mTLS): PEM, or a (watched) source from `loadClientCertificate`. */
  clientCertificate?: ClientCertificatePem | ClientCertificate
  /** Clock for certificate validity checks. Default the system clock. */
  clock?: Clock
  /** Keep-alive timeout of pooled connections, in milliseconds. Default 4,000. */
  keepAliveTimeoutMs?: number
  /** Connect timeout in milliseconds. Default 10,000. */
  connectTimeoutMs?: number
  /** Largest response header section, in bytes. Default 65,536 (undici's default is 16 KiB). */
  maxHeaderSize?: number
  /**
   * Connections per origin at most; further requests queue for a free one. A whole number of at
   * least 1, or `Infinity` for no bound. Default 64, measured (`bench/pool.mjs`, 2 cores; numbers
   * in the package README): a burst of a thousand first requests makes 64 TLS handshakes, not a
   * thousand (no bound took 6–7× as long); against a server answering in 5 ms, 32 connections
   * carried 0.72× the requests/s of 64 and 128 no more (1.01×), while 128 made cold bursts 1.1–1.4×
   * slower; with no delay, 8–32 finished a cold burst 12–18 % sooner on an idle machine (no
   * difference on a loaded one) and were no faster sustained. One HTTP/1.1 connection carries one request at a time, so an origin's
   * throughput is at most this many ÷ its response time: raise it for a slow origin under heavy
   * load.
   */
  maxConnectionsPerOrigin?: number
  /**
   * Offer HTTP/2 in the TLS handshake (ALPN `h2`, then `http/1.1`): an origin that picks h2
   * multiplexes requests on its connections; one that does not is spoken to in HTTP/1.1 as
   * before. Through a proxy, negotiated inside the tunnel with the origin. Default false,
   * measured (`bench/h2.mjs`, undici 7.30, same server both ways): over h2 the bound fetch did
   * 0.43–0.47× the requests/s of HTTP/1.1 keep-alive, spent 2.1–2.5× the client CPU per request,
   * and took 1.5–2× as long for a cold burst. Turn it on for an origin that limits connections
   * or is far away (one connection carries many requests at once), not for speed.
   */
  allowH2?: boolean
  /**
   * The egress proxy: `'env'` (default) follows `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY` as undici's
   * `EnvHttpProxyAgent` does, read when the transport is made; `false` ignores them; a URL or
   * `{ url, noProxy }` sets one. https goes through a CONNECT tunnel (the proxy sees the target's
   * host and port, nothing else; the client certificate is presented inside the tunnel, to the
   * origin). Loopback destinations never use the proxy.
   */
  proxy?: ProxySetting
  /**
   * undici interceptors (`interceptors.dns()`, `interceptors.retry()`, `interceptors.cache()`, your
   * own) composed onto every dispatcher the transport makes — each certificate generation's,
   * direct or through the proxy — in the order given, so Bound's certificate routing stays on top:
   * the certificate still goes only to credentialed requests, a rotation still makes new ones.
   * Redirects are never followed beneath Bound (every dispatch says `maxRedirections: 0`).
   */
  interceptors?: readonly Interceptor[]
}

/**
 * An undici interceptor (`interceptors.dns()`, `interceptors.cache()`, your own), composed beneath Bound.
 *
 * @example
 * ```ts
 * import { interceptors } from 'undici'
 * const dns: Interceptor = interceptors.dns({ maxTTL: 30_000 })
 * ```
 */
export type Interceptor = Dispatcher.DispatcherComposeInterceptor

/**
 * Options of {@link Transport.request}.
 *
 * @example
 * ```ts
 * const { statusCode, body } = await transport.request(new URL('https://api.example.com/orders'), { method: 'GET', headers: { accept: 'application/json' } })
 * ```
 */
export interface TransportRequestOptions {
  /** The HTTP method, as sent. */
  method: string
  /** Request headers, lower-case names. */
  headers: Record<string, string | string[]>
  /** The body, if any. */
  body?: string | Uint8Array | NodeJS.ReadableStream | AsyncIterable<Uint8Array> | null
  /** Aborts the request. */
  signal?: AbortSignal | undefined
  /**
   * Present the client certificate (the request carries credentials for an origin that gets
   * them). Default false: a request presents no certificate unless it says so.
   */
  presentCertificate?: boolean
}

/**
 * The `fetch` signature Bound's transport exposes (undici's `fetch`, with its `Response`).
 *
 * @example
 * ```ts
 * const fetch: TransportFetch = session.transport.fetch
 * const metadata = await discoverAuthorizationServer('https://as.example.com', { fetch })
 * ```
 */
export type TransportFetch = (input: string | URL, init?: Parameters<typeof undiciFetch>[1]) => Promise<Awaited<ReturnType<typeof undiciFetch>>>

/**
 * How Bound talks HTTP: undici's own `fetch` paired with undici `Agent`s from the same copy
 * (never a userland Agent handed to Node's global fetch), with the trust anchors and client
 * certificate given. The certificate goes only where `fetch` is used; `anonymousFetch` never
 * presents it. Each certificate generation gets its own Agent and TLS secure context (key material
 * never sits in plain options; TLS sessions are resumed within a generation): after a rotation,
 * new requests use the new one at once, requests in flight finish on the old one, which is then
 * closed. A pooled connection made with one certificate never carries a request for another.
 *
 * @example
 * ```ts
 * const transport: Transport = createTransport({ clientCertificate: await loadClientCertificate({ certFile, keyFile }) })
 * const res = await transport.fetch('https://api.internal.example/health')
 * await transport.close()
 * ```
 */
export interface Transport {
  /** undici's `fetch`, presenting the client certificate when one is configured. */
  readonly fetch: TransportFetch
  /** undici's `fetch` that never presents a client certificate (for origins that get no credentials). */
  readonly anonymousFetch: TransportFetch
  /** Whether a client certificate is configured. */
  readonly hasClientCertificate: boolean
  /** The client certificate source, when there is one. */
  readonly clientCertificate: ClientCertificate | undefined
  /**
   * undici's dispatcher API (`undici.request`): the fast path a bound fetch is built on. Presents the
   * client certificate only with `presentCertificate: true`. Redirects are not followed.
   */
  request(url: URL, options: TransportRequestOptions): Promise<Dispatcher.ResponseData>
  /**
   * undici's low-level `dispatch` through the current certificate generation (the certificate is
   * checked first, and presented): for an integration that has decided the origin gets
   * credentials. Throws `ERR_CLOSED`, or the certificate's error, before any network call.
   */
  dispatch(options: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean
  /** Closes pooled connections. Further requests fail with `ERR_CLOSED`. */
  close(): Promise<void>
}

const toList = (ca: Pem | readonly Pem[] | undefined): Pem[] => (ca === undefined ? [] : Array.isArray(ca) ? [...(ca as readonly Pem[])] : [ca as Pem])
const isSource = (v: unknown): v is ClientCertificate => typeof v === 'object' && v !== null && typeof (v as ClientCertificate).current === 'function'

/**
 * Creates a {@link Transport}.
 *
 * @example
 * ```ts
 * import { createTransport } from '@bound/http'
 * import { loadClientCertificate } from '@bound/mtls'
 * const transport = createTransport({
 *   ca: readFileSync('/etc/pki/internal-ca.pem'),
 *   clientCertificate: await loadClientCertificate({ certFile, keyFile, watch: true }),
 * })
 * const res = await transport.fetch('https://api.internal/health')
 * ```
 */
const checkTransportOptions = optionsChecker('createTransport', {
  ca: pemListRule.optional(),
  clientCertificate: z.custom((v) => typeof v === 'object' && v !== null, 'must be { cert, key } PEM or a source from loadClientCertificate()').optional(),
  clock: clockRule.optional(),
  keepAliveTimeoutMs: durationMs(1, 600_000).optional(),
  connectTimeoutMs: durationMs(1, 600_000).optional(),
  maxHeaderSize: z.number().int().min(1024).max(16_777_216).optional(),
  maxConnectionsPerOrigin: z.unknown().optional(),
  allowH2: z.unknown().optional(),
  proxy: z.unknown().optional(),
  interceptors: z.unknown().optional(),
})

export function createTransport(options: TransportOptions = {}): Transport {
  checkTransportOptions(options)
  const source = options.clientCertificate === undefined ? undefined : isSource(options.clientCertificate) ? options.clientCertificate : clientCertificateFromPem(options.clientCertificate)
  const extra = [...toList(options.ca), ...(source?.ca ? [source.ca] : [])]
  const ca = extra.length > 0 ? [...rootCertificates, ...extra] : undefined
  const clock = options.clock ?? systemClock
  const routes = createProxyRoutes(options.proxy)
  const interceptors = options.interceptors ?? []
  if (!Array.isArray(interceptors) || interceptors.some((i) => typeof i !== 'function')) throw new BoundError('ERR_INVALID_CONFIG', 'interceptors must be a list of undici interceptors (functions)')
  if (options.allowH2 !== undefined && typeof options.allowH2 !== 'boolean') throw new BoundError('ERR_INVALID_CONFIG', 'allowH2 must be a boolean')
  const allowH2 = options.allowH2 ?? false
  const maxConnections = options.maxConnectionsPerOrigin ?? 64
  // (undici itself would read 0 as "no bound": here that has to be said with Infinity)
  if (maxConnections !== Infinity && !(Number.isInteger(maxConnections) && maxConnections >= 1)) {
    throw new BoundError('ERR_INVALID_CONFIG', 'maxConnectionsPerOrigin must be a whole number of at least 1, or Infinity for no bound')
  }
  const pool = {
    keepAliveTimeout: options.keepAliveTimeoutMs ?? 4_000,
    maxHeaderSize: options.maxHeaderSize ?? 65_536,
    connections: maxConnections === Infinity ? null : maxConnections,
    allowH2,
  }
  const connectTimeout = options.connectTimeoutMs ?? 10_000

  /** One certificate generation (or none): its TLS context and its dispatchers, made when first used. */
  const generationOf = (identity: ClientIdentity | undefined) => {
    let secureContext: SecureContext
    try {
      secureContext = createSecureContext({ ...(ca ? { ca } : {}), ...(identity ? { cert: identity.certPem, key: identity.privateKey.export({ format: 'pem', type: 'pkcs8' }) } : {}) })
    } catch (err) {
      const code = (err as { code?: string }).code
      throw new BoundError(identity ? 'ERR_MTLS_CERTIFICATE_INVALID' : 'ERR_INVALID_CONFIG', `The TLS ${identity ? 'client certificate or key' : 'trust anchors (ca)'} could not be loaded${code ? ` (${code})` : ''}`)
    }
    // (allowH2 here too: undici's connector offers h2 by ALPN only when its own options say so,
    // which inside a proxy's tunnel are requestTls)
    const tls = { secureContext, rejectUnauthorized: true, timeout: connectTimeout, allowH2 }
    const made: Dispatcher[] = []
    const compose = (d: Dispatcher) => {
      made.push(d)
      return interceptors.length > 0 ? d.compose(...interceptors) : d
    }
    let direct: Dispatcher | undefined
    const proxied = new Map<string, Dispatcher>()
    return {
      /** The dispatcher for `url`: direct, or through the proxy its routes name. */
      dispatcherFor(proxy: ResolvedProxy | undefined): Dispatcher {
        if (proxy === undefined) return (direct ??= compose(new Agent({ ...pool, connect: tls })))
        let d = proxied.get(proxy.uri)
        if (d === undefined) {
          // requestTls: the origin's TLS, inside the tunnel (certificate and trust anchors);
          // proxyTls: the proxy's own TLS for an https:// proxy (same trust anchors, no certificate)
          d = compose(new ProxyAgent({ ...pool, uri: proxy.uri, requestTls: tls, proxyTls: { ...(ca ? { ca } : {}), rejectUnauthorized: true, timeout: connectTimeout } }))
          proxied.set(proxy.uri, d)
        }
        return d
      },
      close: () => Promise.all(made.map((d) => d.close().catch(() => {}))).then(() => {}),
    }
  }
  type Generation = ReturnType<typeof generationOf>
  const anonymous = generationOf(undefined)
  let generation = source?.current()
  let current: Generation = generation ? generationOf(generation) : anonymous
  let closed = false
  const retiring = new Set<Promise<void>>()
  const retire = (old: Generation) => {
    // close() lets requests already dispatched finish, then drops the connections
    const done = old.close().finally(() => retiring.delete(done))
    retiring.add(done)
  }
  const offRotated = source?.events.on('rotated', ({ current: identity }) => {
    if (closed) return
    const previous = current
    current = generationOf(identity)
    generation = identity
    retire(previous)
  })

  /** Throws unless the transport is open and, for a request presenting it, the certificate is valid now. */
  const assertUsable = (presenting: boolean) => {
    if (closed) throw new BoundError('ERR_CLOSED', 'The transport is closed')
    if (generation && presenting) assertCertificateValid(source!.current(), clock.now())
  }
  /** The dispatcher for `url`, presenting the certificate or not; with the proxy it goes through. */
  const route = (url: URL, presenting: boolean) => {
    const proxy = routes.enabled ? routes.proxyFor(url) : undefined
    return { dispatcher: (presenting ? current : anonymous).dispatcherFor(proxy), proxy }
  }
  /** A failure at the proxy becomes ERR_PROXY naming it; anything else as it was. */
  const failed = (err: unknown, proxy: ResolvedProxy | undefined, url: URL) => {
    if (proxy === undefined) throw err
    // undici's fetch wraps the cause in TypeError('fetch failed')
    const cause = err instanceof TypeError && err.cause instanceof Error ? err.cause : err
    const mapped = proxyError(cause, proxy, url)
    throw mapped === cause ? err : mapped
  }
  const send = <T>(url: URL, presenting: boolean, go: (dispatcher: Dispatcher) => Promise<T>): Promise<T> => {
    try {
      assertUsable(presenting)
    } catch (err) {
      return Promise.reject(err)
    }
    const { dispatcher, proxy } = route(url, presenting)
    const sent = go(dispatcher)
    return proxy === undefined ? sent : sent.catch((err: unknown) => failed(err, proxy, url))
  }
  const fetchVia = (presenting: boolean): TransportFetch => (input, init) => {
    let url: URL
    try {
      url = new URL(String(input))
    } catch (err) {
      return Promise.reject(err)
    }
    return send(url, presenting, (dispatcher) => undiciFetch(input, { ...init, dispatcher }))
  }
  const request = (url: URL, init: TransportRequestOptions): Promise<Dispatcher.ResponseData> =>
    send(url, init.presentCertificate === true, (dispatcher) =>
      undiciRequest(url, {
        method: init.method as Dispatcher.HttpMethod,
        headers: init.headers,
        body: (init.body ?? null) as never,
        ...(init.signal ? { signal: init.signal } : {}),
        // never followed beneath Bound, whatever interceptors the user composed
        maxRedirections: 0,
        dispatcher,
      } as Parameters<typeof undiciRequest>[1]) as Promise<Dispatcher.ResponseData>,
    )
  const dispatch = (opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler) => {
    assertUsable(true)
    // (the origin is parsed only when a proxy may apply: this is the interceptor's hot path)
    const url = routes.enabled ? new URL(String(opts.origin)) : undefined
    const proxy = url ? routes.proxyFor(url) : undefined
    const dispatcher = current.dispatcherFor(proxy)
    return dispatcher.dispatch({ ...opts, maxRedirections: 0 } as Dispatcher.DispatchOptions, proxy === undefined ? handler : mapProxyErrors(handler, proxy, url!))
  }
  const transport: Transport = {
    request,
    dispatch,
    fetch: fetchVia(true),
    anonymousFetch: fetchVia(false),
    hasClientCertificate: source !== undefined,
    clientCertificate: source,
    async close() {
      if (closed) return
      closed = true
      offRotated?.()
      await Promise.all([current.close(), current === anonymous ? undefined : anonymous.close(), ...retiring])
    },
  }
  return transport
}

/** `handler` with a failure at the proxy reported as ERR_PROXY (undici's new and legacy handler APIs). */
function mapProxyErrors(handler: Dispatcher.DispatchHandler, proxy: ResolvedProxy, url: URL): Dispatcher.DispatchHandler {
  const h = handler as unknown as Record<string, ((...args: unknown[]) => unknown) | undefined>
  const wrapped: Record<string, (...args: unknown[]) => unknown> = {}
  // forwards every method the handler has (calls stay on the handler itself: its private state works)
  for (const name of HANDLER_METHODS) {
    const method = h[name]
    if (typeof method !== 'function') continue
    wrapped[name] =
      name === 'onResponseError' ? (controller, err) => method.call(h, controller, proxyError(err, proxy, url))
        : name === 'onError' ? (err) => method.call(h, proxyError(err, proxy, url))
          : (...args) => method.apply(h, args)
  }
  return wrapped as unknown as Dispatcher.DispatchHandler
}

const HANDLER_METHODS = ['onRequestStart', 'onRequestUpgrade', 'onResponseStart', 'onResponseData', 'onResponseEnd', 'onResponseError', 'onConnect', 'onUpgrade', 'onHeaders', 'onData', 'onComplete', 'onError', 'onBodySent', 'onRequestSent', 'onResponseStarted'] as const
