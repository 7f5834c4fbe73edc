import { createHash } from 'node:crypto'
import {
  calculateJwkThumbprint,
  decodeProtectedHeader,
  EmbeddedJWK,
  jwtVerify,
  type JWK,
  type JWTHeaderParameters,
  type JWTPayload,
  type JWTVerifyGetKey,
} from 'jose'

/**
 * A decoded, verified DPoP proof.
 *
 * @example
 * ```ts
 * const proof: DecodedProof | undefined = kit.rs.counters().lastProof
 * expect(proof?.payload.htu).toBe(`${kit.api}/orders`)
 * ```
 */
export interface DecodedProof {
  header: JWTHeaderParameters
  payload: JWTPayload
}

/** Outcome of one verifier. */
export type ProofVerdict =
  | { ok: true; token: JWTPayload; proof: DecodedProof; jkt: string }
  | {
    ok: false
    stage: 'token' | 'proof'
    reason: string
    /** True when every check passed except the `iat` freshness window. */
    iatOnly?: boolean
    /** now - iat, when the proof could be decoded. */
    iatSkew?: number
  }

/** Inputs of {@link verifyDpopRequestWithJose}. */
export interface JoseDpopCheck {
  accessToken: string
  proof: string | undefined
  method: string
  /** Absolute URL of the request as received. */
  url: string
  issuer: string
  audience: string
  getKey: JWTVerifyGetKey
  algorithms: string[]
  /** Accepted |now - iat| of the proof, seconds; default 60. */
  maxProofAgeSeconds?: number
  /** Clock tolerance for the access token `exp`/`nbf`, seconds; default 0. */
  clockTolerance?: number
}

const PRIVATE_JWK_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k', 'priv'] as const

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}

/** `scheme://host[:port]/path` of a URL, without query and fragment. */
export function htuOf(url: string): string | undefined {
  try {
    const parsed = new URL(url)
    return `${parsed.protocol}//${parsed.host}${parsed.pathname}`
  } catch {
    return undefined
  }
}

/** base64url(SHA-256(access token)): the DPoP `ath` claim. */
export function accessTokenHash(accessToken: string): string {
  return createHash('sha256').update(accessToken, 'ascii').digest('base64url')
}

/**
 * Verifies a DPoP-bound JWT access token and its proof with `jose` only, independently of
 * `oauth4webapi`: token signature/iss/aud/typ/exp and `cnf.jkt`, proof signature with the embedded
 * public `jwk`, `typ`, `htm`, `htu`, `iat` window, `ath`, and the thumbprint binding.
 */
export async function verifyDpopRequestWithJose(check: JoseDpopCheck): Promise<ProofVerdict> {
  let token: JWTPayload
  try {
    ;({ payload: token } = await jwtVerify(check.accessToken, check.getKey, {
      issuer: check.issuer,
      audience: check.audience,
      typ: 'at+jwt',
      algorithms: check.algorithms,
      requiredClaims: ['exp', 'iat', 'jti', 'sub', 'client_id'],
      clockTolerance: check.clockTolerance ?? 0,
    }))
  } catch (error) {
    return { ok: false, stage: 'token', reason: `access token: ${message(error)}` }
  }
  const jktClaim = (token['cnf'] as { jkt?: unknown } | undefined)?.jkt
  if (typeof jktClaim !== 'string') {
    return { ok: false, stage: 'token', reason: 'access token is not DPoP-bound (no cnf.jkt)' }
  }

  const { proof } = check
  if (proof === undefined || proof === '') return { ok: false, stage: 'proof', reason: 'missing DPoP proof' }
  if (/[\s,]/.test(proof)) return { ok: false, stage: 'proof', reason: 'more than one DPoP proof' }

  let header: JWTHeaderParameters
  let payload: JWTPayload
  try {
    const decoded = decodeProtectedHeader(proof)
    const jwk = decoded.jwk as JWK | undefined
    if (jwk === undefined || typeof jwk !== 'object') {
      return { ok: false, stage: 'proof', reason: 'proof has no jwk header' }
    }
    const privateMember = PRIVATE_JWK_MEMBERS.find((member) => member in jwk)
    if (privateMember !== undefined) {
      return { ok: false, stage: 'proof', reason: `proof jwk contains private member "${privateMember}"` }
    }
    ;({ protectedHeader: header, payload } = await jwtVerify(proof, EmbeddedJWK, {
      typ: 'dpop+jwt',
      algorithms: check.algorithms,
      clockTolerance: check.clockTolerance ?? 0,
    }))
  } catch (error) {
    return { ok: false, stage: 'proof', reason: `proof: ${message(error)}` }
  }

  const now = Math.floor(Date.now() / 1000)
  const iatSkew = typeof payload.iat === 'number' ? now - payload.iat : undefined
  const fail = (reason: string, iatOnly = false): ProofVerdict => ({
    ok: false,
    stage: 'proof',
    reason,
    ...(iatOnly ? { iatOnly } : {}),
    ...(iatSkew === undefined ? {} : { iatSkew }),
  })

  if (typeof payload.jti !== 'string' || payload.jti === '') return fail('proof jti missing')
  if (payload['htm'] !== check.method) return fail('proof htm mismatch')
  const htu = typeof payload['htu'] === 'string' ? htuOf(payload['htu']) : undefined
  if (htu === undefined || htu !== htuOf(check.url)) return fail('proof htu mismatch')
  if (payload['ath'] !== accessTokenHash(check.accessToken)) return fail('proof ath mismatch')
  const jkt = await calculateJwkThumbprint(header.jwk as JWK)
  if (jkt !== jktClaim) return fail('proof key does not match the token cnf.jkt')
  if (iatSkew === undefined) return fail('proof iat missing')
  if (Math.abs(iatSkew) > (check.maxProofAgeSeconds ?? 60)) return fail('proof iat outside the accepted window', true)

  return { ok: true, token, proof: { header, payload }, jkt }
}
