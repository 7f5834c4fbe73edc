import { BoundError, assertSecureUrl, type ClassifiedChallenge } from '@bound/core'
import type { NonceObservation } from '@bound/dpop'
import type { BoundToken, Session } from '@bound/oauth'
import { attachChallenges, challengeFor, readChallenges } from './challenges.js'
import { prepareRequest, toGlobalResponse, type PreparedRequest } from './request.js'

/** Options of {@link createBoundFetch}. */
export interface BoundFetchOptions {
  /** The session whose tokens and binding requests carry. */
  session: Session
  /**
   * Origins (`https://api.example.com`) that receive credentials: the token, the DPoP proof and
   * the client certificate. Requests elsewhere carry none. Plain `http:` is refused unless loopback.
   */
  origins: readonly string[]
  /**
   * A request for (or a redirect to) another origin: sent without credentials (`'plain'`, the
   * default) or refused with `ERR_ORIGIN_NOT_ALLOWED` (`'error'`).
   */
  otherOrigins?: 'plain' | 'error'
  /** Redirect hops Bound follows at most. Default 10. */
  maxRedirects?: number
}

/** The `fetch` type Bound returns: the global one. */
export type BoundFetch = typeof globalThis.fetch

/** A challenge Bound answers, each at most once per request. */
type Reaction = 'nonce' | 'token' | 'clock'

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
  const { session } = options
  if (!session || typeof session.token !== 'function') throw new BoundError('ERR_INVALID_CONFIG', 'createBoundFetch: session must come from createSession()')
  if (!Array.isArray(options.origins) || options.origins.length === 0) throw new BoundError('ERR_INVALID_CONFIG', 'createBoundFetch: origins must list at least one origin that may receive credentials')
  const allowed = new Set(options.origins.map((o, i) => assertSecureUrl(o, `credential origin origins[${i}]`).origin))
  const otherOrigins = options.otherOrigins ?? 'plain'
  const maxRedirects = options.maxRedirects ?? 10

  /** One HTTP exchange. Credentials only with a token; the client certificate only then too. */
  const send = async (req: PreparedRequest, url: URL, token: BoundToken | undefined, stripCredentials: boolean) => {
    const headers = new Headers(req.headers)
    if (token) {
      headers.set('authorization', `${token.type} ${token.value}`)
      if (token.type === 'DPoP') headers.set('dpop', await session.dpop!.proof(req.method, url, { accessToken: token.value }))
      else headers.delete('dpop')
    } else if (stripCredentials) {
      for (const h of ['authorization', 'dpop', 'cookie', 'proxy-authorization']) headers.delete(h)
    }
    const init = {
      method: req.method,
      headers,
      body: req.body,
      redirect: 'manual',
      ...(req.signal ? { signal: req.signal } : {}),
      ...(req.body !== null && typeof req.body === 'object' && !(req.body instanceof Uint8Array) ? { duplex: 'half' } : {}),
    }
    const res = await (token ? session.transport.fetch : session.transport.anonymousFetch)(url, init as never)
    const nonce: NonceObservation = token?.type === 'DPoP' ? session.dpop!.observe(url, res.headers) : 'none'
    return { res: res as unknown as Response, nonce }
  }

  const boundFetch = async (input: Parameters<BoundFetch>[0], init?: RequestInit): Promise<Response> => {
    const req = await prepareRequest(input as never, init)
    req.signal?.throwIfAborted()
    let url = req.url
    if (!allowed.has(url.origin) && otherOrigins === 'error') {
      throw new BoundError('ERR_ORIGIN_NOT_ALLOWED', `fetch: ${url.origin} is not one of the origins this bound fetch sends credentials to`)
    }
    let carry = allowed.has(url.origin)
    let crossedOrigin = false
    let hops = 0
    for (;;) {
      const { res, challenges } = carry ? await sendWithCredentials(req, url) : { res: (await send(req, url, undefined, crossedOrigin)).res, challenges: undefined }
      const done = () => {
        const out = toGlobalResponse(res, url, hops > 0)
        if (challenges) attachChallenges(out, challenges)
        return out
      }
      if (!REDIRECTS.has(res.status) || req.redirect === 'manual') return done()
      const location = res.headers.get('location')
      if (location === null) return done()
      const discard = () => res.body?.cancel().catch(() => {})
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
      if (next.protocol !== 'https:' && next.protocol !== 'http:') {
        await discard()
        throw new BoundError('ERR_INVALID_INPUT', `fetch: refusing a redirect to ${next.protocol}`)
      }
      const toGet = (res.status === 303 && req.method !== 'GET' && req.method !== 'HEAD') || ((res.status === 301 || res.status === 302) && req.method === 'POST')
      // A stream cannot be sent twice: hand a body-keeping redirect back as it is.
      if (!toGet && !req.replayable) return done()
      if (++hops > maxRedirects) {
        await discard()
        throw new BoundError('ERR_INVALID_INPUT', `fetch: more than ${maxRedirects} redirects`)
      }
      await discard()
      if (next.origin !== url.origin) {
        // Credentials never follow a change of origin (DPOP-29), and 'error' holds for redirects too.
        if (!allowed.has(next.origin) && otherOrigins === 'error') {
          throw new BoundError('ERR_ORIGIN_NOT_ALLOWED', `fetch: redirected to ${next.origin}, which is not one of the origins this bound fetch may reach`)
        }
        carry = false
        crossedOrigin = true
      }
      if (toGet) {
        req.method = 'GET'
        req.body = null
        req.replayable = true
        for (const h of BODY_HEADERS) req.headers.delete(h)
      }
      url = next
    }
  }

  const sendWithCredentials = async (req: PreparedRequest, url: URL): Promise<{ res: Response; challenges?: ClassifiedChallenge[] }> => {
    assertSecureUrl(url, `API origin ${url.origin}`)
    const used = new Set<Reaction>()
    for (let stale = 0; ; ) {
      const token = await session.token({ signal: req.signal })
      // A token bound to a key or certificate the session rotated away from is never sent.
      if (!session.accepts(token)) {
        if (stale++ < 2) continue
        throw new BoundError('ERR_TOKEN_UNAVAILABLE', 'The session rotated its key or certificate while earning a token; try again')
      }
      const { res, nonce } = await send(req, url, token, false)
      if (res.status !== 401 && res.status !== 400 && res.status !== 403) return { res }
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
      const reaction = req.replayable ? react(challenge, token, res, url, nonce) : undefined
      if (reaction === undefined || used.has(reaction)) return { res, challenges }
      used.add(reaction)
      if (reaction === 'nonce') session.events.emit('nonce.challenge', { origin: url.origin, at: 'resource-server' })
      if (reaction === 'token') {
        session.events.emit('challenge.invalid_token', { origin: url.origin, label: token.label })
        session.invalidate(token)
      }
      await res.body?.cancel().catch(() => {})
    }
  }

  const react = (challenge: ClassifiedChallenge | undefined, token: BoundToken, res: Response, url: URL, nonce: NonceObservation): Reaction | undefined => {
    if (!challenge) return undefined
    // DPOP-17/20/21: a nonce challenge (401, or a 400 from a confused RS) with a valid new nonce: new proof, same token.
    // ('unchanged' too: concurrent requests all learn the same new nonce; only the first one stores it)
    if (challenge.kind === 'dpop-nonce') return token.type === 'DPoP' && (nonce === 'stored' || nonce === 'unchanged') ? 'nonce' : undefined
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
