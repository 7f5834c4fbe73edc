import { BoundError } from '@bound/core'
import { networkHint } from '@bound/core/internal'

const MARK = Symbol.for('@bound/core.BoundError')

/**
 * What a bound fetch throws when the network fails (DNS, refused connection, TLS, reset): a
 * `TypeError` like the platform `fetch`'s `fetch failed`, so existing `catch` code keeps working —
 * and a {@link BoundError} with code `ERR_NETWORK` and the original error as `cause`.
 *
 * @example
 * ```ts
 * try { await fetch(url) } catch (err) {
 *   if (err instanceof TypeError) retryLater()          // as with the platform fetch
 *   if (isBoundError(err, 'ERR_NETWORK')) log(err.cause)  // the same error, typed
 * }
 * ```
 */
export class FetchNetworkError extends TypeError {
  /** Always `ERR_NETWORK`. */
  readonly code = 'ERR_NETWORK' as const

  constructor(url: URL, cause: unknown) {
    const detail = cause instanceof Error ? `${(cause as { code?: string }).code ?? cause.name}: ${cause.message}`.slice(0, 200) : String(cause).slice(0, 200)
    super(`fetch failed: ${url.origin} (${detail})${networkHint(cause)}`, { cause })
    // recognised as a BoundError by `instanceof` and isBoundError() (the marker BoundError uses)
    Object.defineProperty(this, MARK, { value: ['BoundError'], enumerable: false })
  }

  toJSON(): Record<string, unknown> {
    return { name: this.name, code: this.code, message: this.message }
  }
}

/** Wraps a transport failure; aborts and Bound's own errors pass through as they are. */
export function toFetchError(err: unknown, url: URL, signal: AbortSignal | undefined): unknown {
  if (signal?.aborted) return signal.reason ?? err
  if (err instanceof BoundError) return err
  return new FetchNetworkError(url, err)
}

/**
 * The system code (`ECONNREFUSED`, `ENOTFOUND`…) under a bound fetch's network failure, for
 * integrations whose client keys its own behaviour on it (axios's codes, got's retry).
 */
export function systemCodeOf(err: unknown): string | undefined {
  if ((err as { code?: unknown } | undefined)?.code !== 'ERR_NETWORK') return undefined
  const code = (err as { cause?: { code?: unknown } }).cause?.code
  return typeof code === 'string' ? code : undefined
}
