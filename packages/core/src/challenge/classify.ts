import type { Challenge } from './parse.js'
import { sanitizeProtocolText } from '../redact.js'

/**
 * What a challenge asks the client to do.
 *
 * @example
 * ```ts
 * const kind: ChallengeKind = classifyChallenge(challenge).kind
 * if (kind === 'step-up') askTheUser()
 * ```
 */
export type ChallengeKind =
  | 'dpop-nonce'
  | 'invalid-token'
  | 'invalid-dpop-proof'
  | 'step-up'
  | 'insufficient-claims'
  | 'insufficient-scope'
  | 'resource-metadata'
  | 'other'

/**
 * A challenge with its kind and the parameters that kind needs, parsed and validated.
 *
 * @example
 * ```ts
 * const c: ClassifiedChallenge = classifyChallenge(parseChallenges('DPoP error="insufficient_user_authentication", acr_values="urn:mfa"')[0]!)
 * c.kind       // 'step-up'
 * c.acrValues  // ['urn:mfa']
 * ```
 */
export interface ClassifiedChallenge {
  /** What the challenge asks for. */
  kind: ChallengeKind
  /** Lower-cased auth-scheme. */
  scheme: string
  /** All parameters as parsed. */
  params: Record<string, string>
  /** The `error` parameter, sanitised. */
  error?: string
  /** The `error_description`, sanitised (printable ASCII, capped). Not for display to end users. */
  errorDescription?: string
  /** `algs` of a DPoP challenge, split on spaces (RFC 9449 §7.1). */
  algs?: string[]
  /** step-up: `acr_values`, split on spaces, in order (RFC 9470 §3). */
  acrValues?: string[]
  /** step-up: `max_age` in seconds, when present and a non-negative integer. */
  maxAge?: number
  /** insufficient-claims: the decoded claims request object. */
  claims?: Record<string, unknown>
  /** insufficient-scope: the required scopes, split on spaces. */
  scope?: string[]
  /** RFC 9728 `resource_metadata` URL, when present and an absolute http(s) URL. */
  resourceMetadata?: string
  /** Why a recognised challenge was judged malformed (e.g. `max_age="5s"`). */
  malformed?: string
}

const splitList = (value: string) => value.split(' ').filter((s) => s !== '')

/**
 * Decodes a base64url or base64 `claims` parameter into a JSON object, or undefined.
 *
 * @example
 * ```ts
 * decodeClaimsParameter('eyJhY2Nlc3NfdG9rZW4iOnt9fQ') // { access_token: {} }
 * ```
 */
export function decodeClaimsParameter(value: string): Record<string, unknown> | undefined {
  if (value.length === 0 || value.length > 16_384 || !/^[A-Za-z0-9+/_-]+={0,2}$/.test(value)) return undefined
  try {
    const json = Buffer.from(value.replace(/-/g, '+').replace(/_/g, '/'), 'base64').toString('utf8')
    const parsed: unknown = JSON.parse(json)
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return undefined
    return parsed as Record<string, unknown>
  } catch {
    return undefined
  }
}

/**
 * Classifies a parsed challenge by its `error` (and `resource_metadata`) and validates the
 * parameters that kind depends on. Never throws.
 *
 * @example
 * ```ts
 * const [c] = parseChallenges('Bearer error="insufficient_user_authentication", acr_values="mfa", max_age=300')
 * classifyChallenge(c) // { kind: 'step-up', acrValues: ['mfa'], maxAge: 300, … }
 * ```
 */
export function classifyChallenge(challenge: Challenge): ClassifiedChallenge {
  const { params } = challenge
  const out: ClassifiedChallenge = { kind: 'other', scheme: challenge.scheme, params }
  const error = params.error === undefined ? undefined : sanitizeProtocolText(params.error, 64)
  if (error !== undefined) out.error = error
  if (params.error_description !== undefined) out.errorDescription = sanitizeProtocolText(params.error_description, 300)
  if (params.algs !== undefined) out.algs = splitList(params.algs)
  if (params.scope !== undefined) out.scope = splitList(params.scope)
  if (params.resource_metadata !== undefined) {
    try {
      const u = new URL(params.resource_metadata)
      if (u.protocol === 'https:' || u.protocol === 'http:') out.resourceMetadata = u.href
    } catch {
      out.malformed = 'resource_metadata is not an absolute URL'
    }
  }
  switch (error) {
    case 'use_dpop_nonce':
      out.kind = 'dpop-nonce'
      break
    case 'invalid_token':
      out.kind = 'invalid-token'
      break
    case 'invalid_dpop_proof':
      out.kind = 'invalid-dpop-proof'
      break
    case 'insufficient_user_authentication': {
      out.kind = 'step-up'
      if (params.acr_values !== undefined) out.acrValues = splitList(params.acr_values)
      if (params.max_age !== undefined) {
        if (/^\d{1,10}$/.test(params.max_age)) out.maxAge = Number(params.max_age)
        else out.malformed = 'max_age is not a non-negative integer'
      }
      break
    }
    case 'insufficient_claims': {
      out.kind = 'insufficient-claims'
      const claims = params.claims === undefined ? undefined : decodeClaimsParameter(params.claims)
      if (claims) out.claims = claims
      else out.malformed = 'claims is missing or not base64-encoded JSON'
      break
    }
    case 'insufficient_scope':
      out.kind = 'insufficient-scope'
      break
    default:
      if (out.resourceMetadata !== undefined) out.kind = 'resource-metadata'
  }
  return out
}
