import { randomBytes } from 'node:crypto'
import { BoundError } from '@bound/core'
import { durationMs, functionRule, optionsChecker } from '@bound/core/internal'
import { z } from 'zod'
import { importDpopKey, type DpopAlg, type DpopKeyInput, type JwsSigner } from '@bound/dpop'

/**
 * What a client authentication method may add to a token-endpoint request.
 *
 * @example
 * ```ts
 * const headerAuth: ClientAuth = {
 *   method: 'client_secret_basic',
 *   usesTlsClientCertificate: false,
 *   apply: (ctx: ClientAuthContext) => void (ctx.headers.authorization = `Basic ${credentials}`),
 * }
 * ```
 */
export interface ClientAuthContext {
  /** The client id of the session. */
  clientId: string
  /** The AS issuer identifier (the `aud` of `private_key_jwt` assertions). */
  issuer: string | undefined
  /** The token endpoint URL actually used. */
  endpoint: string
  /** The form body; the method adds its parameters. */
  body: URLSearchParams
  /** Request headers; the method may set `authorization`. */
  headers: Record<string, string>
  /** Seconds since the epoch. */
  now: number
  /** A fresh attestation challenge from the AS (its `challenge_endpoint`), for methods that need one. */
  attestationChallenge?: () => Promise<string | undefined>
}

/**
 * How the client proves itself at the token endpoint. Called afresh for every request, including
 * nonce retries, so single-use credentials (assertions) are minted each time.
 *
 * @example
 * ```ts
 * const clientAuth: ClientAuth = privateKeyJwt(process.env.CLIENT_KEY_PEM!, { kid: 'k1' })
 * createSession({ …, clientAuth })
 * ```
 */
export interface ClientAuth {
  /** The RFC 8414 method name, e.g. `client_secret_basic`. */
  readonly method: string
  /** True when the method authenticates with the TLS client certificate. */
  readonly usesTlsClientCertificate: boolean
  /** Adds the method's parameters and headers to one token, revocation or introspection request. */
  apply(context: ClientAuthContext): void | Promise<void>
}

/**
 * RFC 6749 Appendix B: application/x-www-form-urlencoded, space as `+`.
 *
 * @example
 * ```ts
 * formUrlEncode('s3cr3t: +/~') // 's3cr3t%3A+%2B%2F%7E'
 * ```
 */
export function formUrlEncode(value: string): string {
  return encodeURIComponent(value).replace(/%20/g, '+').replace(/[!'()*~]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)
}

const requireSecret = (secret: unknown, method: string): string => {
  if (typeof secret !== 'string' || secret.length === 0) throw new BoundError('ERR_INVALID_CONFIG', `${method} needs a non-empty client secret`)
  return secret
}

/**
 * `client_secret_basic`: HTTP Basic with the id and secret each form-url-encoded first
 * (RFC 6749 §2.3.1), which many clients forget.
 *
 * @example
 * ```ts
 * createSession({ …, clientAuth: clientSecretBasic(process.env.CLIENT_SECRET!) })
 * ```
 */
export function clientSecretBasic(secret: string): ClientAuth {
  const s = requireSecret(secret, 'clientSecretBasic')
  return {
    method: 'client_secret_basic',
    usesTlsClientCertificate: false,
    apply(ctx) {
      ctx.headers.authorization = `Basic ${Buffer.from(`${formUrlEncode(ctx.clientId)}:${formUrlEncode(s)}`).toString('base64')}`
    },
  }
}

/**
 * `client_secret_post`: `client_id` and `client_secret` in the form body.
 *
 * @example
 * ```ts
 * createSession({ …, clientAuth: clientSecretPost(process.env.CLIENT_SECRET!) })
 * ```
 */
export function clientSecretPost(secret: string): ClientAuth {
  const s = requireSecret(secret, 'clientSecretPost')
  return {
    method: 'client_secret_post',
    usesTlsClientCertificate: false,
    apply(ctx) {
      ctx.body.set('client_id', ctx.clientId)
      ctx.body.set('client_secret', s)
    },
  }
}

/**
 * `none`: a public client; only `client_id` is sent.
 *
 * @example
 * ```ts
 * createSession({ …, clientAuth: noClientAuth() })
 * ```
 */
export function noClientAuth(): ClientAuth {
  return {
    method: 'none',
    usesTlsClientCertificate: false,
    apply(ctx) {
      ctx.body.set('client_id', ctx.clientId)
    },
  }
}

/**
 * `tls_client_auth` (RFC 8705 §2.1): the client certificate on the TLS channel authenticates the
 * client; `client_id` goes in the body. Requires the session's client certificate.
 *
 * @example
 * ```ts
 * createSession({ …, clientAuth: tlsClientAuth(), clientCertificate: await loadClientCertificate({ certFile, keyFile }) })
 * ```
 */
export function tlsClientAuth(): ClientAuth {
  return { method: 'tls_client_auth', usesTlsClientCertificate: true, apply: (ctx) => void ctx.body.set('client_id', ctx.clientId) }
}

/**
 * `self_signed_tls_client_auth` (RFC 8705 §2.2): a self-signed certificate registered with the AS.
 *
 * @example
 * ```ts
 * createSession({ …, clientAuth: selfSignedTlsClientAuth(), clientCertificate: { cert: selfSignedCertPem, key: keyPem } })
 * ```
 */
export function selfSignedTlsClientAuth(): ClientAuth {
  return { method: 'self_signed_tls_client_auth', usesTlsClientCertificate: true, apply: (ctx) => void ctx.body.set('client_id', ctx.clientId) }
}

/**
 * Options of {@link privateKeyJwt}.
 *
 * @example
 * ```ts
 * privateKeyJwt(pem, { alg: 'ES256', kid: 'k1', lifetimeMs: 30_000, audience: 'token_endpoint', typ: 'JWT' }) // a legacy AS
 * ```
 */
export interface PrivateKeyJwtOptions {
  /** JWS alg; default from the key type (P-256 → ES256, RSA → RS256, Ed25519 → EdDSA…). */
  alg?: DpopAlg
  /** `kid` header, when the AS needs it to pick the key. */
  kid?: string
  /** Lifetime of each assertion, in milliseconds (whole seconds are sent, rounded up). Default 60,000; at most 300,000. */
  lifetimeMs?: number
  /**
   * `aud` of the assertion: the AS issuer identifier (default, rfc7523bis) or, for legacy ASs, the
   * token endpoint URL.
   */
  audience?: 'issuer' | 'token_endpoint'
  /** `typ` header. Default `'client-authentication+jwt'` (rfc7523bis); some legacy ASs want `'JWT'`. */
  typ?: string
}

const checkPrivateKeyJwt = optionsChecker('privateKeyJwt', {
  alg: z.string().optional(),
  kid: z.string().min(1).optional(),
  lifetimeMs: durationMs(1_000, 300_000).optional(),
  audience: z.enum(['issuer', 'token_endpoint']).optional(),
  typ: z.string().min(1).optional(),
})

/**
 * `private_key_jwt` (RFC 7523 §2.2, OIDC Core §9): a fresh signed assertion (new `jti`, `iat`,
 * short `exp`, `aud` = the issuer) for every token request, nonce retries included.
 *
 * @example
 * ```ts
 * createSession({ …, clientAuth: privateKeyJwt(readFileSync('client-key.pem', 'utf8'), { kid: 'k1' }) })
 * ```
 */
export function privateKeyJwt(key: DpopKeyInput | JwsSigner, options: PrivateKeyJwtOptions = {}): ClientAuth {
  checkPrivateKeyJwt(options)
  const lifetime = Math.ceil((options.lifetimeMs ?? 60_000) / 1000)
  const signer = lazySigner(key, options.alg)
  return {
    method: 'private_key_jwt',
    usesTlsClientCertificate: false,
    async apply(ctx) {
      const s = await signer()
      const audience = options.audience === 'token_endpoint' ? ctx.endpoint : ctx.issuer
      if (audience === undefined) throw new BoundError('ERR_INVALID_CONFIG', 'privateKeyJwt needs the issuer (set issuer, or audience: "token_endpoint")')
      const header: Record<string, string> = { alg: s.alg, typ: options.typ ?? 'client-authentication+jwt' }
      if (options.kid !== undefined) header.kid = options.kid
      const claims = {
        iss: ctx.clientId,
        sub: ctx.clientId,
        aud: audience,
        jti: randomBytes(16).toString('base64url'),
        iat: ctx.now,
        exp: ctx.now + lifetime,
      }
      ctx.body.set('client_id', ctx.clientId)
      ctx.body.set('client_assertion_type', 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer')
      ctx.body.set('client_assertion', await signJwt(s, header, claims))
    },
  }
}

/** Options of {@link attestationClientAuth}. */
export interface AttestationClientAuthOptions {
  /**
   * The client attestation JWT, issued to this instance by its Client Attester (a platform, an MDM,
   * a workload attestor), read afresh for every request.
   */
  attestation: string | (() => string | Promise<string>)
  /** The instance key: the private half of the attestation's `cnf.jwk` (it signs the PoP). */
  key: DpopKeyInput | JwsSigner
  /** PoP `alg`; default from the key type. */
  alg?: DpopAlg
}

/**
 * OAuth attestation-based client authentication (draft-ietf-oauth-attestation-based-client-auth,
 * as implemented against draft -10/-12: `OAuth-Client-Attestation` and `OAuth-Client-Attestation-PoP`
 * headers at the token endpoint). The workload's posture travels to the AS inside the attestation;
 * a fresh PoP (new `jti`, `iat`, the AS's current challenge) is made for every request.
 *
 * @example
 * ```ts
 * createSession({ …, clientAuth: attestationClientAuth({ attestation: () => attester.current(), key: instanceKey }) })
 * ```
 */
const checkAttestation = optionsChecker('attestationClientAuth', {
  attestation: z.union([z.string().min(1), functionRule()], { error: 'must be the attestation JWT or a function returning it' }),
  key: z.custom((v) => v !== undefined && v !== null, 'is needed: the instance key (private half of the attestation cnf.jwk)'),
  alg: z.string().optional(),
})

export function attestationClientAuth(options: AttestationClientAuthOptions): ClientAuth {
  checkAttestation(options)
  const signer = lazySigner(options.key, options.alg)
  return {
    method: 'attest_jwt_client_auth',
    usesTlsClientCertificate: false,
    async apply(ctx) {
      const attestation = typeof options.attestation === 'function' ? await options.attestation() : options.attestation
      if (typeof attestation !== 'string' || attestation.split('.').length !== 3) throw new BoundError('ERR_INVALID_CONFIG', 'attestationClientAuth: the attestation is not a JWT')
      if (!ctx.issuer) throw new BoundError('ERR_INVALID_CONFIG', 'attestationClientAuth needs the issuer (the PoP audience)')
      const s = await signer()
      const challenge = await ctx.attestationChallenge?.()
      const header = { typ: 'oauth-client-attestation-pop+jwt', alg: s.alg }
      const claims: Record<string, unknown> = { aud: ctx.issuer, jti: randomBytes(16).toString('base64url'), iat: ctx.now }
      if (challenge) claims.challenge = challenge
      ctx.headers['oauth-client-attestation'] = attestation
      ctx.headers['oauth-client-attestation-pop'] = await signJwt(s, header, claims)
    },
  }
}

/** A signer given as one, or imported from key material on first use (once). */
function lazySigner(key: DpopKeyInput | JwsSigner, alg: DpopAlg | undefined): () => Promise<JwsSigner> {
  const given = typeof key === 'object' && key !== null && 'publicJwk' in key && typeof (key as JwsSigner).sign === 'function'
  let signer: Promise<JwsSigner> | undefined
  return () => (signer ??= given ? Promise.resolve(key as JwsSigner) : importDpopKey(key as DpopKeyInput, alg ? { alg } : {}))
}

/** A compact JWS of `claims` under `header`, signed by `signer`. */
async function signJwt(signer: JwsSigner, header: object, claims: object): Promise<string> {
  const input = `${Buffer.from(JSON.stringify(header)).toString('base64url')}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}`
  return `${input}.${Buffer.from(await signer.sign(Buffer.from(input))).toString('base64url')}`
}
