import { BoundError, type BoundErrorCode, type BoundErrorOptions } from './bound-error.js'
import { sanitizeProtocolText } from '../redact.js'

/**
 * Details of an RFC 6749 §5.2 error response from a token endpoint.
 *
 * @example
 * ```ts
 * const details: TokenEndpointErrorDetails = { error: 'invalid_client', status: 401, endpoint: 'https://as.example.com/token' }
 * ```
 */
export interface TokenEndpointErrorDetails {
  /** The `error` code, e.g. `invalid_client`. */
  error: string
  /** The `error_description`, sanitised to printable ASCII and capped. */
  error_description?: string | undefined
  /** The `error_uri`, when given. */
  error_uri?: string | undefined
  /** The HTTP status of the response. */
  status: number
  /** The endpoint URL (no query). */
  endpoint?: string | undefined
  /** Seconds the server asked to wait (`Retry-After`), when it did. */
  retryAfter?: number | undefined
  /** Advice on the likely fix, appended to the message (never anything the server sent). */
  hint?: string | undefined
}

/**
 * The authorization server answered a token request with an RFC 6749 error
 * (`ERR_TOKEN_ENDPOINT`). Carries `error`, `error_description` and `status`.
 *
 * @example
 * ```ts
 * import { TokenEndpointError } from '@bound/core'
 * try { await session.token() } catch (err) {
 *   if (err instanceof TokenEndpointError && err.error === 'invalid_client') console.error('check the client credentials', err.status)
 * }
 * ```
 */
export class TokenEndpointError extends BoundError {
  static override errorName = 'TokenEndpointError'
  /** The code errors of this class carry (a subclass names another). */
  protected static errorCode: BoundErrorCode = 'ERR_TOKEN_ENDPOINT'
  /** How the message names the server that refused (a subclass names another). */
  protected static serverName = 'token endpoint'
  /** The OAuth `error` code (`invalid_client`, `invalid_grant`, …), sanitised; `unknown_error` when empty. */
  readonly error: string
  /** The `error_description`, sanitised to printable ASCII and capped at 300 characters. */
  readonly error_description?: string
  /** The `error_uri`, sanitised, when given. */
  readonly error_uri?: string
  /** The HTTP status of the response. */
  readonly status: number
  /** Seconds the server asked to wait (`Retry-After`), when it did. */
  readonly retryAfter?: number

  constructor(details: TokenEndpointErrorDetails, options?: BoundErrorOptions) {
    const error = sanitizeProtocolText(details.error, 64) || 'unknown_error'
    const description = details.error_description === undefined ? undefined : sanitizeProtocolText(details.error_description, 300)
    const kind = new.target as unknown as { errorCode: BoundErrorCode; serverName: string }
    super(
      kind.errorCode,
      `The ${kind.serverName}${details.endpoint ? ` ${details.endpoint}` : ''} refused the request: ${error}${description ? ` (${description})` : ''} [HTTP ${details.status}]${details.hint ? ` — ${details.hint}` : ''}`,
      options,
    )
    this.error = error
    if (description !== undefined) this.error_description = description
    if (details.error_uri !== undefined) this.error_uri = sanitizeProtocolText(details.error_uri, 300)
    this.status = details.status
    if (details.retryAfter !== undefined) this.retryAfter = details.retryAfter
  }
}
