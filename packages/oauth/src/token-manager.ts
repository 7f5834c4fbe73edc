import { BoundError, TokenEndpointError, createSingleFlight, type Clock } from '@bound/core'
import type { BoundToken } from './token.js'

/**
 * When to refresh ahead of expiry.
 *
 * @example
 * ```ts
 * createSession({ …, refresh: { ahead: 0.5, minAheadSeconds: 30, jitter: 0.5 } }) // refresh at half the lifetime
 * ```
 */
export interface RefreshOptions {
  /** Share of the lifetime left when a refresh starts. Default 0.25 (refresh at 75 % of the lifetime). */
  ahead?: number
  /** Refresh at least this many seconds before expiry (capped at half the lifetime). Default 5. */
  minAheadSeconds?: number
  /**
   * How much earlier than the refresh point a token earned on demand (not by a scheduled refresh)
   * may refresh, as a share of that point, drawn at random: a fleet that started together, or
   * was revoked together, spreads out instead of refreshing together (the fleet benchmark's
   * peak-to-mean of refreshes is about 1.75 with the default, 2.2 at 0.67). Default 0.9.
   */
  jitter?: number
  /** The same for tokens earned by a scheduled refresh (already spread). Default 0.02. */
  steadyJitter?: number
  /** Stop serving a token this many seconds before its expiry (capped at a quarter of the lifetime). Default 2. */
  expirySkewSeconds?: number
  /** Refresh held tokens in the background with timers (only tokens used since they were earned). Default true. */
  background?: boolean
}

/**
 * Back-off after failed token requests (exponential, full jitter, `Retry-After` honoured).
 *
 * @example
 * ```ts
 * createSession({ …, backoff: { initialSeconds: 0.5, maxSeconds: 30, maxRetryAfterSeconds: 300 } })
 * ```
 */
export interface BackoffOptions {
  /** First back-off ceiling, in seconds. Default 1. */
  initialSeconds?: number
  /** Largest back-off ceiling, in seconds. Default 60. */
  maxSeconds?: number
  /** Longest `Retry-After` honoured, in seconds. Default 3,600. */
  maxRetryAfterSeconds?: number
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

/**
 * Options of {@link createTokenManager}.
 *
 * @example
 * ```ts
 * const options: TokenManagerOptions = { clock: systemClock, earn: async (cacheKey, generation) => createBoundToken({ … }), refresh: { ahead: 0.25 } }
 * ```
 */
export interface TokenManagerOptions {
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
  /** Earns a new token for a cache key (`background`: a refresh ahead of expiry, nobody waits on it). */
  earn(cacheKey: string, generation: number, context: { background: boolean }): Promise<BoundToken>
  /** Told about background refresh failures (the held token keeps serving). */
  onBackgroundError?(cacheKey: string, error: unknown): void
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
 * Caches tokens per key, refreshes ahead of expiry, and runs one token request per key.
 *
 * @example
 * ```ts
 * const manager: TokenManager = createTokenManager({ clock: systemClock, earn })
 * const token = await manager.get('orders')
 * manager.close()
 * ```
 */
export interface TokenManager {
  /** A valid token for `cacheKey`: cached at once, or the single in-flight request's result. */
  get(cacheKey: string, signal?: AbortSignal): Promise<BoundToken>
  /** Earns a new token for `cacheKey` now (joining one in flight), whatever is held. */
  forceRefresh(cacheKey: string, signal?: AbortSignal): Promise<BoundToken>
  /** Holds `token` for `cacheKey` (a token obtained elsewhere), replacing what was held. */
  put(cacheKey: string, token: BoundToken): void
  /** Drops `token` if it is still the held generation (e.g. after `invalid_token`). */
  invalidate(token: BoundToken): boolean
  /** Drops every held token. */
  clear(): void
  /** Drops the held tokens `predicate` picks (e.g. those bound to a key that was rotated away). */
  dropWhere(predicate: (token: BoundToken) => boolean): number
  /** The tokens currently held. */
  held(): BoundToken[]
  /** When the held token of `cacheKey` is due for refresh (epoch ms), for diagnostics and tests. */
  refreshAt(cacheKey: string): number | undefined
  /** Stops every timer and drops every token; later calls fail with `ERR_CLOSED`. */
  close(): void
}

interface Entry {
  token: BoundToken
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

/**
 * Creates a {@link TokenManager}.
 *
 * Lifetimes come from the receipt time plus `expires_in` (never from the token). A token is
 * refreshed in the background once `ahead` of its lifetime is left (earlier, at random, when it was
 * earned on demand), while callers keep getting it; one request per key however many wait; failed
 * requests back off exponentially with full jitter and `Retry-After`; without a valid token,
 * callers during a back-off fail fast with `ERR_TOKEN_UNAVAILABLE`. Timers never keep the process
 * alive.
 *
 * @example
 * ```ts
 * const manager = createTokenManager({ clock: systemClock, earn: (key, generation) => requestToken(key, generation) })
 * const token = await manager.get('orders')
 * ```
 */
export function createTokenManager(options: TokenManagerOptions): TokenManager {
  const { clock } = options
  const random = options.random ?? Math.random
  const ahead = options.refresh?.ahead ?? 0.25
  const minAheadMs = (options.refresh?.minAheadSeconds ?? 5) * 1000
  const jitter = options.refresh?.jitter ?? 0.9
  const steadyJitter = options.refresh?.steadyJitter ?? 0.02
  const skewMs = (options.refresh?.expirySkewSeconds ?? 2) * 1000
  const background = options.refresh?.background ?? true
  if (!(ahead > 0 && ahead < 1)) throw new BoundError('ERR_INVALID_CONFIG', 'refresh.ahead must be between 0 and 1 (exclusive)')
  if (!(jitter >= 0 && jitter <= 1) || !(steadyJitter >= 0 && steadyJitter <= 1)) throw new BoundError('ERR_INVALID_CONFIG', 'refresh.jitter must be in [0, 1]')
  const initialMs = (options.backoff?.initialSeconds ?? 1) * 1000
  const maxMs = (options.backoff?.maxSeconds ?? 60) * 1000
  const maxRetryAfterMs = (options.backoff?.maxRetryAfterSeconds ?? 3600) * 1000
  const accept = options.accept ?? (() => true)
  const timers = options.timers ?? globalTimers
  const entries = new Map<string, Entry>()
  const failures = new Map<string, Failure>()
  const generations = new Map<string, number>()
  const flights = createSingleFlight<string, BoundToken>()
  let closed = false

  const setEntry = (cacheKey: string, entry: Entry | undefined) => {
    const previous = entries.get(cacheKey)
    if (previous?.timer !== undefined) timers.clearTimeout(previous.timer)
    if (entry) entries.set(cacheKey, entry)
    else entries.delete(cacheKey)
  }

  const schedule = (cacheKey: string, token: BoundToken, onDemand: boolean): Entry => {
    const lifetime = Math.max(0, token.expiresAt - token.receivedAt)
    const usableUntil = token.expiresAt - Math.min(skewMs, lifetime / 4)
    const lead = Math.max(lifetime * ahead, Math.min(minAheadMs, lifetime / 2))
    const point = Math.min(token.expiresAt - lead, usableUntil) - token.receivedAt
    const spread = onDemand ? jitter : steadyJitter
    const refreshAt = token.receivedAt + point * (1 - spread * random())
    const entry: Entry = { token, refreshAt, usableUntil, used: false }
    armTimer(cacheKey, entry, refreshAt)
    return entry
  }

  const armTimer = (cacheKey: string, entry: Entry, at: number) => {
    if (!background || closed) return
    if (entry.timer !== undefined) timers.clearTimeout(entry.timer)
    const handle = timers.setTimeout(() => onTimer(cacheKey, entry), Math.max(0, at - clock.now()))
    ;(handle as { unref?: () => void } | undefined)?.unref?.()
    entry.timer = handle
    options.onEvent?.({ type: 'refresh.scheduled', cacheKey, at })
  }

  const onTimer = (cacheKey: string, entry: Entry) => {
    entry.timer = undefined
    if (closed || entries.get(cacheKey) !== entry || !entry.used) return // idle tokens are not kept warm
    const now = clock.now()
    if (now >= entry.usableUntil) return
    const failure = failures.get(cacheKey)
    if (failure && now < failure.nextAttemptAt) {
      armTimer(cacheKey, entry, failure.nextAttemptAt)
      return
    }
    refreshInBackground(cacheKey, 'schedule')
  }

  const refreshInBackground = (cacheKey: string, reason: 'schedule' | 'demand') => {
    if (flights.has(cacheKey)) return
    options.onEvent?.({ type: 'refresh.started', cacheKey, reason })
    earn(cacheKey, false).catch((err: unknown) => {
      options.onBackgroundError?.(cacheKey, err)
      // try again after the back-off while the held token is still good
      const entry = entries.get(cacheKey)
      const failure = failures.get(cacheKey)
      if (entry && failure && !closed) armTimer(cacheKey, entry, failure.nextAttemptAt)
    })
  }

  const earn = (cacheKey: string, onDemand: boolean) =>
    flights.run(cacheKey, async () => {
      const generation = (generations.get(cacheKey) ?? 0) + 1
      generations.set(cacheKey, generation)
      const previous = entries.get(cacheKey)
      let token: BoundToken
      try {
        token = await options.earn(cacheKey, generation, { background: !onDemand })
      } catch (err) {
        recordFailure(cacheKey, err)
        throw err
      }
      if (previous && entries.get(cacheKey) === previous && token.expiresAt <= previous.token.expiresAt && clock.now() < previous.usableUntil) {
        // The AS handed back a token that lives no longer than the held one: keep it, but back off
        // instead of refreshing in a loop.
        recordFailure(cacheKey, new BoundError('ERR_TOKEN_UNAVAILABLE', 'The authorization server issued a token that expires no later than the one held'))
      } else {
        failures.delete(cacheKey)
      }
      if (!closed && accept(token)) {
        setEntry(cacheKey, schedule(cacheKey, token, onDemand)) // unused until a caller takes it
      }
      return token
    })

  const recordFailure = (cacheKey: string, error: unknown) => {
    const count = (failures.get(cacheKey)?.count ?? 0) + 1
    const ceiling = Math.min(maxMs, initialMs * 2 ** Math.min(count - 1, 30))
    const retryAfterMs = error instanceof TokenEndpointError && error.retryAfter !== undefined ? Math.min(error.retryAfter * 1000, maxRetryAfterMs) : 0
    const until = clock.now() + Math.max(retryAfterMs, random() * ceiling)
    failures.set(cacheKey, { count, nextAttemptAt: until, error })
    options.onEvent?.({ type: 'backoff', cacheKey, failures: count, until, error })
  }

  const assertOpen = () => {
    if (closed) throw new BoundError('ERR_CLOSED', 'The session is closed')
  }

  return {
    async get(cacheKey, signal) {
      assertOpen()
      signal?.throwIfAborted()
      const entry = entries.get(cacheKey)
      const now = clock.now()
      const failure = failures.get(cacheKey)
      const backingOff = failure !== undefined && now < failure.nextAttemptAt
      if (entry && now < entry.usableUntil && accept(entry.token)) {
        entry.used = true
        // Past the refresh point (a timer that has not fired, or background refresh off): refresh now,
        // in the background; callers keep the current token meanwhile.
        if (now >= entry.refreshAt && !backingOff) refreshInBackground(cacheKey, 'demand')
        return entry.token
      }
      if (entry) setEntry(cacheKey, undefined)
      if (backingOff && !flights.has(cacheKey)) {
        // No valid token and the AS failed recently: fail fast instead of piling onto it.
        if (!isTransient(failure.error)) throw failure.error
        throw unavailable(failure.error, failure.nextAttemptAt - now)
      }
      const started = clock.now()
      let token: BoundToken
      try {
        token = await waitFor(earn(cacheKey, true), signal) // the shared request is not tied to one caller's signal
      } catch (err) {
        if (signal?.aborted || !isTransient(err)) throw err
        throw unavailable(err, (failures.get(cacheKey)?.nextAttemptAt ?? now) - clock.now())
      }
      options.onEvent?.({ type: 'wait', cacheKey, ms: clock.now() - started })
      const held = entries.get(cacheKey)
      if (held?.token === token) held.used = true
      return token
    },
    async forceRefresh(cacheKey, signal) {
      assertOpen()
      options.onEvent?.({ type: 'refresh.started', cacheKey, reason: 'forced' })
      return waitFor(earn(cacheKey, true), signal)
    },
    put(cacheKey, token) {
      assertOpen()
      failures.delete(cacheKey)
      // no scheduled refresh: the manager cannot earn this kind of token again by itself
      setEntry(cacheKey, { token, refreshAt: Number.POSITIVE_INFINITY, usableUntil: token.expiresAt - Math.min(skewMs, (token.expiresAt - token.receivedAt) / 4), used: true })
    },
    invalidate(token) {
      const entry = entries.get(token.cacheKey)
      if (entry && entry.token.generation === token.generation) {
        setEntry(token.cacheKey, undefined)
        return true
      }
      return false
    },
    clear() {
      for (const key of [...entries.keys()]) setEntry(key, undefined)
    },
    dropWhere(predicate) {
      let dropped = 0
      for (const [key, entry] of [...entries]) {
        if (predicate(entry.token)) {
          setEntry(key, undefined)
          dropped++
        }
      }
      return dropped
    },
    held: () => [...entries.values()].map((e) => e.token),
    refreshAt: (cacheKey) => entries.get(cacheKey)?.refreshAt,
    close() {
      closed = true
      for (const key of [...entries.keys()]) setEntry(key, undefined)
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
  return new BoundError('ERR_TOKEN_UNAVAILABLE', `No valid token: the authorization server could not issue one (${reason.slice(0, 300)}); next attempt in ${Math.max(0, Math.ceil(waitMs / 1000))} s`, { cause })
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
