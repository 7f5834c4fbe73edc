import { classifyChallenge, parseChallenges, type ClassifiedChallenge } from '@bound/core'

const attached = new WeakMap<object, ClassifiedChallenge[]>()

/** Parses and classifies the `WWW-Authenticate` challenges of a response. */
export function readChallenges(headers: { get(name: string): string | null }): ClassifiedChallenge[] {
  return parseChallenges(headers).map(classifyChallenge)
}

/** Remembers the challenges Bound parsed for a response it returns. */
export function attachChallenges(response: object, challenges: ClassifiedChallenge[]): void {
  attached.set(response, challenges)
}

/**
 * The parsed, classified challenges of a response returned by a bound fetch (empty when there were
 * none). Works on any `Response`: for one Bound did not return, it parses its headers.
 *
 * @example
 * ```ts
 * const res = await fetch(url)
 * for (const c of getChallenges(res)) if (c.kind === 'step-up') console.log(c.acrValues)
 * ```
 */
export function getChallenges(response: { headers: { get(name: string): string | null } }): ClassifiedChallenge[] {
  return attached.get(response) ?? readChallenges(response.headers)
}

/**
 * The challenge that speaks to the credential sent (RFC 9449 §7.2, CHAL-11): the `dpop` one for a
 * DPoP token, the `bearer` one for a Bearer token; else the first with an `error`.
 */
export function challengeFor(challenges: ClassifiedChallenge[], scheme: 'dpop' | 'bearer'): ClassifiedChallenge | undefined {
  return challenges.find((c) => c.scheme === scheme && c.error !== undefined) ?? challenges.find((c) => c.error !== undefined)
}
