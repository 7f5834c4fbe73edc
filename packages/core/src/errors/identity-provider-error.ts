import { TokenEndpointError } from './token-endpoint-error.js'

/**
 * The enterprise identity provider refused to issue an Identity Assertion JWT Authorization Grant
 * (ID-JAG) for this agent (`ERR_IDP_REFUSED`): the first hop of `identityAssertionGrant`, the
 * RFC 8693 token exchange at the IdP, answered with an RFC 6749 error — `invalid_grant` for a
 * subject token (ID token, SAML assertion) it no longer accepts, `access_denied` for an app the
 * enterprise does not allow to act for its users at that resource, `invalid_target` for an
 * audience or resource it does not know. A refusal by the resource's own authorization server (the
 * second hop) is a plain {@link TokenEndpointError} (`ERR_TOKEN_ENDPOINT`), never this class.
 *
 * Carries what every token endpoint error does (`error`, `error_description`, `status`,
 * `retryAfter`) and `hop: 'idp'`. A 5xx or 429 from the IdP is its momentary trouble and arrives,
 * like any AS's, wrapped in `ERR_TOKEN_UNAVAILABLE` (this error as the cause).
 *
 * @example
 * ```ts
 * import { IdentityProviderError } from '@bound/core'
 * try { await session.token() } catch (err) {
 *   if (err instanceof IdentityProviderError && err.error === 'access_denied') console.error('the enterprise IdP does not allow this agent here:', err.error_description)
 * }
 * ```
 */
export class IdentityProviderError extends TokenEndpointError {
  static override errorName = 'IdentityProviderError'
  protected static override errorCode = 'ERR_IDP_REFUSED' as const
  protected static override serverName = 'identity provider’s token endpoint'
  /** Which hop of the chain refused: the enterprise identity provider. */
  readonly hop = 'idp' as const
}
