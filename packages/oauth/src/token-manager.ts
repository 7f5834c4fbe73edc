import { BoundError, TokenEndpointError, type Clock } from '@bound/core'
import { createSingleFlight } from '@bound/core/internal'
import type { BoundToken } from './token.js'

/**
 * When to refresh ahead of expiry.
 *
 * @example
 * ```ts
 * createSession({ …, refresh: { ahead: 0.5, minAheadMs: 30_000, jitter: 0.5 } }) // refresh at half the lifetime
 * ```
 */
export interface RefreshOptions {
  /** Share of the lifetime left when a refresh starts. Default 0.25 (refresh at 75 % of the lifetime). */
  ahead?: number
  /** Refresh at least this many milliseconds before expiry (capped at half the lifetime). Default 5,000. */
  minAheadMs?: number
  /**
   * How much earlier than the refresh point a token earned on demand (not by a scheduled refresh)
   * may refresh, as a share of that point, drawn at random: a fleet that started together, or
   * was revoked together, spreads out instead of refreshing together (the fleet benchmark's
   * peak-to-mean of refreshes is about 1.75 with the default, 2.2 at 0.67). Default 0.9.
   */
  jitter?: number
  /** The same for tokens earned by a scheduled refresh (already spread). Default 0.02. */
  steadyJitter?: number
  /** Stop serving a token this many milliseconds before its expiry (capped at a quarter of the lifetime). Default 2,000. */
  expirySkewMs?: number
  /** Refresh held tokens in the background with timers (only tokens used since they were earned). Default true. */
  background?: boolean
}

/**
 * Back-off after failed token requests (exponential, full jitter, `Retry-After` honoured).
 *
 * @example
 * ```ts
 * createSession({ …, backoff: { initialMs: 500, maxMs: 30_000, maxRetryAfterMs: 300_000 } })
 * ```
 */
export interface BackoffOptions {
  /** First back-off ceiling, in milliseconds. Default 1,000. */
  initialMs?: number
  /** Largest back-off ceiling, in milliseconds. Default 60,000. */
  maxMs?: number
  /** Longest `Retry-After` honoured, in milliseconds. Default 3,600,000 (an hour). */
  maxRetryAfterMs?: number
}

/**
 * What the manager reports (tokens appear only as labels).
 *
 * @example
 * ```ts
 * createTokenManager({ …, onEvent: (e: TokenManagerEvent) => { if (e.type === 'backoff') console.warn(e.cacheKey, new Date(e.until)) } })
 * ```
 */
export type TokenManagerEvent =
  | { type: 'refresh.scheduled'; cacheKey: string; at: number }
  | { type: 'refresh.started'; cacheKey: string; reason: 'schedule' | 'demand' | 'forced' }
  | { type: 'backoff'; cacheKey: string; failures: number; until: number; error: unknown }
  | { type: 'wait'; cacheKey: string; ms: number }
  | { type: 'evicted'; cacheKey: string }

/**
 * Options of {@link createTokenManager}. `P` is what a token request needs (resource, scope, …): it
 * is handed to `earn` and kept with the cache entry, so a scheduled refresh earns with exactly the
 * parameters the token was first earned with.
 *
 * @example
 * ```ts
 * const options: TokenManagerOptions<{ resource: string }> = { clock: systemClock, earn: async (cacheKey, params, { generation }) => createBoundToken({ … }), maxEntries: 100 }
 * ```
 */
export interface TokenManagerOptions<P> {
  /** The clock lifetimes are measured with. */
  clock: Clock
  /** Refresh-ahead schedule. */
  refresh?: RefreshOptions
  /** Back-off after failures. */
  backoff?: BackoffOptions
  /** Whether a held token may still be served (e.g. its binding is still the session's). Default: always. */
  accept?(token: BoundToken): boolean
  /** Random source in [0, 1) for jitter. Default `Math.random`. */
  random?: () => number
  /**
   * Cache entries held at most; past it the least recently used entry goes, with its timer and its
   * back-off state. Default 256.
   */
  maxEntries?: number
  /**
   * Earns a new token for a cache key with `params` (`background`: a refresh ahead of expiry,
   * nobody waits on it; `generation`: the number the token must carry; `previous`: the token held
   * for the key, which the new one replaces).
   */
  earn(cacheKey: string, params: P, context: { background: boolean; generation: number; previous: BoundToken | undefined }): Promise<BoundToken>
  /** Told about background refresh failures (the held token keeps serving). */
  onBackgroundError?(cacheKey: string, error: unknown): void
  /**
   * Whether a failed `earn` counts towards the back-off. Default: every failure. (A refusal that
   * is not the AS's, such as an unhealthy posture, should not hold callers off once it is over.)
   */
  countsAsFailure?(error: unknown): boolean
  /** Told about schedule decisions. */
  onEvent?(event: TokenManagerEvent): void
  /** Timer functions (simulations and tests). Default the global `setTimeout`/`clearTimeout`. */
  timers?: Timers
}

/**
 * The timer functions the manager uses.
 *
 * @example
 * ```ts
 * const timers: Timers = { setTimeout: (cb, ms) => setTimeout(cb, ms), clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout) }
 * ```
 */
export interface Timers {
  /** Schedules `callback` in `ms` milliseconds; returns a handle (unref'd when it has `unref`). */
  setTimeout(callback: () => void, ms: number): unknown
  /** Cancels a handle from `setTimeout`. */
  clearTimeout(handle: unknown): void
}

const globalTimers: Timers = {
  setTimeout: (callback, ms) => setTimeout(callback, ms),
  clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
}

/**
 * Caches tokens per key, refreshes ahead of expiry, and runs one token request per key. Keys are
 * opaque strings; what a token request needs travels with each call and stays with its entry.
 *
 * @example
 * ```ts
 * const manager: TokenManager<{ resource: string }> = createTokenManager({ clock: systemClock, earn })
 * const token = await manager.get('orders', { resource: 'https://orders.example.com' })
 * manager.close()
 * ```
 */
export interface TokenManager<P> {
  /** A valid token for `cacheKey`: cached at once, or the single in-flight request's result (earned with `params`). */
  get(cacheKey: string, params: P, signal?: AbortSignal): Promise<BoundToken>
  /**
   * Earns a new token for `cacheKey` now, whatever is held, and holds it. `once` (say, a claims
   * challenge) is what this one request is earned with; the entry keeps `params` for its refreshes.
   * Joins a request in flight for the same key and the same `once`.
   */
  forceRefresh(cacheKey: string, params: P, options?: { once?: P; signal?: AbortSignal | undefined }): Promise<BoundToken>
  /**
   * The held token of `cacheKey` when it may be served now, else undefined (never waits, never
   * throws): what {@link get} resolves with at once. It marks the token used and, past its refresh
   * point, starts the background refresh, exactly as `get` does.
   */
  getNow(cacheKey: string): BoundToken | undefined
  /**
   * Holds `token` for `cacheKey` (a token obtained elsewhere), replacing what was held. It is not
   * refreshed ahead of expiry: once it may not be served, the next `get` earns a new one.
   */
  put(cacheKey: string, token: BoundToken): void
  /** A generation number no token of this manager carries yet (for a token made by {@link put}'s caller). */
  nextGeneration(): number
  /** Drops `token` if it is still the held generation (e.g. after `invalid_token`). */
  invalidate(token: BoundToken): boolean
  /** Drops every held token. */
  clear(): void
  /** Drops the held tokens `predicate` picks (e.g. those bound to a key that was rotated away). */
  dropWhere(predicate: (token: BoundToken) => boolean): number
  /** The tokens currently held. */
  held(): BoundToken[]
  /** Cache entries held (tokens, and keys backing off). */
  readonly size: number
  /** When the held token of `cacheKey` is due for refresh (epoch ms), for diagnostics and tests. */
  refreshAt(cacheKey: string): number | undefined
  /** Stops every timer and drops every token; later calls fail with `ERR_CLOSED`. */
  close(): void
  /** Whether {@link close} was called. */
  readonly closed: boolean
}

interface Held<P> {
  token: BoundToken
  /** What a refresh earns with; undefined for a token handed over (never refreshed ahead). */
  params: P | undefined
  refreshAt: number
  usableUntil: number
  used: boolean
  timer?: unknown
}

interface Failure {
  count: number
  nextAttemptAt: number
  error: unknown
}

/** One cache key's state: evicted as a whole (token, timer, back-off). */
interface Slot<P> {
  held?: Held<P> | undefined
  failure?: Failure | undefined
}

/** What a closed session's token calls fail with. */
export const sessionClosed = (): BoundError => new BoundError('ERR_CLOSED', 'The session is closed')

/**
 * Creates a {@link TokenManager}.
 *
 * Lifetimes come from the receipt time plus `expires_in` (never from the token). A token is
 * refreshed in the background once `ahead` of its lifetime is left (earlier, at random, when it was
 * earned on demand), while callers keep getting it; one request per key however many wait; failed
 * requests back off exponentially with full jitter and `Retry-After`; without a valid token,
 * callers during a back-off fail fast with `ERR_TOKEN_UNAVAILABLE`. Timers never keep the process
 * alive. At most `maxEntries` keys are held; the least recently used goes first, timer and all.
 *
 * @example
 * ```ts
 * const manager = createTokenManager({ clock: systemClock, earn: (key, params, { generation }) => requestToken(params, generation) })
 * const token = await manager.get('orders', { resource: 'https://orders.example.com' })
 * ```
 */
export function createTokenManager<P>(options: TokenManagerOptions<P>): TokenManager<P> {
  const { clock } = options
  const random = options.random ?? Math.random
  const ahead = options.refresh?.ahead ?? 0.25
  const minAheadMs = options.refresh?.minAheadMs ?? 5_000
  const jitter = options.refresh?.jitter ?? 0.9
  const steadyJitter = options.refresh?.steadyJitter ?? 0.02
  const skewMs = options.refresh?.expirySkewMs ?? 2_000
  const background = options.refresh?.background ?? true
  const maxEntries = options.maxEntries ?? 256
  if (!(ahead > 0 && ahead < 1)) throw new BoundError('ERR_INVALID_CONFIG', 'refresh.ahead must be between 0 and 1 (exclusive)')
  if (!(jitter >= 0 && jitter <= 1) || !(steadyJitter >= 0 && steadyJitter <= 1)) throw new BoundError('ERR_INVALID_CONFIG', 'refresh.jitter must be in [0, 1]')
  if (!Number.isInteger(maxEntries) || maxEntries < 1) throw new BoundError('ERR_INVALID_CONFIG', 'maxEntries must be a positive integer')
  const initialMs = options.backoff?.initialMs ?? 1_000
  const maxMs = options.backoff?.maxMs ?? 60_000
  const maxRetryAfterMs = options.backoff?.maxRetryAfterMs ?? 3_600_000
  const accept = options.accept ?? (() => true)
  const timers = options.timers ?? globalTimers
  // insertion order is recency order: a touched slot moves to the end, the first one is evicted
  const slots = new Map<string, Slot<P>>()
  const flights = createSingleFlight<string, BoundToken>()
  let generation = 0 // one counter for every key: a generation is never reused, even after eviction
  let closed = false

  const slot = (cacheKey: string, create: boolean): Slot<P> | undefined => {
    let s = slots.get(cacheKey)
    if (s) {
      slots.delete(cacheKey)
      slots.set(cacheKey, s)
      return s
    }
    if (!create) return undefined
    s = {}
    slots.set(cacheKey, s)
    while (slots.size > maxEntries) {
      const [oldest, old] = slots.entries().next().value as [string, Slot<P>]
      if (old.held?.timer !== undefined) timers.clearTimeout(old.held.timer)
      slots.delete(oldest)
      options.onEvent?.({ type: 'evicted', cacheKey: oldest })
    }
    return s
  }

  const setHeld = (cacheKey: string, held: Held<P> | undefined) => {
    const s = slots.get(cacheKey) ?? (held ? slot(cacheKey, true)! : undefined)
    if (!s) return
    if (s.held?.timer !== undefined) timers.clearTimeout(s.held.timer)
    s.held = held
    if (!held && !s.failure) slots.delete(cacheKey)
  }

  const usableUntilOf = (token: BoundToken) => token.expiresAt - Math.min(skewMs, Math.max(0, token.expiresAt - token.receivedAt) / 4)

  const schedule = (cacheKey: string, token: BoundToken, params: P, onDemand: boolean): Held<P> => {
    const lifetime = Math.max(0, token.expiresAt - token.receivedAt)
    const usableUntil = usableUntilOf(token)
    const lead = Math.max(lifetime * ahead, Math.min(minAheadMs, lifetime / 2))
    const point = Math.min(token.expiresAt - lead, usableUntil) - token.receivedAt
    const spread = onDemand ? jitter : steadyJitter
    const refreshAt = token.receivedAt + point * (1 - spread * random())
    const held: Held<P> = { token, params, refreshAt, usableUntil, used: false }
    armTimer(cacheKey, held, refreshAt)
    return held
  }

  const armTimer = (cacheKey: string, held: Held<P>, at: number) => {
    if (!background || closed || held.params === undefined) return
    if (held.timer !== undefined) timers.clearTimeout(held.timer)
    const handle = timers.setTimeout(() => onTimer(cacheKey, held), Math.max(0, at - clock.now()))
    ;(handle as { unref?: () => void } | undefined)?.unref?.()
    held.timer = handle
    options.onEvent?.({ type: 'refresh.scheduled', cacheKey, at })
  }

  const onTimer = (cacheKey: string, held: Held<P>) => {
    held.timer = undefined
    const s = slots.get(cacheKey)
    if (closed || s?.held !== held || !held.used) return // idle tokens are not kept warm
    const now = clock.now()
    if (now >= held.usableUntil) return
    if (s.failure && now < s.failure.nextAttemptAt) {
      armTimer(cacheKey, held, s.failure.nextAttemptAt)
      return
    }
    refreshInBackground(cacheKey, held.params!, 'schedule')
  }

  const refreshInBackground = (cacheKey: string, params: P, reason: 'schedule' | 'demand') => {
    if (flights.has(cacheKey)) return
    options.onEvent?.({ type: 'refresh.started', cacheKey, reason })
    earn(cacheKey, params, params, false).catch((err: unknown) => {
      options.onBackgroundError?.(cacheKey, err)
      // try again after the back-off while the held token is still good
      const s = slots.get(cacheKey)
      if (s?.held && s.failure && !closed) armTimer(cacheKey, s.held, s.failure.nextAttemptAt)
    })
  }

  /** One token request for `cacheKey` with `once` (usually `params`); the held entry keeps `params`. */
  const earn = (cacheKey: string, params: P, once: P, onDemand: boolean, flight = cacheKey) =>
    flights.run(flight, async () => {
      const previous = slots.get(cacheKey)?.held
      let token: BoundToken
      try {
        token = await options.earn(cacheKey, once, { background: !onDemand, generation: ++generation, previous: previous?.token })
      } catch (err) {
        if (options.countsAsFailure?.(err) ?? true) recordFailure(cacheKey, err)
        throw err
      }
      const s = slots.get(cacheKey)
      if (previous && s?.held === previous && token.expiresAt <= previous.token.expiresAt && clock.now() < previous.usableUntil) {
        // The AS handed back a token that lives no longer than the held one: keep it, but back off
        // instead of refreshing in a loop.
        recordFailure(cacheKey, new BoundError('ERR_TOKEN_UNAVAILABLE', 'The authorization server issued a token that expires no later than the one held'))
      } else if (s) {
        s.failure = undefined
      }
      if (!closed && accept(token)) setHeld(cacheKey, schedule(cacheKey, token, params, onDemand)) // unused until a caller takes it
      return token
    })

  const recordFailure = (cacheKey: string, error: unknown) => {
    const s = slot(cacheKey, true)!
    const count = (s.failure?.count ?? 0) + 1
    const ceiling = Math.min(maxMs, initialMs * 2 ** Math.min(count - 1, 30))
    const retryAfterMs = error instanceof TokenEndpointError && error.retryAfter !== undefined ? Math.min(error.retryAfter * 1000, maxRetryAfterMs) : 0
    const until = clock.now() + Math.max(retryAfterMs, random() * ceiling)
    s.failure = { count, nextAttemptAt: until, error }
    options.onEvent?.({ type: 'backoff', cacheKey, failures: count, until, error })
  }

  const assertOpen = () => {
    if (closed) throw sessionClosed()
  }

  /** The held token when it may be served at `now` (dropping one that may not). */
  const servable = (cacheKey: string, s: Slot<P> | undefined, now: number): Held<P> | undefined => {
    const held = s?.held
    if (!held) return undefined
    if (now < held.usableUntil && accept(held.token)) return held
    setHeld(cacheKey, undefined)
    return undefined
  }

  /** The held token served now (marked used; past its refresh point, refreshed in the background), else undefined. */
  const serveNow = (cacheKey: string, s: Slot<P> | undefined, now: number): BoundToken | undefined => {
    const held = servable(cacheKey, s, now)
    if (!held) return undefined
    held.used = true
    // Past the refresh point (a timer that has not fired, or background refresh off): refresh now,
    // in the background; callers keep the current token meanwhile.
    if (now >= held.refreshAt && held.params !== undefined && !(s!.failure !== undefined && now < s!.failure.nextAttemptAt)) refreshInBackground(cacheKey, held.params, 'demand')
    return held.token
  }

  return {
    async get(cacheKey, params, signal) {
      assertOpen()
      signal?.throwIfAborted()
      const s = slot(cacheKey, false)
      const now = clock.now()
      const served = serveNow(cacheKey, s, now)
      if (served) return served
      const failure = s?.failure
      const backingOff = failure !== undefined && now < failure.nextAttemptAt
      if (backingOff && !flights.has(cacheKey)) {
        // No valid token and the AS failed recently: fail fast instead of piling onto it.
        if (!isTransient(failure.error)) throw failure.error
        throw unavailable(failure.error, failure.nextAttemptAt - now)
      }
      const started = clock.now()
      let token: BoundToken
      try {
        token = await waitFor(earn(cacheKey, params, params, true), signal) // the shared request is not tied to one caller's signal
      } catch (err) {
        if (signal?.aborted || !isTransient(err)) throw err
        throw unavailable(err, (slots.get(cacheKey)?.failure?.nextAttemptAt ?? now) - clock.now())
      }
      options.onEvent?.({ type: 'wait', cacheKey, ms: clock.now() - started })
      const now2 = slots.get(cacheKey)?.held
      if (now2?.token === token) now2.used = true
      return token
    },
    async forceRefresh(cacheKey, params, { once, signal } = {}) {
      assertOpen()
      options.onEvent?.({ type: 'refresh.started', cacheKey, reason: 'forced' })
      const flight = once === undefined ? cacheKey : `${cacheKey}\u0000${JSON.stringify(once)}`
      return waitFor(earn(cacheKey, params, once ?? params, true, flight), signal)
    },
    getNow(cacheKey) {
      return closed ? undefined : serveNow(cacheKey, slot(cacheKey, false), clock.now())
    },
    put(cacheKey, token) {
      assertOpen()
      slot(cacheKey, true)!.failure = undefined
      // no scheduled refresh: the manager did not earn it and may not know how to earn it again
      setHeld(cacheKey, { token, params: undefined, refreshAt: Number.POSITIVE_INFINITY, usableUntil: usableUntilOf(token), used: true })
    },
    nextGeneration: () => ++generation,
    invalidate(token) {
      const s = slots.get(token.cacheKey)
      if (s?.held && s.held.token.generation === token.generation) {
        setHeld(token.cacheKey, undefined)
        return true
      }
      return false
    },
    clear() {
      for (const key of [...slots.keys()]) setHeld(key, undefined)
    },
    dropWhere(predicate) {
      let dropped = 0
      for (const [key, s] of [...slots]) {
        if (s.held && predicate(s.held.token)) {
          setHeld(key, undefined)
          dropped++
        }
      }
      return dropped
    },
    held: () => [...slots.values()].flatMap((s) => (s.held ? [s.held.token] : [])),
    get size() {
      return slots.size
    },
    refreshAt: (cacheKey) => slots.get(cacheKey)?.held?.refreshAt,
    get closed() {
      return closed
    },
    close() {
      closed = true
      for (const s of slots.values()) if (s.held?.timer !== undefined) timers.clearTimeout(s.held.timer)
      slots.clear()
    },
  }
}

/**
 * Whether a token-request failure is the AS's momentary trouble (network, timeout, 5xx, 429, a
 * malformed answer), which back-off and a later attempt can cure, rather than a configuration
 * problem to surface as it is (bad credentials, a refused grant, a type mismatch).
 *
 * @example
 * ```ts
 * try { await session.token() } catch (err) { if (isTransient(err)) scheduleRetry(); else alert(err) }
 * ```
 */
export function isTransient(err: unknown): boolean {
  if (err instanceof TokenEndpointError) return err.status >= 500 || err.status === 429 || err.error === 'temporarily_unavailable' || err.error === 'server_error'
  // (ERR_DISCOVERY is a document that failed validation — an issuer mismatch is no outage)
  if (err instanceof BoundError) return err.code === 'ERR_NETWORK' || err.code === 'ERR_TOKEN_RESPONSE_INVALID' || err.code === 'ERR_TOKEN_UNAVAILABLE'
  return !(err instanceof Error && err.name === 'AbortError')
}

function unavailable(cause: unknown, waitMs: number): BoundError {
  if (cause instanceof BoundError && cause.code === 'ERR_TOKEN_UNAVAILABLE') return cause
  const reason = cause instanceof Error ? cause.message : String(cause)
  return new BoundError('ERR_TOKEN_UNAVAILABLE', `No valid token: the authorization server could not issue one (${reason.slice(0, 600)}); next attempt in ${Math.max(0, Math.ceil(waitMs / 1000))} s`, { cause })
}

/**
 * Waits for `promise` unless `signal` aborts first (the shared work goes on for other callers).
 *
 * @example
 * ```ts
 * const metadata = await waitFor(sharedDiscovery, AbortSignal.timeout(2_000))
 * ```
 */
export function waitFor<T>(promise: Promise<T>, signal?: AbortSignal): Promise<T> {
  if (!signal) return promise
  if (signal.aborted) return Promise.reject(signal.reason)
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason)
    signal.addEventListener('abort', onAbort, { once: true })
    promise.then(
      (v) => {
        signal.removeEventListener('abort', onAbort)
        resolve(v)
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort)
        reject(e)
      },
    )
  })
}
