import { classifyChallenge, parseChallenges, type BoundError, type ClassifiedChallenge } from '@bound/core'
import { mergeClaims as mergeCapabilities } from '@bound/core/internal'

/**
 * A challenge of a response Bound returned, with the typed error Bound attached when it gave up on it.
 *
 * @example
 * ```ts
 * const refusal: ResponseChallenge | undefined = getChallenges(res).find((c) => c.boundError)
 * if (refusal?.boundError?.code === 'ERR_SESSION_REVOKED') alert(refusal.errorDescription)
 * ```
 */
export interface ResponseChallenge extends ClassifiedChallenge {
  /**
   * Why Bound returned the response instead of answering the challenge: `ERR_STEP_UP_REQUIRED`
   * (no `onStepUp`, or it declined), `ERR_SESSION_REVOKED` (a second `invalid_token`), …
   */
  boundError?: BoundError
}

const attached = new WeakMap<object, ResponseChallenge[]>()

/** Parses and classifies the `WWW-Authenticate` challenges of a response. */
export function readChallenges(headers: { get(name: string): string | null }): ResponseChallenge[] {
  return parseChallenges(headers).map(classifyChallenge)
}

/** Remembers the challenges Bound parsed for a response it returns. */
export function attachChallenges(response: object, challenges: ResponseChallenge[]): void {
  attached.set(response, challenges)
}

/**
 * The parsed, classified challenges of a response returned by a bound fetch (empty when there were
 * none), with the error Bound attached when it could not answer one. For a response Bound did not
 * return, it parses its headers.
 *
 * @example
 * ```ts
 * const res = await fetch(url)
 * for (const c of getChallenges(res)) if (c.boundError?.code === 'ERR_STEP_UP_REQUIRED') askTheUser(c.acrValues)
 * ```
 */
export function getChallenges(response: { headers: { get(name: string): string | null } }): ResponseChallenge[] {
  return attached.get(response) ?? readChallenges(response.headers)
}

/**
 * The challenge that speaks to the credential sent (RFC 9449 §7.2, CHAL-11): the `dpop` one for a
 * DPoP token, the `bearer` one for a Bearer token; else the first with an `error`; else the first
 * that names `resource_metadata`.
 */
export function challengeFor(challenges: ResponseChallenge[], scheme: 'dpop' | 'bearer' | undefined): ResponseChallenge | undefined {
  return (
    (scheme ? challenges.find((c) => c.scheme === scheme && c.error !== undefined) : undefined) ??
    challenges.find((c) => c.error !== undefined) ??
    challenges.find((c) => c.resourceMetadata !== undefined)
  )
}

/**
 * Merges a claims challenge with the client's capabilities (Microsoft CAE, T-12):
 * `access_token.xms_cc = { values: capabilities }` added to the requested claims.
 *
 * @example
 * ```ts
 * mergeClaims({ access_token: { acrs: { essential: true, value: 'c1' } } }, ['cp1'])
 * // { access_token: { acrs: { essential: true, value: 'c1' }, xms_cc: { values: ['cp1'] } } }
 * ```
 */
export const mergeClaims: (claims: Record<string, unknown>, capabilities: readonly string[] | undefined) => Record<string, unknown> = mergeCapabilities
