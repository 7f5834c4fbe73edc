import { BoundError, assertResourceIndicator, assertSecureUrl, isBoundError } from '@bound/core'
import { createLru, editDistance, functionRule, optionsChecker, z, type OptionRules } from '@bound/core/internal'
import type { NonceObservation } from '@bound/dpop'
import { fetchProtectedResourceMetadata, type BoundToken, type Session, type TokenRequest } from '@bound/oauth'
import { challengeFor, mergeClaims, readChallenges, type ResponseChallenge } from './challenges.js'
import type { HeadersView } from './exchange.js'
import { STEP_UP_REASONS, createStepUps, type StepUpOutcome } from './step-up.js'

/**
 * The options shared by the bound fetch and the undici interceptor: where credentials go and how challenges are answered.
 *
 * @example
 * ```ts
 * const options: BoundOptions = { session, origins: ['https://api.example.com'], otherOrigins: 'error', onStepUp: askHuman }
 * const fetch = createBoundFetch(options)
 * const interceptor = boundInterceptor(options)
 * ```
 */
export interface BoundOptions {
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
  /**
   * Called when a resource server demands a stronger or fresher authentication (RFC 9470
   * `insufficient_user_authentication`). Return token-request parameters for that level (e.g.
   * `{ acr_values }`), a token set the application obtained itself (`{ access_token, token_type,
   * expires_in }`), or `false` to decline. Without it, such responses are returned with an
   * `ERR_STEP_UP_REQUIRED` challenge.
   *
   * An approval is scoped to the origin — and resource — that asked for it: the token earned with
   * it goes to that origin only, and another origin asking for the same level gets its own call.
   * All requests waiting on the same origin, resource and level share one call.
   */
  onStepUp?: (challenge: StepUpChallenge) => Promise<StepUpResult> | StepUpResult
  /**
   * The `acr_values` a step-up may be approved for. A challenge that names only others is returned
   * with `ERR_STEP_UP_REQUIRED` and never reaches `onStepUp`; of one that names some of these,
   * `onStepUp` sees only these. Default: any.
   */
  acceptedAcrValues?: readonly string[]
  /**
   * At most `max` `onStepUp` calls per origin in any `windowMs` window (a shared call counts
   * once); past it, challenges are returned with `ERR_STEP_UP_REQUIRED`. Default 3 per 60 seconds.
   */
  stepUpPrompts?: { max?: number; windowMs?: number }
  /**
   * Called on `insufficient_scope`: the scope to ask for, or `false` to return the response.
   * Default: the union of the held and the required scopes, once.
   */
  onInsufficientScope?: (challenge: ResponseChallenge, heldScope: string | undefined) => Promise<string | false> | string | false
  /** Client capabilities merged into claims challenges (Microsoft CAE `xms_cc`, e.g. `['cp1']`). */
  clientCapabilities?: readonly string[]
  /**
   * The resource indicator (RFC 8707) per origin, when the APIs are different audiences:
   * `{ 'https://orders.example.com': 'https://orders.example.com', … }`. Default: the session's.
   */
  resources?: Readonly<Record<string, string>>
  /** RFC 9728 discovery: origins besides each resource's own from which its metadata may be fetched; and the `resource` match policy. */
  resourceMetadata?: { allowedOrigins?: readonly string[]; match?: 'exact' | 'prefix' }
}

/**
 * A step-up challenge handed to `onStepUp`.
 *
 * @example
 * ```ts
 * const onStepUp = async ({ url, acrValues, maxAge }: StepUpChallenge) =>
 *   (await askHuman(`${url} needs ${acrValues?.join(' ')} (max_age ${maxAge ?? '—'})`)) ? { acr_values: acrValues!.join(' ') } : false
 * ```
 */
export interface StepUpChallenge {
  /** The URL whose request was challenged. */
  url: string
  /** Its origin: the approval (and any token obtained with it) is for this origin only. */
  origin: string
  /** The resource indicator tokens for this origin are requested with, when there is one. */
  resource: string | undefined
  /** `acr_values`, in order (only those `acceptedAcrValues` allows, when it is set). */
  acrValues: string[] | undefined
  /** `max_age` in seconds. */
  maxAge: number | undefined
  /** The challenge as parsed. */
  challenge: ResponseChallenge
}

/**
 * What `onStepUp` returns: token-request parameters, a token set, or `false` to decline.
 *
 * @example
 * ```ts
 * const approved: StepUpResult = { acr_values: 'urn:example:mfa' }
 * const obtained: StepUpResult = { access_token, token_type: 'DPoP', expires_in: 300 } // bound to the session's key
 * const declined: StepUpResult = false
 * ```
 */
export type StepUpResult = false | Record<string, string | number> | { access_token: string; token_type: string; expires_in?: number; scope?: string }

/**
 * What the engine needs of one HTTP exchange.
 *
 * @example
 * ```ts
 * const { res } = await engine.run(url, { method: 'GET', replayable: true, signal: undefined }, async (token): Promise<EngineExchange> => {
 *   const data = await send(token)
 *   return { status: data.statusCode, headers: { get: (n) => (data.headers[n] as string | undefined) ?? null }, discard: () => data.body.dump() }
 * })
 * ```
 */
export interface EngineExchange {
  readonly status: number
  readonly headers: HeadersView
  /** Drops the body (the engine answers the challenge instead of returning the response). */
  discard(): Promise<void>
  /** Drops the response at once, its connection with it (nobody will read it: the engine failed). Default: `discard()`. */
  abandon?(): void
}

/**
 * The one decision engine behind the bound fetch, the undici interceptor and every other
 * integration: which origins get credentials, and how each challenge is answered (each at most
 * once per request). It uses the session only through its seam (`token`, `adopt`, `invalidate`,
 * `isCurrent`, `useResourceMetadata`).
 *
 * @example
 * ```ts
 * const engine: ChallengeEngine = createChallengeEngine({ session, origins: ['https://api.example.com'] })
 * engine.isCredentialOrigin('https://api.example.com') // true
 * ```
 */
export interface ChallengeEngine {
  readonly session: Session
  readonly otherOrigins: 'plain' | 'error'
  /** Whether `origin` receives credentials. */
  isCredentialOrigin(origin: string): boolean
  /**
   * Reports, once per origin, that a caller aimed a request at `origin`, which is not listed and so
   * gets no credentials: the `origin.unlisted` event names it and the nearest listed origin (an
   * origin typo otherwise shows only as a bare 401).
   */
  noteUnlisted(origin: string): void
  /**
   * Sends one request with credentials: `exchange(token)` is called once, then again for each
   * challenge answered (new proof, new token, step-up…). Resolves with the exchange to hand back,
   * and the parsed challenges when it is one Bound could not (or would not) answer.
   */
  run<E extends EngineExchange>(
    url: URL,
    request: { method: string; replayable: boolean; signal: AbortSignal | undefined },
    exchange: (token: BoundToken | undefined, attempt: { nonce?: string | undefined }) => Promise<E>,
    first?: { token: BoundToken; res: E },
  ): Promise<{ res: E; challenges?: ResponseChallenge[] }>
  /**
   * The fast path: the token `run` would send first for `url`, when it is at hand now (held and
   * current, no step-up approval to carry, no wait), else undefined. A request sent with it whose
   * response is a challenge (400, 401, 403) goes on through `run(…, { token, res })`; any other
   * response only needs {@link observe}.
   */
  ready(url: URL): BoundToken | undefined
  /** Keeps what a response to a request sent with `token` says for later ones (its `DPoP-Nonce`). */
  observe(url: URL, token: BoundToken, headers: HeadersView): void
  /** The `Authorization` and `DPoP` header values for `token` on `method url` (a fresh proof). */
  credentials(token: BoundToken, method: string, url: URL, nonce?: string): Credentials | Promise<Credentials>
}

const fn = functionRule()
const origin = z.string({ error: 'must be an origin (https://host[:port])' })
/** The rules of the options every integration shares. */
export const BOUND_OPTION_RULES: OptionRules = {
  session: z.unknown().optional(),
  origins: z.unknown().optional(),
  otherOrigins: z.enum(['plain', 'error']).optional(),
  onStepUp: fn.optional(),
  acceptedAcrValues: z.array(z.string()).optional(),
  stepUpPrompts: z.strictObject({ max: z.number().int().min(0).optional(), windowMs: z.number().int().min(1).max(86_400_000).optional() }).optional(),
  onInsufficientScope: fn.optional(),
  clientCapabilities: z.array(z.string()).optional(),
  resources: z.record(z.string(), z.string()).optional(),
  resourceMetadata: z.strictObject({ allowedOrigins: z.array(origin).optional(), match: z.enum(['exact', 'prefix']).optional() }).optional(),
}
const checkers = new Map<string, (options: unknown) => void>()
/** The options checker of one integration (its own options besides the shared ones), made once. */
function checkerFor(where: string, extra: OptionRules): (options: unknown) => void {
  let check = checkers.get(where)
  if (!check) checkers.set(where, (check = optionsChecker(where, { ...BOUND_OPTION_RULES, ...extra })))
  return check
}

/** The `Authorization` (and `DPoP`) header values for one request. */
export interface Credentials {
  authorization: string
  dpop?: string
}

/** Only 400, 401 and 403 can carry a challenge the engine answers: any other response is the caller's as it is. */
export const isChallengeable = (status: number): boolean => status === 401 || status === 403 || status === 400

/** The token request of an origin with no resource of its own (the session's default). */
const NO_NEED: TokenRequest = Object.freeze({})

/** A challenge Bound answers, each at most once per request. */
type Reaction = 'nonce' | 'token' | 'clock' | 'metadata' | 'step-up' | 'claims' | 'scope'

/**
 * Creates the {@link ChallengeEngine} for `options` (what {@link createBoundFetch} and
 * {@link boundInterceptor} are built on). Throws `ERR_INVALID_CONFIG` without a session or
 * origins, and `ERR_INSECURE_TRANSPORT` for a plain-http origin that is not loopback.
 *
 * @example
 * ```ts
 * const engine = createChallengeEngine({ session, origins: ['https://api.example.com'] })
 * const { authorization, dpop } = await engine.credentials(await session.token(), 'GET', new URL('https://api.example.com/orders'))
 * ```
 */
export function createChallengeEngine(options: BoundOptions, where = 'createBoundFetch', extra: OptionRules = {}): ChallengeEngine {
  checkerFor(where, extra)(options)
  const { session } = options
  if (!session || typeof session.token !== 'function') throw new BoundError('ERR_INVALID_CONFIG', 'session must come from createSession()')
  if (!Array.isArray(options.origins) || options.origins.length === 0) throw new BoundError('ERR_INVALID_CONFIG', 'origins must list at least one origin that may receive credentials')
  const allowed = new Set(options.origins.map((o, i) => assertOrigin(o, `origins[${i}]`)))
  const configuredResources = new Map(Object.entries(options.resources ?? {}).map(([o, r]) => {
    const origin = assertOrigin(o, 'a key of resources')
    return [origin, assertResourceIndicator(r, `resources[${origin}]`)]
  }))
  for (const [i, o] of (options.resourceMetadata?.allowedOrigins ?? []).entries()) assertOrigin(o, `resourceMetadata.allowedOrigins[${i}]`)
  // the unlisted origins already reported (bounded: a caller may reach many)
  const reported = createLru<string, true>(1000)
  const stepUps = createStepUps(session, options)
  // the RFC 9728 resource learned per origin (bounded)
  const learnedResources = createLru<string, string>(1000)

  /** The resource indicator for `origin`: configured, else learned from its metadata, else the session's. */
  const resourceFor = (origin: string) => configuredResources.get(origin) ?? learnedResources.get(origin)

  const run: ChallengeEngine['run'] = async (url, req, exchange, first) => {
    assertSecureUrl(url, `API origin ${url.origin}`)
    const origin = url.origin
    const used = new Set<Reaction>()
    const need: TokenRequest = { resource: resourceFor(origin), signal: req.signal }
    // (the fast path sent its first attempt with no approval: ready() gives no token when there is one)
    need.stepUp = first ? undefined : stepUps.approvalFor(url, need.resource)
    let nonce: string | undefined // the nonce a challenge just gave: used for the retry whatever the store says by then
    for (let stale = 0; ; ) {
      let token: BoundToken | undefined
      let res
      if (first) {
        // the first attempt went on the fast path (ready()): its token and response are this round's
        ;({ token, res } = first)
        first = undefined
      } else {
        if (session.hasAuthorizationServer) {
          try {
            token = await session.token(need)
          } catch (err) {
            // a step-up token the application handed over has expired: the level must be approved again
            if (need.stepUp && !need.stepUp.params && isBoundError(err, 'ERR_STEP_UP_REQUIRED')) {
              stepUps.forget(need.stepUp, need.resource)
              need.stepUp = undefined
              continue
            }
            throw err
          }
          need.claims = undefined // a claims challenge is answered by one token request
          // A token bound to a key or certificate the session rotated away from is never sent.
          if (!session.isCurrent(token)) {
            if (stale++ < 2) continue
            throw new BoundError('ERR_TOKEN_UNAVAILABLE', 'The session rotated its key or certificate while earning a token; try again')
          }
        }
        res = await exchange(token, { nonce })
      }
      nonce = undefined
      try {
        const observed: NonceObservation = token?.type === 'DPoP' ? session.dpop!.observe(url.href, res.headers) : 'none'
        if (!isChallengeable(res.status)) {
          if (need.stepUp && used.has('step-up')) stepUps.rememberPath(url, need.stepUp)
          return { res }
        }
        const challenges = readChallenges(res.headers)
        const challenge = challengeFor(challenges, token ? (token.type === 'DPoP' ? 'dpop' : 'bearer') : undefined)
        if (token?.type === 'DPoP' && session.dpop) {
          // DPOP-24: the RS says which algs it takes; a key it refuses is a configuration error,
          // never a reason to fall back to Bearer.
          const algs = challenges.find((c) => c.scheme === 'dpop' && c.algs !== undefined)?.algs
          if (algs && !algs.includes(session.dpop.key.alg)) {
            await res.discard()
            session.dpop.assertAlgAccepted(algs, `The resource server ${origin}`)
          }
        }
        const reaction = react(challenge, token, res, url, observed)
        if (reaction === undefined || used.has(reaction) || !req.replayable) {
          // answered once already (a second invalid_token, a refused step-up token), or never answerable
          if (challenge && reaction !== undefined && used.has(reaction)) annotate(challenge, reaction, url, 'refused', token, challenges)
          else if (challenge?.kind === 'step-up') annotate(challenge, 'step-up', url, challenge.malformed ? 'malformed' : req.replayable ? 'not-asked' : 'stream')
          else if (challenge?.kind === 'invalid-dpop-proof' && token?.type === 'DPoP') annotate(challenge, 'clock', url)
          if (challenge) session.events.emit('challenge.handled', { origin, kind: challenge.kind, outcome: 'returned' })
          return { res, challenges }
        }
        used.add(reaction)
        session.events.emit('challenge.handled', { origin, kind: challenge?.kind ?? 'no-credentials', outcome: 'answered' })
        switch (reaction) {
          case 'nonce':
            // DPOP-20: the retry carries the nonce this challenge gave
            nonce = res.headers.get('dpop-nonce') ?? undefined
            session.events.emit('nonce.challenge', { origin, at: 'resource-server' })
            break
          case 'clock':
            break
          case 'token':
            session.events.emit('challenge.invalid_token', { origin, label: token!.label })
            session.invalidate(token!)
            break
          case 'metadata': {
            // CHAL-13/PRM-01: learn the AS and the resource from the RFC 9728 metadata, then earn a token.
            await res.discard()
            const prm = await fetchProtectedResourceMetadata(url, challenge?.resourceMetadata, {
              // the client certificate goes only to credential origins, metadata hosts included
              fetch: (u, init) => (allowed.has(new URL(String(u)).origin) ? session.transport.fetch : session.transport.anonymousFetch)(u, init),
              ...(req.signal ? { signal: req.signal } : {}),
              ...(options.resourceMetadata?.allowedOrigins ? { allowedOrigins: options.resourceMetadata.allowedOrigins } : {}),
              ...(options.resourceMetadata?.match ? { match: options.resourceMetadata.match } : {}),
            })
            session.useResourceMetadata(prm)
            if (!configuredResources.has(origin)) {
              learnedResources.set(origin, prm.resource)
              need.resource = prm.resource
            }
            continue
          }
          case 'step-up': {
            const outcome = await stepUps.answer(challenge!, url, need.resource, need.stepUp, req.signal)
            if (typeof outcome === 'string') {
              annotate(challenge!, 'step-up', url, outcome)
              session.events.emit('challenge.handled', { origin, kind: 'step-up', outcome: 'returned' })
              return { res, challenges }
            }
            need.stepUp = outcome
            break
          }
          case 'claims':
            // CAE-03: one token request carrying the claims (and the client's capabilities); the token replaces the held one.
            need.claims = JSON.stringify(mergeClaims(challenge!.claims!, options.clientCapabilities))
            // (a handed-over step-up token cannot be earned again, with claims or without)
            if (need.stepUp && !need.stepUp.params) need.stepUp = undefined
            break
          case 'scope': {
            const wanted = await (options.onInsufficientScope ?? defaultScope)(challenge!, token?.scope)
            if (wanted === false || wanted === (need.scope ?? token?.scope)) return { res, challenges }
            need.scope = wanted
            break
          }
        }
      } catch (err) {
        // a response nobody will read lets its connection go
        if (res.abandon) res.abandon()
        else void res.discard()
        throw err
      }
      await res.discard()
    }
  }

  const defaultScope = (challenge: ResponseChallenge, held: string | undefined): string | false => {
    // MCP-05: never "refresh to widen"; ask for what is held plus what is required
    const union = [...new Set([...(held?.split(' ').filter(Boolean) ?? []), ...(challenge.scope ?? [])])]
    return union.length > 0 ? union.join(' ') : false
  }

  const annotate = (challenge: ResponseChallenge, reaction: Reaction, url: URL, why: StepUpOutcome = 'refused', token?: BoundToken, challenges?: ResponseChallenge[]) => {
    const said = challenge.errorDescription ? ` (${challenge.errorDescription})` : ''
    if (reaction === 'token') {
      const unbound = token?.type === 'Bearer' && !token.binding?.x5t
      if (unbound && !session.dpop && challenges?.some((c) => c.scheme === 'dpop')) {
        // not a revocation: the API wants DPoP-bound tokens and this session cannot make them
        challenge.boundError = new BoundError('ERR_INVALID_CONFIG', `${url.origin} refused the session's Bearer token twice and offers DPoP (WWW-Authenticate: DPoP)${said}: it accepts only DPoP-bound tokens, and this session has no DPoP key — createSession({ dpop: await generateDpopKey() })`)
      } else {
        const hint = unbound ? '; this session sends unbound Bearer tokens — if the API requires DPoP or mTLS, give the session a DPoP key or a client certificate' : ''
        challenge.boundError = new BoundError('ERR_SESSION_REVOKED', `${url.origin} refused a freshly earned token too (invalid_token): the session looks revoked${said}${hint}`)
      }
    } else if (reaction === 'clock') {
      challenge.boundError = new BoundError('ERR_DPOP_PROOF_REJECTED', `${url.origin} rejected the DPoP proof (invalid_dpop_proof)${said}: check that nothing between here and the API rewrites the URL or method (the proof signs both), that the API accepts ${session.dpop?.key.alg ?? 'the key’s alg'}, and this machine's clock`)
    } else if (reaction === 'step-up') {
      const level = [challenge.acrValues ? `acr_values ${challenge.acrValues.join(' ')}` : '', challenge.maxAge !== undefined ? `max_age ${challenge.maxAge}` : ''].filter(Boolean).join(', ')
      const reason = !options.onStepUp && why !== 'malformed' && why !== 'stream' ? STEP_UP_REASONS['not-asked'] : STEP_UP_REASONS[why]
      challenge.boundError = new BoundError('ERR_STEP_UP_REQUIRED', `${url.origin}${url.pathname} requires a stronger authentication${level ? ` (${level})` : ''}; ${reason}`)
    }
  }

  const react = (challenge: ResponseChallenge | undefined, token: BoundToken | undefined, res: EngineExchange, url: URL, nonce: NonceObservation): Reaction | undefined => {
    // No token sent (no AS known yet) or a challenge naming new metadata: RFC 9728 discovery.
    if (!token) return res.status === 401 ? 'metadata' : undefined
    if (!challenge) return undefined
    switch (challenge.kind) {
      // DPOP-17/20/21: a nonce challenge (401, or a 400 from a confused RS) with a valid new nonce: new proof, same token.
      // ('unchanged' too: concurrent requests all learn the same new nonce; only the first one stores it)
      case 'dpop-nonce':
        return token.type === 'DPoP' && (nonce === 'stored' || nonce === 'unchanged') ? 'nonce' : undefined
      // DPOP-23/32: a rejected proof: learn the server's clock from Date (once per origin per minute), one new proof.
      case 'invalid-dpop-proof':
        return token.type === 'DPoP' && session.dpop?.learnClockSkew(url, Date.parse(res.headers.get('date') ?? '')) ? 'clock' : undefined
      // CHAL-13: invalid_token: drop that token generation, earn a new one (single-flight), retry once.
      case 'invalid-token':
        return res.status === 401 ? 'token' : undefined
      case 'step-up':
        return challenge.malformed ? undefined : 'step-up'
      case 'insufficient-claims':
        return challenge.claims ? 'claims' : undefined
      case 'insufficient-scope':
        return 'scope'
      // PRM-12: a 401 without error that names resource metadata: re-discover once.
      case 'resource-metadata':
        return res.status === 401 ? 'metadata' : undefined
      default:
        return undefined
    }
  }

  return {
    session,
    otherOrigins: options.otherOrigins ?? 'plain',
    isCredentialOrigin: (origin) => allowed.has(origin),
    noteUnlisted(origin) {
      if (reported.get(origin)) return
      reported.set(origin, true)
      session.events.emit('origin.unlisted', { origin, nearest: nearestOf(origin, allowed) })
    },
    run,
    ready(url) {
      // (what run asserts: an origin vetted at configuration, and no userinfo)
      if (!session.hasAuthorizationServer || !allowed.has(url.origin) || url.username !== '' || url.password !== '') return undefined
      const resource = resourceFor(url.origin)
      if (stepUps.approvalFor(url, resource) !== undefined) return undefined
      const token = session.tokenNow(resource === undefined ? NO_NEED : { resource })
      return token !== undefined && session.isCurrent(token) ? token : undefined
    },
    observe(url, token, headers) {
      if (token.type === 'DPoP') session.dpop?.observe(url.href, headers)
    },
    credentials(token, method, url, nonce) {
      if (token.type !== 'DPoP') return { authorization: `${token.type} ${token.value}` }
      // (by href: the proof builder keeps the parsed form of the last URL it saw; a local key signs
      // synchronously, so the hot path makes no promise here — a remote signer's proof is awaited)
      const authorization = `DPoP ${token.value}`
      const proof = session.dpop!.proof(method, url.href, { accessToken: token.value, nonce })
      return typeof proof === 'string' ? { authorization, dpop: proof } : proof.then((dpop) => ({ authorization, dpop }))
    },
  }
}

/**
 * A credential origin as configured: https (or loopback http) and nothing but an origin. A path,
 * query or fragment would be silently widened to the whole origin, so it is refused.
 */
function assertOrigin(value: string, what: string): string {
  const url = assertSecureUrl(value, `credential origin ${what}`)
  if (url.pathname !== '/' || url.search !== '' || url.hash !== '') {
    throw new BoundError('ERR_INVALID_CONFIG', `${what} (${url.origin}${url.pathname}${url.search ? '?…' : ''}) is more than an origin: credentials are decided by origin (scheme, host and port), so the rest would be ignored; list ${url.origin}`)
  }
  return url.origin
}

/** The listed origin most like `origin` (same host first, then the fewest character edits). */
function nearestOf(origin: string, allowed: ReadonlySet<string>): string | undefined {
  const host = new URL(origin).hostname
  let best: string | undefined
  let bestScore = Infinity
  for (const candidate of allowed) {
    const score = new URL(candidate).hostname === host ? 0 : 1 + editDistance(origin, candidate)
    if (score < bestScore) {
      best = candidate
      bestScore = score
    }
  }
  return best
}
