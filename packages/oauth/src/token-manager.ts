import { BoundError, createSingleFlight, type Clock } from '@bound/core'
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

/** Options of {@link createTokenManager}. */
export interface TokenManagerOptions {
  clock: Clock
  refresh?: RefreshOptions
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
  const entries = new Map<string, Entry>()
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
      const token = await options.earn(cacheKey, generation, signal)
      if (!closed) entries.set(cacheKey, schedule(token))
      return token
    })

  return {
    async get(cacheKey, signal) {
      if (closed) throw new BoundError('ERR_CLOSED', 'The session is closed')
      signal?.throwIfAborted()
      const entry = entries.get(cacheKey)
      const now = clock.now()
      if (entry && now < entry.usableUntil) {
        if (now >= entry.refreshAt && !flights.has(cacheKey)) {
          // Background refresh: callers keep the current token meanwhile.
          earn(cacheKey).catch((err: unknown) => options.onBackgroundError?.(cacheKey, err))
        }
        return entry.token
      }
      if (entry) entries.delete(cacheKey)
      return waitFor(earn(cacheKey), signal)
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
