import { BoundError, assertSecureUrl, type ClassifiedChallenge } from '@bound/core'
import type { BoundToken, Session } from '@bound/oauth'
import { attachChallenges, challengeFor, readChallenges } from './challenges.js'
import { prepareRequest, type PreparedRequest } from './request.js'

/** Options of {@link createBoundFetch}. */
export interface BoundFetchOptions {
  /** The session whose tokens and binding requests carry. */
  session: Session
  /**
   * Origins (`https://api.example.com`) that receive credentials. Requests elsewhere carry none.
   * Plain `http:` origins are refused unless loopback.
   */
  origins: readonly string[]
  /** What happens to a request for another origin: sent without credentials (default) or refused with `ERR_ORIGIN_NOT_ALLOWED`. */
  otherOrigins?: 'plain' | 'error'
  /** Redirect hops Bound follows at most. Default 10. */
  maxRedirects?: number
}

/** The `fetch` type Bound returns: the global one. */
export type BoundFetch = typeof globalThis.fetch

const REDIRECTS = new Set([301, 302, 303, 307, 308])

/**
 * Creates a drop-in `fetch` that sends every request to the configured origins with the session's
 * bound token (and a fresh DPoP proof), answers nonce and `invalid_token` challenges once, and
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
  const { session } = options
  if (!session || typeof session.token !== 'function') throw new BoundError('ERR_INVALID_CONFIG', 'createBoundFetch: session must come from createSession()')
  if (!Array.isArray(options.origins) || options.origins.length === 0) throw new BoundError('ERR_INVALID_CONFIG', 'createBoundFetch: origins must list at least one origin that may receive credentials')
  const allowed = new Set(options.origins.map((o) => {
    const u = assertSecureUrl(o, `credential origin ${o}`)
    return u.origin
  }))
  const otherOrigins = options.otherOrigins ?? 'plain'
  const maxRedirects = options.maxRedirects ?? 10

  const send = async (req: PreparedRequest, url: URL, token: BoundToken | undefined, stripCredentials = false): Promise<Response> => {
    const headers = new Headers(req.headers)
    if (token) {
      headers.set('authorization', `${token.type} ${token.value}`)
      if (token.type === 'DPoP') {
        if (!session.dpop) throw new BoundError('ERR_INVALID_CONFIG', 'A DPoP token without a DPoP key')
        headers.set('dpop', await session.dpop.proof(req.method, url, { accessToken: token.value }))
      } else headers.delete('dpop')
    } else if (stripCredentials) {
      headers.delete('authorization')
      headers.delete('dpop')
      headers.delete('cookie')
    }
    const res = await session.transport.fetch(url, {
      method: req.method,
      headers: headers as never,
      body: req.body as never,
      redirect: 'manual',
      ...(req.signal ? { signal: req.signal } : {}),
      ...(req.body instanceof ReadableStream ? { duplex: 'half' } : {}),
    } as never)
    if (token) session.dpop?.observe(url, res.headers)
    return res as unknown as Response
  }

  const boundFetch = async (input: Parameters<BoundFetch>[0], init?: RequestInit): Promise<Response> => {
    const req = await prepareRequest(input as never, init)
    req.signal?.throwIfAborted()
    let url = req.url
    const credentialed = allowed.has(url.origin)
    if (!credentialed && otherOrigins === 'error') {
      throw new BoundError('ERR_ORIGIN_NOT_ALLOWED', `fetch: ${url.origin} is not one of the origins this bound fetch sends credentials to`)
    }
    let carry = credentialed
    let crossedOrigin = false
    let hops = 0
    for (;;) {
      const res = carry ? await sendWithCredentials(req, url) : await send(req, url, undefined, crossedOrigin)
      if (!REDIRECTS.has(res.status) || req.redirect === 'manual') return res
      const location = res.headers.get('location')
      if (location === null) return res
      if (req.redirect === 'error') {
        await res.body?.cancel().catch(() => {})
        throw new BoundError('ERR_INVALID_INPUT', `fetch: redirected (HTTP ${res.status}) while redirect is "error"`)
      }
      if (++hops > maxRedirects) {
        await res.body?.cancel().catch(() => {})
        throw new BoundError('ERR_INVALID_INPUT', `fetch: more than ${maxRedirects} redirects`)
      }
      let next: URL
      try {
        next = new URL(location, url)
      } catch (err) {
        throw new BoundError('ERR_INVALID_INPUT', 'fetch: the redirect Location is not a URL', { cause: err })
      }
      await res.body?.cancel().catch(() => {})
      if (next.protocol !== 'https:' && next.protocol !== 'http:') throw new BoundError('ERR_INVALID_INPUT', `fetch: refusing a redirect to ${next.protocol}`)
      // Credentials never follow a change of origin (DPOP-29).
      if (next.origin !== url.origin) {
        carry = false
        crossedOrigin = true
      }
      const toGet = (res.status === 303 && req.method !== 'GET' && req.method !== 'HEAD') || ((res.status === 301 || res.status === 302) && req.method === 'POST')
      if (toGet) {
        req.method = 'GET'
        req.body = null
        req.replayable = true
        for (const h of ['content-type', 'content-length', 'content-encoding', 'content-language', 'content-location']) req.headers.delete(h)
      } else if (!req.replayable) {
        // a stream cannot be sent twice: hand the redirect back as-is
        return res
      }
      url = next
    }
  }

  /** A challenge Bound answers, each at most once per request. */
  type Reaction = 'nonce' | 'token' | 'clock'

  const sendWithCredentials = async (req: PreparedRequest, url: URL): Promise<Response> => {
    assertSecureUrl(url, `API origin ${url.origin}`)
    const used = new Set<Reaction>()
    for (;;) {
      const token = await session.token({ signal: req.signal })
      const res = await send(req, url, token)
      if (res.status !== 401 && res.status !== 400 && res.status !== 403) return res
      const challenges = readChallenges(res.headers)
      const challenge = challengeFor(challenges, token.type === 'DPoP' ? 'dpop' : 'bearer')
      if (token.type === 'DPoP' && session.dpop) {
        // DPOP-24: the RS says which algs it takes; a key it refuses is a configuration error,
        // never a reason to fall back to Bearer.
        const algs = challenges.find((c) => c.scheme === 'dpop' && c.algs !== undefined)?.algs
        if (algs && !algs.includes(session.dpop.key.alg)) {
          await res.body?.cancel().catch(() => {})
          session.dpop.assertAlgAccepted(algs, `The resource server ${url.origin}`)
        }
      }
      const reaction = req.replayable ? react(challenge, token, res, url) : undefined
      if (reaction === undefined || used.has(reaction)) {
        attachChallenges(res, challenges)
        return res
      }
      used.add(reaction)
      if (reaction === 'nonce') session.events.emit('nonce.challenge', { origin: url.origin, at: 'resource-server' })
      if (reaction === 'token') {
        session.events.emit('challenge.invalid_token', { origin: url.origin, label: token.label })
        session.invalidate(token)
      }
      await res.body?.cancel().catch(() => {})
    }
  }

  const react = (challenge: ClassifiedChallenge | undefined, token: BoundToken, res: Response, url: URL): Reaction | undefined => {
    if (!challenge) return undefined
    // DPOP-17/21: a nonce challenge (401, or a 400 from a confused RS) with a nonce to use: new proof, same token.
    if (challenge.kind === 'dpop-nonce' && token.type === 'DPoP' && res.headers.get('dpop-nonce') !== null) return 'nonce'
    // DPOP-23/32: a rejected proof: learn the server's clock from Date (once per origin per minute), one new proof.
    if (challenge.kind === 'invalid-dpop-proof' && token.type === 'DPoP') {
      return session.dpop?.learnClockSkew(url, Date.parse(res.headers.get('date') ?? '')) ? 'clock' : undefined
    }
    // CHAL-13: invalid_token: drop that token generation, earn a new one (single-flight), retry once.
    if (challenge.kind === 'invalid-token' && res.status === 401) return 'token'
    return undefined
  }

  return boundFetch as BoundFetch
}
