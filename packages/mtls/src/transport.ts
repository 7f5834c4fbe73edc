import { createSecureContext, rootCertificates } from 'node:tls'
import { Agent, fetch as undiciFetch, request as undiciRequest, type Dispatcher } from 'undici'
import { BoundError, systemClock, type Clock } from '@bound/core'
import { clientCertificateFromPem, type ClientCertificate } from './client-certificate.js'
import { assertCertificateValid, type ClientIdentity } from './identity.js'

/**
 * PEM text or bytes.
 *
 * @example
 * ```ts
 * const ca: Pem = readFileSync('/etc/pki/internal-ca.pem')
 * ```
 */
export type Pem = string | Buffer

/**
 * A client certificate and its private key, in PEM.
 *
 * @example
 * ```ts
 * const clientCertificate: ClientCertificatePem = { cert: process.env.TLS_CERT!, key: process.env.TLS_KEY! }
 * createSession({ …, clientAuth: tlsClientAuth(), clientCertificate })
 * ```
 */
export interface ClientCertificatePem {
  /** The leaf certificate, optionally followed by intermediates. */
  cert: Pem
  /** The private key (PKCS#8, PKCS#1 or SEC1 PEM). */
  key: Pem
  /** Passphrase of an encrypted key. */
  passphrase?: string
}

/**
 * Options of {@link createTransport}.
 *
 * @example
 * ```ts
 * const transport = createTransport({ ca: internalCaPem, connectTimeout: 3_000, keepAliveTimeout: 10_000 })
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
  keepAliveTimeout?: number
  /** Connect timeout in milliseconds. Default 10,000. */
  connectTimeout?: number
  /** Largest response header section, in bytes. Default 65,536 (undici's default is 16 KiB). */
  maxHeaderSize?: number
  /**
   * Connections per origin at most; further requests queue for a free one. Default 64: a burst
   * of a thousand first requests makes 64 TLS handshakes, not a thousand at once (which time out
   * on a busy machine).
   */
  maxConnectionsPerOrigin?: number
}

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
   * client certificate unless `anonymous`. Redirects are not followed.
   */
  request(url: URL, options: TransportRequestOptions, anonymous?: boolean): Promise<Dispatcher.ResponseData>
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
 * import { createTransport, loadClientCertificate } from '@bound/mtls'
 * const transport = createTransport({
 *   ca: readFileSync('/etc/pki/internal-ca.pem'),
 *   clientCertificate: await loadClientCertificate({ certFile, keyFile, watch: true }),
 * })
 * const res = await transport.fetch('https://api.internal/health')
 * ```
 */
export function createTransport(options: TransportOptions = {}): Transport {
  const source = options.clientCertificate === undefined ? undefined : isSource(options.clientCertificate) ? options.clientCertificate : clientCertificateFromPem(options.clientCertificate)
  const extra = [...toList(options.ca), ...(source?.ca ? [source.ca] : [])]
  const ca = extra.length > 0 ? [...rootCertificates, ...extra] : undefined
  const clock = options.clock ?? systemClock
  const agentFor = (identity: ClientIdentity | undefined) => {
    let secureContext
    try {
      secureContext = createSecureContext({ ...(ca ? { ca } : {}), ...(identity ? { cert: identity.certPem, key: identity.privateKey.export({ format: 'pem', type: 'pkcs8' }) } : {}) })
    } catch (err) {
      const code = (err as { code?: string }).code
      throw new BoundError(identity ? 'ERR_MTLS_CERTIFICATE_INVALID' : 'ERR_INVALID_CONFIG', `The TLS ${identity ? 'client certificate or key' : 'trust anchors (ca)'} could not be loaded${code ? ` (${code})` : ''}`)
    }
    return new Agent({
      connect: { secureContext, rejectUnauthorized: true, timeout: options.connectTimeout ?? 10_000 },
      keepAliveTimeout: options.keepAliveTimeout ?? 4_000,
      maxHeaderSize: options.maxHeaderSize ?? 65_536,
      connections: options.maxConnectionsPerOrigin ?? 64,
    })
  }
  const anonymous = agentFor(undefined)
  let generation = source?.current()
  let agent = generation ? agentFor(generation) : anonymous
  let closed = false
  const retiring = new Set<Promise<void>>()
  const retire = (old: Agent) => {
    // close() lets requests already dispatched finish, then drops the connections
    const done = old.close().catch(() => {}).finally(() => retiring.delete(done))
    retiring.add(done)
  }
  const offRotated = source?.events.on('rotated', ({ current }) => {
    if (closed) return
    const previous = agent
    agent = agentFor(current)
    generation = current
    retire(previous)
  })

  /** Throws unless the transport is open and, for a request presenting it, the certificate is valid now. */
  const assertUsable = (presenting: boolean) => {
    if (closed) throw new BoundError('ERR_CLOSED', 'The transport is closed')
    if (generation && presenting) assertCertificateValid(source!.current(), clock.now())
  }
  /** `send()` after the check, with a failed check as a rejection (for the promise-returning APIs). */
  const checked = <T>(presenting: boolean, send: () => Promise<T>): Promise<T> => {
    try {
      assertUsable(presenting)
    } catch (err) {
      return Promise.reject(err)
    }
    return send()
  }

  const withCertificate: TransportFetch = (input, init) => checked(true, () => undiciFetch(input, { ...init, dispatcher: agent }))
  const withoutCertificate: TransportFetch = (input, init) => checked(false, () => undiciFetch(input, { ...init, dispatcher: anonymous }))
  const request = (url: URL, init: TransportRequestOptions, anon = false) =>
    checked(!anon, () =>
      undiciRequest(url, {
        method: init.method as Dispatcher.HttpMethod,
        headers: init.headers,
        body: (init.body ?? null) as never,
        ...(init.signal ? { signal: init.signal } : {}),
        dispatcher: anon ? anonymous : agent,
      }),
    )
  const dispatch = (opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler) => {
    assertUsable(true)
    return agent.dispatch(opts, handler)
  }
  const transport: Transport = {
    request,
    dispatch,
    fetch: withCertificate,
    anonymousFetch: withoutCertificate,
    hasClientCertificate: source !== undefined,
    clientCertificate: source,
    async close() {
      if (closed) return
      closed = true
      offRotated?.()
      await Promise.all([agent.close().catch(() => {}), agent === anonymous ? undefined : anonymous.close().catch(() => {}), ...retiring])
    },
  }
  return transport
}
