import { inspect } from 'node:util'
import { redactedLabel } from '@bound/core'

/**
 * The binding a token was issued under.
 *
 * @example
 * ```ts
 * const { jkt, x5t }: TokenBinding = (await session.token()).binding
 * ```
 */
export interface TokenBinding {
  /** DPoP key thumbprint the token is bound to, when DPoP was used. */
  readonly jkt?: string
  /** Client certificate thumbprint (`x5t#S256`) of the channel it was issued over, when mTLS was used. */
  readonly x5t?: string
}

/**
 * An access token held by a session. The token string is reachable only through `value`, which is
 * not enumerable: `JSON.stringify`, `util.inspect` and loggers see a redacted label instead.
 *
 * @example
 * ```ts
 * const token: BoundToken = await session.token()
 * console.log(token)  // BoundToken { type: DPoP, sha256:F847sOIv, expiresAt: … }
 * headers.authorization = `${token.type} ${token.value}`
 * ```
 */
export interface BoundToken {
  /** The token string. Send it; never log it. */
  readonly value: string
  /** `DPoP` or `Bearer` — the scheme it must be sent with. */
  readonly type: 'DPoP' | 'Bearer'
  /** Epoch ms when the local clock considers it expired (receipt time + `expires_in`). */
  readonly expiresAt: number
  /** Epoch ms when it was received. */
  readonly receivedAt: number
  /** Whether `expires_in` was absent (the lifetime is then a configured default). */
  readonly lifetimeAssumed: boolean
  /** Scope granted (as the AS said, else as requested). */
  readonly scope: string | undefined
  /** The cache key it was issued under. */
  readonly cacheKey: string
  /** Monotonic generation within its cache key. */
  readonly generation: number
  /** The binding it was issued under. */
  readonly binding: TokenBinding
  /** `sha256:xxxxxxxx` — a short, safe label for logs. */
  readonly label: string
}

/**
 * Creates a {@link BoundToken} whose secret is hidden from serialisation.
 *
 * @example
 * ```ts
 * const now = Date.now()
 * const token = createBoundToken({ value: accessToken, type: 'Bearer', receivedAt: now, expiresAt: now + 300_000, lifetimeAssumed: false, scope: undefined, cacheKey: 'k', generation: 1, binding: {} })
 * ```
 */
export function createBoundToken(init: Omit<BoundToken, 'label'>): BoundToken {
  const { value, ...rest } = init
  const label = redactedLabel(value)
  const token = { ...rest, label }
  Object.defineProperty(token, 'value', { value, enumerable: false })
  Object.defineProperty(token, 'toJSON', { value: () => ({ ...rest, label }), enumerable: false })
  Object.defineProperty(token, inspect.custom, { value: () => `BoundToken { type: ${rest.type}, ${label}, expiresAt: ${new Date(rest.expiresAt).toISOString()} }`, enumerable: false })
  return Object.freeze(token) as BoundToken
}
