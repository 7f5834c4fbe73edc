import { generateKeyPairSync, randomUUID } from 'node:crypto'
import {
  calculateJwkThumbprint,
  createLocalJWKSet,
  jwtVerify,
  SignJWT,
  type JWK,
  type JWTPayload,
  type JWTVerifyOptions,
} from 'jose'

/**
 * Default `sub` of workload identity tokens, shaped like a Kubernetes service account.
 *
 * @example
 * ```ts
 * const body = await (await fetch(`${kit.api}/orders`)).json() // a bound fetch of a token-exchange session
 * expect(body.sub).toBe(DEFAULT_WORKLOAD_SUBJECT)
 * ```
 */
export const DEFAULT_WORKLOAD_SUBJECT = 'system:serviceaccount:ci:deployer'

/**
 * Default issuer of the simulated workload identity issuer.
 *
 * @example
 * ```ts
 * const impostor = await createWorkloadIdentityIssuer({ issuer: DEFAULT_WORKLOAD_ISSUER, defaultAudience: kit.issuer }) // same name, wrong key
 * ```
 */
export const DEFAULT_WORKLOAD_ISSUER = 'https://workload-identity.bound.test'

/**
 * Options of {@link WorkloadIdentityIssuer.mintToken}.
 *
 * @example
 * ```ts
 * const expired = await kit.workloadIdentity.mintToken({ sub: 'repo:acme/shop:ref:refs/heads/main', ttlSeconds: -60 })
 * ```
 */
export interface WorkloadTokenOptions {
  /** Subject; default `system:serviceaccount:ci:deployer`. */
  sub?: string
  /** Audience; default the issuer's default audience (the testkit authorization server issuer). */
  aud?: string | string[]
  /**
   * Lifetime in seconds from now; default 300. Zero or negative gives an already expired token
   * (`exp` = now + ttlSeconds, `iat` = `nbf` = `exp` - 300 in that case).
   */
  ttlSeconds?: number
  /** Extra claims, merged last: they may override any standard claim (`iss`, `jti`, `exp`, ...). */
  claims?: Record<string, unknown>
}

/**
 * A simulated workload identity issuer (like a Kubernetes projected service account token issuer
 * or the GitHub Actions OIDC provider): an ES256 key made at start that signs JWTs with `iss`,
 * `sub`, `aud`, `iat`, `nbf`, `exp` and a unique `jti`.
 *
 * @example
 * ```ts
 * const issuer: WorkloadIdentityIssuer = kit.workloadIdentity
 * const subjectToken = await issuer.mintToken({ sub: 'system:serviceaccount:ci:deployer' })
 * ```
 */
export interface WorkloadIdentityIssuer {
  /** The `iss` of the tokens. */
  issuer: string
  /** The public key set that verifies the tokens. */
  jwks: { keys: JWK[] }
  /** The audience used when {@link WorkloadTokenOptions.aud} is not given. */
  defaultAudience: string
  /** Signs a workload identity token (a compact JWS, header `{ alg: 'ES256', kid, typ: 'JWT' }`). */
  mintToken(options?: WorkloadTokenOptions): Promise<string>
  /** Verifies a token of this issuer: signature, `iss`, `aud`, `exp`/`nbf`, and `sub` present. */
  verify(token: string, options: { audience: string; requiredClaims?: string[] }): Promise<JWTPayload>
}

/**
 * Options of {@link createWorkloadIdentityIssuer}.
 *
 * @example
 * ```ts
 * const other = await createWorkloadIdentityIssuer({ issuer: 'https://ci.example.test', defaultAudience: kit.issuer })
 * ```
 */
export interface WorkloadIdentityIssuerOptions {
  /** The `iss`; default `https://workload-identity.bound.test`. */
  issuer?: string
  /** Default `aud` of minted tokens (the testkit uses its authorization server issuer). */
  defaultAudience: string
}

/**
 * Creates a workload identity issuer with a fresh ES256 key. Two issuers created with the same
 * `issuer` have different keys: a token of one fails verification with the other (a "wrong key").
 *
 * For tests only.
 *
 * @example
 * ```ts
 * const issuer = await createWorkloadIdentityIssuer({ defaultAudience: as.issuer })
 * const as2 = await startAuthorizationServer({ pki, workloadIdentity: issuer })
 * ```
 */
export async function createWorkloadIdentityIssuer(options: WorkloadIdentityIssuerOptions): Promise<WorkloadIdentityIssuer> {
  const issuer = options.issuer ?? DEFAULT_WORKLOAD_ISSUER
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const publicJwk = publicKey.export({ format: 'jwk' }) as JWK
  const kid = await calculateJwkThumbprint(publicJwk)
  Object.assign(publicJwk, { kid, alg: 'ES256', use: 'sig' })
  const jwks = { keys: [publicJwk] }
  const keySet = createLocalJWKSet(jwks)

  return {
    issuer,
    jwks: structuredClone(jwks),
    defaultAudience: options.defaultAudience,
    async mintToken(mint: WorkloadTokenOptions = {}) {
      const now = Math.floor(Date.now() / 1000)
      const ttl = mint.ttlSeconds ?? 300
      const exp = now + ttl
      const iat = ttl > 0 ? now : exp - 300
      const payload: JWTPayload = {
        iss: issuer,
        sub: mint.sub ?? DEFAULT_WORKLOAD_SUBJECT,
        aud: mint.aud ?? options.defaultAudience,
        iat,
        nbf: iat,
        exp,
        jti: randomUUID(),
        ...mint.claims,
      }
      return new SignJWT(payload).setProtectedHeader({ alg: 'ES256', kid, typ: 'JWT' }).sign(privateKey)
    },
    async verify(token, verify) {
      const verifyOptions: JWTVerifyOptions = {
        issuer,
        audience: verify.audience,
        algorithms: ['ES256'],
        requiredClaims: ['exp', 'sub', ...(verify.requiredClaims ?? [])],
      }
      const { payload } = await jwtVerify(token, keySet, verifyOptions)
      if (typeof payload.sub !== 'string' || payload.sub === '') throw new Error('"sub" claim must be a non-empty string')
      return payload
    },
  }
}
