import { Readable } from 'node:stream'
import { BoundError, isLoopbackHost } from '@bound/core'
import { z } from '@bound/core/internal'
import type { BoundToken } from '@bound/oauth'
import { attachChallenges } from './challenges.js'
import { createChallengeEngine, isChallengeable, type BoundOptions } from './engine.js'
import { toExchange } from './exchange.js'
import { toFetchError } from './network-error.js'
import { prepareRequestNow, type PreparedRequest } from './request.js'

/**
 * Options of {@link createBoundFetch}.
 *
 * @example
 * ```ts
 * const options: BoundFetchOptions = { session, origins: ['https://api.example.com'], maxRedirects: 3 }
 * const fetch = createBoundFetch(options)
 * ```
 */
export interface BoundFetchOptions extends BoundOptions {
  /** Redirect hops Bound follows at most. Default 10. */
  maxRedirects?: number
}

/**
 * The `fetch` type Bound returns: the global one.
 *
 * @example
 * ```ts
 * const fetch: BoundFetch = createBoundFetch({ session, origins })
 * new StreamableHTTPClientTransport(new URL('https://mcp.example.com/mcp'), { fetch })
 * ```
 */
export type BoundFetch = typeof globalThis.fetch

/** The request body in the form undici's dispatcher takes (web streams become Node streams). */
function toRequestBody(body: PreparedRequest['body']) {
  if (body === null || typeof body === 'string' || body instanceof Uint8Array) return body
  if (typeof (body as ReadableStream).getReader === 'function') return Readable.fromWeb(body as never)
  return body as AsyncIterable<Uint8Array>
}

/** createBoundFetch's own option, besides those every integration shares. */
const FETCH_RULES = { maxRedirects: z.number().int().min(0).max(100).optional() }

const REDIRECTS = new Set([301, 302, 303, 307, 308])
const BODY_HEADERS = ['content-type', 'content-length', 'content-encoding', 'content-language', 'content-location']

/**
 * Creates a drop-in `fetch` that sends every request to the configured origins with the session's
 * bound token (and a fresh DPoP proof), answers nonce, `invalid_token` and proof-clock challenges
 * once each, follows redirects itself (a new proof per hop, no credentials across origins), and
 * returns everything else as `fetch` would.
 *
 * @example
 * ```ts
 * import { createBoundFetch } from '@bound/fetch'
 * const fetch = createBoundFetch({ session, origins: ['https://api.example.com'] })
 * const res = await fetch('https://api.example.com/orders')
 * ```
 */
export function createBoundFetch(options: BoundFetchOptions): BoundFetch {
  const send = createBoundSender(options, 'createBoundFetch')
  return ((input: Parameters<BoundFetch>[0], init?: RequestInit) => send(input, init)) as BoundFetch
}

/**
 * The bound fetch with a per-call redirect limit: what integrations for other HTTP clients (axios,
 * got) are built on, so each request keeps that client's own `maxRedirects`.
 */
export type BoundSender = (input: Parameters<BoundFetch>[0], init?: RequestInit, limits?: SendLimits) => Promise<Response>

/** Per-call settings of a {@link BoundSender}. */
export interface SendLimits {
  /** Redirect hops followed at most (default: the sender's `maxRedirects`). */
  maxRedirects?: number
  /**
   * The request is a redirect hop the client followed itself after a change of origin: it carries
   * no credentials even to a listed origin (DPOP-29), and the caller's `authorization`, `dpop` and
   * `cookie` headers are dropped.
   */
  crossedOrigin?: boolean
}

/** Creates the {@link BoundSender} behind {@link createBoundFetch} (see `@bound/fetch/internal`). */
export function createBoundSender(options: BoundFetchOptions, where = 'createBoundFetch'): BoundSender {
  const engine = createChallengeEngine(options, where, where === 'createBoundFetch' ? FETCH_RULES : {})
  const { session, otherOrigins } = engine
  const maxRedirects = options.maxRedirects ?? 10

  /** One HTTP exchange. Credentials only with a token; the client certificate only then too. */
  const send = async (req: PreparedRequest, url: URL, token: BoundToken | undefined, stripCredentials: boolean, nonce?: string) => {
    // a copy of the caller's headers in undici's plain form (credentials are set on the copy only)
    const flat: Record<string, string> = { ...req.headers }
    if (token) {
      const pending = engine.credentials(token, req.method, url, nonce)
      const credentials = pending instanceof Promise ? await pending : pending
      flat.authorization = credentials.authorization
      if (credentials.dpop) flat.dpop = credentials.dpop
      else delete flat.dpop
    } else if (stripCredentials) {
      for (const h of ['authorization', 'dpop', 'cookie', 'proxy-authorization']) delete flat[h]
    }
    let data
    try {
      data = await session.transport.request(url, { method: req.method, headers: flat, body: toRequestBody(req.body), signal: req.signal, presentCertificate: token !== undefined })
    } catch (err) {
      throw toFetchError(err, url, req.signal)
    }
    return toExchange(data)
  }

  /** A credentialed request: sent at once with a token at hand (only a challenge then goes to the engine), else through the engine. */
  const sendBound = async (req: PreparedRequest, url: URL) => {
    const exchange = (token: BoundToken | undefined, attempt: { nonce?: string | undefined }) => send(req, url, token, false, attempt.nonce)
    const token = engine.ready(url)
    if (token === undefined) return engine.run(url, req, exchange)
    const res = await send(req, url, token, false)
    if (!isChallengeable(res.status)) {
      engine.observe(url, token, res.headers)
      return { res, challenges: undefined }
    }
    return engine.run(url, req, exchange, { token, res })
  }

  return async (input, init, limits) => {
    const limit = limits?.maxRedirects ?? maxRedirects
    const req = prepareRequestNow(input as never, init)
    if (req.pendingBody) req.body = await req.pendingBody
    req.signal?.throwIfAborted()
    let url = req.url
    const origin = url.origin
    const listed = engine.isCredentialOrigin(origin)
    if (!listed && otherOrigins === 'error') {
      throw new BoundError('ERR_ORIGIN_NOT_ALLOWED', `fetch: ${origin} is not one of the origins this bound fetch sends credentials to`)
    }
    let crossedOrigin = limits?.crossedOrigin === true
    let carry = listed && !crossedOrigin
    // a request the caller aimed at an unlisted origin (a typo?) is reported once
    if (!carry && !crossedOrigin) engine.noteUnlisted(origin)
    let hops = 0
    for (;;) {
      const { res, challenges } = carry ? await sendBound(req, url) : { res: await send(req, url, undefined, crossedOrigin), challenges: undefined }
      const done = () => {
        const out = res.toResponse(url, hops > 0, req.method)
        if (challenges) attachChallenges(out, challenges)
        return out
      }
      if (!REDIRECTS.has(res.status) || req.redirect === 'manual') return done()
      const location = res.headers.get('location')
      if (location === null) return done()
      const discard = () => res.discard()
      if (req.redirect === 'error') {
        await discard()
        throw new BoundError('ERR_INVALID_INPUT', `fetch: redirected (HTTP ${res.status}) while redirect is "error"`)
      }
      let next: URL
      try {
        next = new URL(location, url)
      } catch (err) {
        await discard()
        throw new BoundError('ERR_INVALID_INPUT', 'fetch: the redirect Location is not a URL', { cause: err })
      }
      if (next.protocol === 'http:' && url.protocol === 'https:' && !isLoopbackHost(next.hostname)) {
        // a downgrade from TLS to plain HTTP on the network: never followed
        await discard()
        throw new BoundError('ERR_INSECURE_TRANSPORT', `fetch: refusing a redirect from https to plain http (${next.origin})`)
      }
      if (next.protocol !== 'https:' && next.protocol !== 'http:') {
        await discard()
        throw new BoundError('ERR_INVALID_INPUT', `fetch: refusing a redirect to ${next.protocol}`)
      }
      const toGet = (res.status === 303 && req.method !== 'GET' && req.method !== 'HEAD') || ((res.status === 301 || res.status === 302) && req.method === 'POST')
      // A stream cannot be sent twice: hand a body-keeping redirect back as it is.
      if (!toGet && !req.replayable) return done()
      if (++hops > limit) {
        await discard()
        throw new BoundError('ERR_INVALID_INPUT', `fetch: more than ${limit} redirects`)
      }
      await discard()
      if (next.origin !== url.origin) {
        // Credentials never follow a change of origin (DPOP-29), and 'error' holds for redirects too.
        if (!engine.isCredentialOrigin(next.origin) && otherOrigins === 'error') {
          throw new BoundError('ERR_ORIGIN_NOT_ALLOWED', `fetch: redirected to ${next.origin}, which is not one of the origins this bound fetch may reach`)
        }
        carry = false
        crossedOrigin = true
      }
      if (toGet) {
        req.method = 'GET'
        req.body = null
        req.replayable = true
        for (const h of BODY_HEADERS) delete req.headers[h]
      }
      url = next
    }
  }
}
