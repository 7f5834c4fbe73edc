import { BoundError, isBoundError, type Clock, type Emitter } from '@bound/core'
import { mergeClaims } from '@bound/core/internal'
import type { Dpop } from '@bound/dpop'
import type { Acquisition, TokenParams } from './acquisition.js'
import type { Binding } from './binding.js'
import type { Fleet } from './fleet.js'
import type { Grant } from './grants.js'
import type { SessionEvents, StepUpApproval, TokenRequest } from './session.js'
import { parseTokenResponse, type TokenResponse } from './token-endpoint.js'
import { createTokenManager, sessionClosed, type BackoffOptions, type RefreshOptions } from './token-manager.js'
import { createBoundToken, type BoundToken } from './token.js'

/** What a session's token cache needs. */
export interface TokenCacheOptions {
  binding: Binding
  acquisition: Acquisition
  events: Emitter<SessionEvents>
  clock: Clock
  grant: Grant
  dpop: Dpop | undefined
  defaultLifetimeMs: number
  acceptBearerDowngrade: boolean
  refresh: RefreshOptions | undefined
  backoff: BackoffOptions | undefined
  maxEntries: number | undefined
  /** Declared on every token request, in `claims` (CAE-01). */
  clientCapabilities: readonly string[] | undefined
  /** Fleet coordination, when tokens are shared through a store. */
  fleet: Fleet | undefined
}

// (what earn throws is a BoundError, or an abort passed through: reported as the token it cost)
const codeOf = (err: unknown) => (err instanceof BoundError ? err.code : 'ERR_TOKEN_UNAVAILABLE')
const messageOf = (err: unknown) => (err instanceof Error ? err.message : String(err))
const isAbort = (err: unknown) => err instanceof Error && (err.name === 'AbortError' || err.name === 'TimeoutError')
const NO_EXTRA: Readonly<Record<string, string>> = Object.freeze({})

/**
 * The session's side of the seam: a {@link TokenRequest} becomes an opaque cache key and the
 * parameters a token request sends (kept with the entry), served by the token manager, earned
 * through token acquisition after the posture check, and reported as events.
 */
export function createTokenCache(options: TokenCacheOptions) {
  const { binding, acquisition, events, clock, grant, dpop, defaultLifetimeMs, fleet } = options

  /** A token response as a held token: lifetime from receipt (`expires_in`, else the default), scope as granted or asked. */
  const holdable = (response: TokenResponse, type: 'DPoP' | 'Bearer', receivedAt: number, scope: string | undefined, cacheKey: string, generation: number, bound: BoundToken['binding']) => {
    const token = createBoundToken({
      value: response.access_token,
      type,
      receivedAt,
      expiresAt: receivedAt + (response.expires_in !== undefined ? response.expires_in * 1000 : defaultLifetimeMs),
      lifetimeAssumed: response.expires_in === undefined,
      scope: response.scope ?? scope,
      cacheKey,
      generation,
      binding: bound,
    })
    acquisition.track(token)
    return token
  }

  /** One token request for `cacheKey` in this process (the posture was asked). */
  const earnHere = async (cacheKey: string, params: TokenParams, background: boolean, generation: number, started: number) => {
    const { result, grant: used } = await acquisition.earn(params)
    const receivedAt = clock.now()
    const bound = { ...(result.type === 'DPoP' && result.jkt ? { jkt: result.jkt } : {}), ...(result.x5t ? { x5t: result.x5t } : {}) }
    const token = holdable(result.response, result.type, receivedAt, params.scope, cacheKey, generation, bound)
    events.emit('token.acquired', { label: token.label, cacheKey, type: token.type, grant: used, expiresAt: token.expiresAt, attempts: result.attempts, waitMs: receivedAt - started, reason: background ? 'refresh' : 'demand' })
    return token
  }

  // With a shared store the fleet is one earner: a token's refresh point need not be spread at random
  // across processes (only one of them refreshes; the others take its token).
  const refresh = fleet ? { jitter: 0.1, ...options.refresh } : options.refresh
  const manager = createTokenManager<TokenParams>({
    clock,
    ...(refresh ? { refresh } : {}),
    ...(options.backoff ? { backoff: options.backoff } : {}),
    ...(options.maxEntries ? { maxEntries: options.maxEntries } : {}),
    // a token bound to a key or certificate the session rotated away from is never served again
    accept: binding.isCurrent,
    // an unhealthy posture is no failure of the AS: once healthy, callers are not held off
    countsAsFailure: (err) => !isBoundError(err, 'ERR_POSTURE_UNHEALTHY'),
    onBackgroundError(cacheKey, err) {
      events.emit('token.refresh_failed', { cacheKey, code: codeOf(err), message: messageOf(err) })
    },
    onEvent(event) {
      if (event.type === 'wait') events.emit('token.wait', { cacheKey: event.cacheKey, ms: event.ms })
      if (event.type === 'backoff') events.emit('token.backoff', { cacheKey: event.cacheKey, failures: event.failures, until: event.until, code: codeOf(event.error) })
    },
    async earn(cacheKey, params, { background, generation, previous }) {
      const started = clock.now()
      try {
        // every token request asks the posture first, background refreshes included
        await binding.checkPosture()
        if (!fleet) return await earnHere(cacheKey, params, background, generation, started)
        return await fleet.obtain(cacheKey, { previous, localGeneration: generation, earn: () => earnHere(cacheKey, params, background, generation, started) })
      } catch (thrown) {
        // anything not Bound's own (a subject-token callback or a signer that threw…) becomes a typed
        // error; its message stays in the cause, never copied into ours (it is not ours to vouch for)
        const err = thrown instanceof BoundError || isAbort(thrown) ? thrown : new BoundError('ERR_TOKEN_UNAVAILABLE', `Could not obtain a token: ${thrown instanceof Error ? `a ${thrown.name}` : 'a non-error value'} was thrown while earning it (see cause)`, { cause: thrown })
        events.emit('token.failed', { cacheKey, code: codeOf(err), message: messageOf(err) })
        throw err
      }
    },
  })

  // CAE-01: the client's capabilities go in every token request's claims, merged with any other
  const capabilities = options.clientCapabilities?.length ? [...options.clientCapabilities] : undefined
  const withCapabilities = (claims: string | undefined): string | undefined => {
    if (!capabilities) return claims
    let parsed: unknown = {}
    if (claims !== undefined) {
      try {
        parsed = JSON.parse(claims)
      } catch {
        return claims // (not ours to fix: sent as it is)
      }
    }
    return typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed) ? JSON.stringify(mergeClaims(parsed as Record<string, unknown>, capabilities)) : claims
  }
  /** A token request's extra parameters: a step-up's, with the capabilities in their claims. */
  const extraOf = (stepUpParams: Readonly<Record<string, string | number>> | undefined): Readonly<Record<string, string>> => {
    if (!stepUpParams && !capabilities) return NO_EXTRA
    const extra: Record<string, string> = { ...(stepUpParams as Record<string, string> | undefined) }
    const claims = withCapabilities(extra.claims)
    if (claims !== undefined) extra.claims = claims
    return extra
  }

  // The cache key and parameters of the default need, remembered while nothing changes (the hot path).
  let last: { resource: string | undefined; bindingKey: string; key: string; params: TokenParams } | undefined
  /** The opaque cache key of `req` and the parameters a token request for it sends. */
  const keyOf = (req: TokenRequest): { key: string; params: TokenParams } => {
    const bindingKey = binding.key()
    const simple = req.scope === undefined && req.stepUp === undefined
    if (simple && last && last.resource === req.resource && last.bindingKey === bindingKey) return last
    const resource = req.resource ?? grant.resource
    const scope = req.scope ?? grant.scope
    const stepUp = req.stepUp
    const key = JSON.stringify([resource ?? null, scope ?? null, stepUp ? [stepUp.origin, stepUp.level, stepUp.params ?? 'adopted'] : null, bindingKey])
    const params: TokenParams = { resource, scope, extra: extraOf(stepUp?.params) }
    const out = { key, params }
    if (simple) last = { resource: req.resource, bindingKey, ...out }
    return out
  }

  const stepUpExpired = (stepUp: StepUpApproval) =>
    new BoundError('ERR_STEP_UP_REQUIRED', `The step-up token the application handed over for ${stepUp.origin} (${stepUp.level}) has expired or was dropped; the level must be approved again`)

  const tokenFor = (req: TokenRequest): Promise<BoundToken> => {
    const { key, params } = keyOf(req)
    if (req.stepUp && !req.stepUp.params) {
      // a handed-over token: never earned again
      const held = manager.getNow(key)
      return held ? Promise.resolve(held) : Promise.reject(manager.closed ? sessionClosed() : stepUpExpired(req.stepUp))
    }
    if (req.claims !== undefined) return manager.forceRefresh(key, params, { once: { ...params, extra: { ...params.extra, claims: withCapabilities(req.claims)! } }, signal: req.signal })
    return manager.get(key, params, req.signal)
  }

  return {
    manager,
    token: tokenFor,
    /** The token {@link tokenFor} would resolve with at once, or undefined when it would have to wait (or a claims challenge needs a token request). */
    tokenNow: (req: TokenRequest): BoundToken | undefined => (req.claims === undefined ? manager.getNow(keyOf(req).key) : undefined),
    forceRefresh(req: TokenRequest) {
      const { key, params } = keyOf(req)
      return manager.forceRefresh(key, params, { signal: req.signal })
    },
    /** Holds a token set the application obtained for `req`, validated like a token response. */
    adopt(req: TokenRequest, tokenSet: Record<string, unknown>): BoundToken {
      const parsed = parseTokenResponse(tokenSet, 'the token set given by the application', { dpop: dpop !== undefined, acceptBearerDowngrade: options.acceptBearerDowngrade })
      const { key, params } = keyOf(req)
      const bound = parsed.type === 'DPoP' && dpop ? { jkt: dpop.jkt } : {}
      const token = holdable(parsed.response, parsed.type, clock.now(), params.scope, key, manager.nextGeneration(), bound)
      manager.put(key, token)
      return token
    },
  }
}
