/**
 * `@bound/got`: got hooks that send every request through Bound — the session's bound token and a
 * fresh DPoP proof (or its client certificate) to the configured origins only, the servers'
 * challenges answered — with got's own options, retries, redirects, parsing and errors.
 *
 * @packageDocumentation
 * @module @bound/got
 */
import { Readable } from 'node:stream'
import got, { type BeforeRedirectHook, type BeforeRequestHook, type ExtendOptions, type Got, type Response } from 'got'
import { BoundError, isLoopbackHost } from '@bound/core'
import { getChallenges as challengesOf, type BoundOptions, type ResponseChallenge } from '@bound/fetch'
import { createBoundSender, decodedHeaderRecord, systemCodeOf } from '@bound/fetch/internal'

/**
 * Options of {@link boundHooks}: where credentials go and how challenges are answered, as for
 * `createBoundFetch`. Redirects, retries, timeouts and parsing come from got's own options.
 *
 * @example
 * ```ts
 * const options: BoundGotOptions = { session, origins: ['https://api.example.com'], otherOrigins: 'error' }
 * ```
 */
export type BoundGotOptions = BoundOptions

/** The hooks {@link boundHooks} returns, for `got.extend({ hooks })`. */
export interface BoundHooks {
  beforeRequest: BeforeRequestHook[]
  beforeRedirect: BeforeRedirectHook[]
}

const BODYLESS = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'DELETE'])
const responses = new WeakMap<object, ResponseChallenge[]>()
/** The options of redirect hops that changed origin: they carry no credentials, even to a listed origin. */
const crossed = new WeakSet<object>()

/** The options a got hook receives. */
type HookOptions = Parameters<BeforeRequestHook>[0]
/** A fetch body, as `RequestInit` takes it. */
type FetchBody = NonNullable<RequestInit['body']> | null

/**
 * Creates got hooks that send each request through Bound instead of `node:http`: the bound token and
 * a fresh DPoP proof go to `origins` only (a request elsewhere goes without credentials, or is
 * refused with `otherOrigins: 'error'`); DPoP nonce, `invalid_token`, step-up, claims and scope
 * challenges are answered once each; every redirect hop and every got retry is a new request with a
 * new proof, decided again by origin (never from https down to plain http); a streamed body is sent
 * once — not retried, and a redirect that would need it again is returned as it is.
 *
 * The request goes out on the session's transport — its trust anchors, client certificate and
 * egress proxy — so got's `agent`, `https` TLS settings, `http2`, `dnsLookup`, `dnsCache`, `cache`
 * and `request` are refused with `ERR_INVALID_CONFIG`. got's `timeout.request` bounds the whole
 * exchange (the other timeout phases belong to `node:http` and do not apply). Bound's errors reach
 * the caller as got's `RequestError` with the same `code` and the `BoundError` as `cause`; a
 * network failure keeps the system code (`ECONNREFUSED`, …) so got's retry still recognises it.
 *
 * @example
 * ```ts
 * import got from 'got'
 * import { boundHooks } from '@bound/got'
 * const api = got.extend({ prefixUrl: 'https://api.example.com', hooks: boundHooks({ session, origins: ['https://api.example.com'] }) })
 * const orders = await api.get('orders').json()
 * ```
 */
export function boundHooks(options: BoundGotOptions): BoundHooks {
  const send = createBoundSender(options, 'boundHooks')

  const beforeRequest: BeforeRequestHook = async (opts) => {
    refuseOtherTransports(opts)
    const url = opts.url instanceof URL ? opts.url : new URL(String(opts.url))
    const method = opts.method.toUpperCase()
    const headers: Record<string, string> = {}
    for (const [name, value] of Object.entries(opts.headers)) {
      if (value === undefined) continue
      headers[name.toLowerCase()] = Array.isArray(value) ? value.join(', ') : String(value)
    }
    let body: unknown = opts.body
    if (body === undefined) {
      if (opts.isStream && !BODYLESS.has(method)) {
        throw new BoundError('ERR_INVALID_INPUT', `got.stream: a ${method} body piped into the stream is not supported through Bound; pass it as the body option (a stream is fine)`)
      }
      body = null
    } else if (typeof body !== 'string' && !(body instanceof Uint8Array)) {
      // a stream, an iterable or an encoded FormData: sent once. got must neither send it again on
      // a retry nor follow a redirect that needs it again (that response is returned as it is).
      opts.body = Buffer.alloc(0)
      opts.retry.limit = 0
      opts.followRedirect = false
      if (typeof (body as AsyncIterable<unknown>)[Symbol.asyncIterator] !== 'function') body = Readable.from(body as Iterable<unknown>)
    }
    const signals = [opts.signal as AbortSignal | undefined, opts.timeout.request ? AbortSignal.timeout(opts.timeout.request) : undefined].filter((s): s is AbortSignal => s !== undefined)
    let res: globalThis.Response
    try {
      // redirects are got's: each hop comes back through this hook and is decided again
      res = await send(url, { method, headers, body: body as FetchBody, redirect: 'manual', duplex: 'half', ...(signals.length ? { signal: signals.length === 1 ? signals[0] : AbortSignal.any(signals) } : {}) } as RequestInit, { crossedOrigin: crossed.has(opts) })
    } catch (err) {
      throw toGotCause(err, opts)
    }
    // (got takes an IncomingMessage-like stream from a beforeRequest hook as the response)
    return toResponse(res) as unknown as Response
  }

  const beforeRedirect: BeforeRedirectHook = (next, response) => {
    const from = new URL(response.url)
    const to = next.url instanceof URL ? next.url : new URL(String(next.url))
    // the same rules as the bound fetch's own redirects
    if (from.protocol === 'https:' && to.protocol === 'http:' && !isLoopbackHost(to.hostname)) {
      throw new BoundError('ERR_INSECURE_TRANSPORT', `got: refusing a redirect from https to plain http (${to.origin})`)
    }
    if (to.protocol !== 'https:' && to.protocol !== 'http:') throw new BoundError('ERR_INVALID_INPUT', `got: refusing a redirect to ${to.protocol}`)
    // DPOP-29: once a redirect has changed origin, no later hop carries credentials
    const previous = (response as { request?: { options?: object } }).request?.options
    if (to.origin !== from.origin || (previous !== undefined && crossed.has(previous))) crossed.add(next)
  }

  return { beforeRequest: [beforeRequest], beforeRedirect: [beforeRedirect] }
}

/**
 * A got instance with {@link boundHooks}: `createBoundGot({ session, origins }, { prefixUrl })` is
 * `got.extend({ prefixUrl, hooks: boundHooks({ session, origins }) })`.
 *
 * @example
 * ```ts
 * const api = createBoundGot({ session, origins: ['https://api.example.com'] }, { prefixUrl: 'https://api.example.com' })
 * const order = await api.post('orders', { json: { item: 'tea' } }).json()
 * ```
 */
export function createBoundGot(options: BoundGotOptions, defaults: ExtendOptions = {}): Got {
  return got.extend(defaults, { hooks: boundHooks(options) })
}

/**
 * The parsed, classified `WWW-Authenticate` challenges of a response returned through
 * {@link boundHooks} — or of the response a got `HTTPError` carries — with the typed error Bound
 * attached when it could not answer one (`ERR_STEP_UP_REQUIRED`, `ERR_SESSION_REVOKED`, …).
 *
 * @example
 * ```ts
 * try { await api.get('admin') } catch (err) {
 *   const refusal = getChallenges(err).find((c) => c.boundError)
 *   if (refusal?.boundError?.code === 'ERR_STEP_UP_REQUIRED') askTheUser(refusal.acrValues)
 * }
 * ```
 */
export function getChallenges(responseOrError: Response | { response?: unknown } | unknown): ResponseChallenge[] {
  const candidate = responseOrError as { response?: unknown } | undefined
  const response = candidate && typeof candidate === 'object' && !responses.has(candidate) && 'response' in candidate ? candidate.response : candidate
  return (response && typeof response === 'object' ? responses.get(response) : undefined) ?? []
}

/** got settings that would send the request some other way than through the session's transport. */
function refuseOtherTransports(opts: HookOptions): void {
  const refuse = (what: string, instead: string) => {
    throw new BoundError('ERR_INVALID_CONFIG', `got option ${what} is not used through Bound: ${instead}`)
  }
  const { agent, https } = opts
  if (agent.http || agent.https || agent.http2) refuse('agent', 'give the proxy and pool settings to the session (createSession({ proxy, transport }))')
  if (https.certificateAuthority || https.certificate || https.key || https.pfx || https.rejectUnauthorized === false) refuse('https', 'give trust anchors and the client certificate to the session (createSession({ ca, clientCertificate }))')
  if (opts.http2) refuse('http2', 'HTTP/2 is the session transport’s decision')
  if (opts.dnsLookup || opts.dnsCache) refuse('dnsLookup/dnsCache', 'use an undici DNS interceptor on the session (createSession({ interceptors: [interceptors.dns()] }))')
  if (opts.cache) refuse('cache', 'response caching below Bound would store credentialed responses; use an undici cache interceptor on the session if needed')
  if (opts.request) refuse('request', 'the request function is Bound’s')
}

/** Bound's errors as they are; a network failure with the system code got's retry knows (`ECONNREFUSED`…). */
function toGotCause(err: unknown, opts: HookOptions): unknown {
  if (err instanceof Error && err.name === 'TimeoutError' && opts.timeout.request) {
    return Object.assign(new Error(`Timeout awaiting 'request' for ${opts.timeout.request}ms`, { cause: err }), { code: 'ETIMEDOUT' })
  }
  const system = systemCodeOf(err)
  if (system !== undefined) {
    return Object.assign(new Error((err as Error).message, { cause: err }), { code: system })
  }
  return err
}

/** Bound's `Response` as the `IncomingMessage`-like stream got accepts from a `beforeRequest` hook. */
function toResponse(res: globalThis.Response): Readable {
  // (decoded already: got must not decode it again, nor count it against the coded length)
  const headers = decodedHeaderRecord(res)
  const stream = res.body ? Readable.fromWeb(res.body as never) : Readable.from([])
  const out = Object.assign(stream, { statusCode: res.status, statusMessage: res.statusText, headers, url: res.url, httpVersion: '1.1', fromCache: false })
  responses.set(out, challengesOf(res))
  return out
}
