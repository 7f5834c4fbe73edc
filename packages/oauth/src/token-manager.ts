import { BoundError, TokenEndpointError, createSingleFlight, type Clock } from '@bound/core'
import type { BoundToken } from './token.js'

/** When to refresh ahead of expiry. */
export interface RefreshOptions {
  /** Share of the lifetime left when a refresh starts. Default 0.25. */
  ahead?: number
  /** Refresh at least this many seconds before expiry. Default 5. */
  minAheadSeconds?: number
  /** Random spread of the refresh point, as a share of the lifetime, earlier only. Default 0.1. */
  jitter?: number
  /** Stop serving a token this many seconds before its expiry (it could expire in flight). Default 2. */
  expirySkewSeconds?: number
}

/** Back-off after failed token requests (exponential, full jitter, `Retry-After` honoured). */
export interface BackoffOptions {
  /** First back-off ceiling, in seconds. Default 1. */
  initialSeconds?: number
  /** Largest back-off ceiling, in seconds. Default 60. */
  maxSeconds?: number
  /** Longest `Retry-After` honoured, in seconds. Default 3,600. */
  maxRetryAfterSeconds?: number
}

/** Options of {@link createTokenManager}. */
export interface TokenManagerOptions {
  clock: Clock
  refresh?: RefreshOptions
  backoff?: BackoffOptions
  /** Whether a held token may still be served (e.g. its binding is still the session's). Default: always. */
  accept?(token: BoundToken): boolean
  /** Random source in [0, 1) for jitter. Default `Math.random`. */
  random?: () => number
  /** Earns a new token for a cache key. */
  earn(cacheKey: string, generation: number, signal?: AbortSignal): Promise<BoundToken>
  /** Told about background refresh failures (the held token keeps serving). */
  onBackgroundError?(cacheKey: string, error: unknown): void
}

/** Caches tokens per key, refreshes ahead of expiry, and runs one token request per key. */
export interface TokenManager {
  /** A valid token for `cacheKey`: cached at once, or the single in-flight request's result. */
  get(cacheKey: string, signal?: AbortSignal): Promise<BoundToken>
  /** Drops `token` if it is still the held generation (e.g. after `invalid_token`). */
  invalidate(token: BoundToken): boolean
  /** Drops every held token. */
  clear(): void
  /** Drops the held tokens `predicate` picks (e.g. those bound to a key that was rotated away). */
  dropWhere(predicate: (token: BoundToken) => boolean): number
  /** The tokens currently held. */
  held(): BoundToken[]
  close(): void
}

interface Entry {
  token: BoundToken
  refreshAt: number
  usableUntil: number
}

interface Failure {
  count: number
  nextAttemptAt: number
  error: unknown
}

/**
 * Creates a {@link TokenManager}.
 *
 * @example
 * ```ts
 * const manager = createTokenManager({ clock: systemClock, earn: (key, gen) => requestToken(key, gen) })
 * ```
 */
export function createTokenManager(options: TokenManagerOptions): TokenManager {
  const { clock } = options
  const random = options.random ?? Math.random
  const ahead = options.refresh?.ahead ?? 0.25
  const minAheadMs = (options.refresh?.minAheadSeconds ?? 5) * 1000
  const jitter = options.refresh?.jitter ?? 0.1
  const skewMs = (options.refresh?.expirySkewSeconds ?? 2) * 1000
  if (!(ahead > 0 && ahead < 1)) throw new BoundError('ERR_INVALID_CONFIG', 'refresh.ahead must be between 0 and 1 (exclusive)')
  const initialMs = (options.backoff?.initialSeconds ?? 1) * 1000
  const maxMs = (options.backoff?.maxSeconds ?? 60) * 1000
  const maxRetryAfterMs = (options.backoff?.maxRetryAfterSeconds ?? 3600) * 1000
  const accept = options.accept ?? (() => true)
  const entries = new Map<string, Entry>()
  const failures = new Map<string, Failure>()
  const generations = new Map<string, number>()
  const flights = createSingleFlight<string, BoundToken>()
  let closed = false

  const schedule = (token: BoundToken): Entry => {
    const lifetime = Math.max(0, token.expiresAt - token.receivedAt)
    const usableUntil = token.expiresAt - Math.min(skewMs, lifetime / 4)
    const lead = Math.max(lifetime * ahead, Math.min(minAheadMs, lifetime / 2))
    const refreshAt = token.expiresAt - lead - random() * jitter * lifetime
    return { token, refreshAt: Math.min(refreshAt, usableUntil), usableUntil }
  }

  const earn = (cacheKey: string, signal?: AbortSignal) =>
    flights.run(cacheKey, async () => {
      const generation = (generations.get(cacheKey) ?? 0) + 1
      generations.set(cacheKey, generation)
      let token: BoundToken
      try {
        token = await options.earn(cacheKey, generation, signal)
      } catch (err) {
        if (!signal?.aborted) recordFailure(cacheKey, err)
        throw err
      }
      failures.delete(cacheKey)
      if (!closed && accept(token)) entries.set(cacheKey, schedule(token))
      return token
    })

  const recordFailure = (cacheKey: string, error: unknown) => {
    const count = (failures.get(cacheKey)?.count ?? 0) + 1
    const ceiling = Math.min(maxMs, initialMs * 2 ** Math.min(count - 1, 30))
    const retryAfterMs = error instanceof TokenEndpointError && error.retryAfter !== undefined ? Math.min(error.retryAfter * 1000, maxRetryAfterMs) : 0
    failures.set(cacheKey, { count, nextAttemptAt: clock.now() + Math.max(retryAfterMs, random() * ceiling), error })
  }

  return {
    async get(cacheKey, signal) {
      if (closed) throw new BoundError('ERR_CLOSED', 'The session is closed')
      signal?.throwIfAborted()
      const entry = entries.get(cacheKey)
      const now = clock.now()
      const failure = failures.get(cacheKey)
      const backingOff = failure !== undefined && now < failure.nextAttemptAt
      if (entry && now < entry.usableUntil && accept(entry.token)) {
        if (now >= entry.refreshAt && !backingOff && !flights.has(cacheKey)) {
          // Background refresh: callers keep the current token meanwhile.
          earn(cacheKey).catch((err: unknown) => options.onBackgroundError?.(cacheKey, err))
        }
        return entry.token
      }
      if (entry) entries.delete(cacheKey)
      if (backingOff && !flights.has(cacheKey)) {
        // No valid token and the AS failed recently: fail fast instead of piling onto it.
        const waitS = Math.ceil((failure.nextAttemptAt - now) / 1000)
        const reason = failure.error instanceof Error ? failure.error.message : String(failure.error)
        throw new BoundError('ERR_TOKEN_UNAVAILABLE', `No valid token; the last token request failed (${reason.slice(0, 300)}); next attempt in ${waitS} s`, { cause: failure.error })
      }
      return waitFor(earn(cacheKey), signal) // the shared request is not tied to one caller's signal
    },
    invalidate(token) {
      const entry = entries.get(token.cacheKey)
      if (entry && entry.token.generation === token.generation) {
        entries.delete(token.cacheKey)
        return true
      }
      return false
    },
    clear: () => entries.clear(),
    dropWhere(predicate) {
      let dropped = 0
      for (const [key, entry] of entries) {
        if (predicate(entry.token)) {
          entries.delete(key)
          dropped++
        }
      }
      return dropped
    },
    held: () => [...entries.values()].map((e) => e.token),
    close() {
      closed = true
      entries.clear()
    },
  }
}

/** Waits for `promise` unless `signal` aborts first (the shared work goes on for other callers). */
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
