/// <reference path="./oidc-provider.d.ts" />
import { createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto'
import { calculateJwkThumbprint, SignJWT, type JWK, type JWTPayload, type ProtectedHeaderParameters } from 'jose'
import { errors, type OidcClient, type OidcKoaContext } from 'oidc-provider'
import { announceSecret } from './secrets.js'

/**
 * Default issuer (`iss`) of the simulated Client Attester.
 *
 * @example
 * ```ts
 * expect(kit.attester.issuer).toBe(DEFAULT_ATTESTER_ISSUER) // 'https://attester.bound.test'
 * ```
 */
export const DEFAULT_ATTESTER_ISSUER = 'https://attester.bound.test'

/**
 * JOSE `typ` of a Client Attestation JWT (`OAuth-Client-Attestation` header).
 *
 * @example
 * ```ts
 * expect(decodeProtectedHeader(attestation).typ).toBe(CLIENT_ATTESTATION_TYP)
 * ```
 */
export const CLIENT_ATTESTATION_TYP = 'oauth-client-attestation+jwt'

/**
 * JOSE `typ` of a Client Attestation PoP JWT (`OAuth-Client-Attestation-PoP` header).
 *
 * @example
 * ```ts
 * const pop = await new SignJWT({ aud: kit.issuer, jti: randomUUID(), challenge })
 *   .setProtectedHeader({ alg: 'ES256', typ: CLIENT_ATTESTATION_POP_TYP })
 *   .setIssuedAt()
 *   .sign(instancePrivateKey)
 * ```
 */
export const CLIENT_ATTESTATION_POP_TYP = 'oauth-client-attestation-pop+jwt'

/**
 * Token endpoint authentication method of attestation-based client authentication with a
 * separate PoP JWT (`OAuth-Client-Attestation` + `OAuth-Client-Attestation-PoP`).
 *
 * @example
 * ```ts
 * expect(kit.clients.attested.authMethod).toBe(ATTEST_JWT_CLIENT_AUTH)
 * ```
 */
export const ATTEST_JWT_CLIENT_AUTH = 'attest_jwt_client_auth'

/**
 * Token endpoint authentication method of attestation-based client authentication in DPoP
 * combined mode (`OAuth-Client-Attestation` + a DPoP proof made with the attested key).
 *
 * @example
 * ```ts
 * expect(kit.clients.attestedDpop.authMethod).toBe(ATTEST_JWT_CLIENT_AUTH_DPOP)
 * ```
 */
export const ATTEST_JWT_CLIENT_AUTH_DPOP = 'attest_jwt_client_auth_dpop'

/**
 * How old (or how far in the future) the `iat` of a PoP JWT may be, seconds (a testkit check on
 * top of oidc-provider's).
 *
 * @example
 * ```ts
 * const staleIat = Math.floor(Date.now() / 1000) - ATTESTATION_POP_MAX_AGE_SECONDS - 1 // invalid_client
 * ```
 */
export const ATTESTATION_POP_MAX_AGE_SECONDS = 60

/**
 * Options of {@link ClientAttester.issue}.
 *
 * @example
 * ```ts
 * await kit.attester.issue({ clientId: 'attested', cnfJwk, ttlSeconds: -60 }) // already expired
 * ```
 */
export interface ClientAttestationOptions {
  /** The client id, the attestation's `sub`. */
  clientId: string
  /** The client instance's public key, the attestation's `cnf.jwk` (private members are refused). */
  cnfJwk: JWK
  /**
   * Lifetime in seconds from now; default 3600. Zero or negative gives an already expired
   * attestation (`exp` = now + ttlSeconds, `iat` = `exp` - 3600 in that case).
   */
  ttlSeconds?: number
  /** Extra claims, merged last: they may override any claim (`iss`, `sub`, `exp`, `cnf`, ...). */
  claims?: Record<string, unknown>
  /** Extra protected header members, merged last (e.g. `{ typ: 'JWT' }` for a wrong type). */
  header?: Partial<ProtectedHeaderParameters>
}

/**
 * A simulated Client Attester (the client's backend that vouches for a client instance, as in
 * draft-ietf-oauth-attestation-based-client-auth): an ES256 key made at start that signs Client
 * Attestation JWTs, header `{ alg: 'ES256', kid, typ: 'oauth-client-attestation+jwt' }`, claims
 * `{ iss, sub, iat, exp, cnf: { jwk } }`. The testkit authorization server trusts its key.
 *
 * @example
 * ```ts
 * const attestation = await kit.attester.issue({ clientId: kit.clients.attested.clientId, cnfJwk: instancePublicJwk })
 * // send it as `OAuth-Client-Attestation`, with an `OAuth-Client-Attestation-PoP` signed by the instance key
 * ```
 */
export interface ClientAttester {
  /** The `iss` of the attestations. */
  issuer: string
  /** The public key set that verifies the attestations. */
  jwks: { keys: JWK[] }
  /** Signs a Client Attestation JWT (the value of the `OAuth-Client-Attestation` header). */
  issue(options: ClientAttestationOptions): Promise<string>
}

/**
 * Options of {@link createClientAttester}.
 *
 * @example
 * ```ts
 * const attester = await createClientAttester({ issuer: 'https://attester.example' })
 * ```
 */
export interface ClientAttesterOptions {
  /** The `iss`; default `https://attester.bound.test`. */
  issuer?: string
}

interface AttesterInternals {
  issuer: string
  keys: Map<string, KeyObject>
}

const internals = new WeakMap<ClientAttester, AttesterInternals>()

/**
 * Creates a Client Attester with a fresh ES256 key. Two attesters with the same `issuer` have
 * different keys: the attestations of one are "signed by an unknown key" for an authorization
 * server that trusts the other.
 *
 * For tests only.
 *
 * @example
 * ```ts
 * const impostor = await createClientAttester() // same issuer name as kit.attester, another key
 * const forged = await impostor.issue({ clientId: 'attested', cnfJwk }) // the AS answers invalid_client
 * ```
 */
export async function createClientAttester(options: ClientAttesterOptions = {}): Promise<ClientAttester> {
  const issuer = options.issuer ?? DEFAULT_ATTESTER_ISSUER
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const publicJwk = publicKey.export({ format: 'jwk' }) as JWK
  const kid = await calculateJwkThumbprint(publicJwk)
  Object.assign(publicJwk, { kid, alg: 'ES256', use: 'sig' })

  const attester: ClientAttester = {
    issuer,
    jwks: { keys: [structuredClone(publicJwk)] },
    async issue(issue) {
      if (typeof issue.clientId !== 'string' || issue.clientId === '') throw new TypeError('clientId must be a non-empty string')
      const { cnfJwk } = issue
      if (cnfJwk === null || typeof cnfJwk !== 'object' || typeof cnfJwk.kty !== 'string') throw new TypeError('cnfJwk must be a JWK')
      const { d: _d, p: _p, q: _q, dp: _dp, dq: _dq, qi: _qi, k: _k, oth: _oth, ...publicMembers } = cnfJwk
      const now = Math.floor(Date.now() / 1000)
      const ttl = issue.ttlSeconds ?? 3600
      const exp = now + ttl
      const iat = ttl > 0 ? now : exp - 3600
      const payload: JWTPayload = {
        iss: issuer,
        sub: issue.clientId,
        iat,
        exp,
        cnf: { jwk: publicMembers },
        ...issue.claims,
      }
      const jwt = await new SignJWT(payload)
        .setProtectedHeader({ alg: 'ES256', kid, typ: CLIENT_ATTESTATION_TYP, ...issue.header })
        .sign(privateKey)
      announceSecret(jwt)
      return jwt
    },
  }
  internals.set(attester, { issuer, keys: new Map([[kid, publicKey]]) })
  return attester
}

/** The trust configuration of oidc-provider's `features.attestClientAuth` for one attester. */
export interface AttestationVerification {
  /** `features.attestClientAuth.getAttestationSignaturePublicKey`. */
  getAttestationSignaturePublicKey(ctx: OidcKoaContext, header: { kid?: string; alg?: string }, payload: JWTPayload, client: OidcClient): Promise<KeyObject>
  /** `features.attestClientAuth.assertAttestationJwtAndPop`. */
  assertAttestationJwtAndPop(
    ctx: OidcKoaContext,
    attestation: { payload: JWTPayload; protectedHeader: Record<string, unknown> },
    pop: { payload: JWTPayload; protectedHeader: Record<string, unknown> },
    client: OidcClient,
  ): Promise<void>
}

/**
 * The hooks that make oidc-provider trust `attester`: the attestation must name it as `iss` and be
 * signed with its key (`kid` when given must be its key's), and the PoP's `iat` must be within
 * {@link ATTESTATION_POP_MAX_AGE_SECONDS} of now. oidc-provider itself checks the rest (types,
 * `sub`, `exp`, `cnf.jwk`, PoP signature, `aud`, `jti` single use, `challenge`).
 */
export function attestationVerification(attester: ClientAttester): AttestationVerification {
  const trusted = internals.get(attester)
  const fail = (detail: string): never => {
    throw new errors.InvalidClientAuth(detail)
  }
  return {
    async getAttestationSignaturePublicKey(_ctx, header, payload) {
      // A caller-supplied attester object (not made by createClientAttester) is trusted by its JWKS.
      const keys = trusted?.keys ?? new Map(attester.jwks.keys.map((jwk) => [String(jwk.kid), createPublicKey({ key: jwk as import('node:crypto').JsonWebKey, format: 'jwk' })]))
      const issuer = trusted?.issuer ?? attester.issuer
      if (payload.iss !== issuer) throw new Error(`untrusted client attester ${JSON.stringify(payload.iss)}`)
      if (header.kid !== undefined) {
        const key = keys.get(header.kid)
        if (key === undefined) throw new Error('unknown client attester key (kid)')
        return key
      }
      const [only] = keys.values()
      if (only === undefined || keys.size !== 1) throw new Error('client attestation without kid')
      return only
    },
    async assertAttestationJwtAndPop(_ctx, _attestation, pop) {
      if (pop.protectedHeader['typ'] !== CLIENT_ATTESTATION_POP_TYP) return // DPoP combined mode: oidc-provider checked the proof
      const iat = pop.payload.iat
      const now = Math.floor(Date.now() / 1000)
      if (typeof iat !== 'number' || Math.abs(now - iat) > ATTESTATION_POP_MAX_AGE_SECONDS) {
        fail(`oauth-client-attestation-pop iat must be within ${ATTESTATION_POP_MAX_AGE_SECONDS} seconds of now`)
      }
    },
  }
}
