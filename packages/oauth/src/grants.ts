import { BoundError, assertResourceIndicator, type Clock } from '@bound/core'
import { optionsChecker } from '@bound/core/internal'
import type { Dpop } from '@bound/dpop'
import type { TransportFetch } from '@bound/http'
import { z } from 'zod'
import { toTokenSource, type TokenSource } from './subject-token.js'

/**
 * What a grant contributes to a token request.
 *
 * @example
 * ```ts
 * const custom: Grant = {
 *   type: 'urn:example:grant', resource: undefined, scope: undefined, retryable: true,
 *   params(body: URLSearchParams, ctx: GrantContext) {
 *     body.set('grant_type', 'urn:example:grant')
 *     if (ctx.scope) body.set('scope', ctx.scope)
 *   },
 * }
 * ```
 */
export interface GrantContext {
  /** The resource (RFC 8707) the token is for, if any. */
  resource: string | undefined
  /** The scope asked for (space-separated), if any. */
  scope: string | undefined
  /** Extra parameters of this request (step-up `acr_values`, `claims`, …). */
  extra: Readonly<Record<string, string>>
  /** Seconds since the epoch. */
  now: number
  /**
   * Which HTTP attempt of this token request the body is for: 1, then 2 and on for the same
   * request sent again (a DPoP nonce, a clock correction, a grant that asked to retry).
   */
  attempt?: number
  /** The issuer of the authorization server the request goes to, when the session knows it. */
  issuer?: string | undefined
  /** The client id the request authenticates as. */
  clientId?: string
  /**
   * How the session reaches its servers, for a grant that makes requests of its own before it
   * can fill the body ({@link identityAssertionGrant} asks the enterprise IdP first).
   */
  transport?: GrantTransport
}

/**
 * The session's means of reaching a server, handed to a grant with each token request: the same
 * transport (trust anchors, proxy, client certificate), DPoP key and nonces, and clock the token
 * request itself uses.
 *
 * @example
 * ```ts
 * async function params(body: URLSearchParams, ctx: GrantContext) {
 *   const t: GrantTransport | undefined = ctx.transport
 *   const proof = await t?.dpop?.proof('POST', 'https://idp.example.com/token') // a request of the grant's own
 *   body.set('grant_type', 'urn:example:grant')
 * }
 * ```
 */
export interface GrantTransport {
  /** The session's fetch (its transport). */
  fetch: TransportFetch
  /** The session's DPoP state (key and nonces), when it has a key. */
  dpop: Dpop | undefined
  /** The session's clock. */
  clock: Clock
  /** The token request's timeout, in milliseconds. */
  timeoutMs: number
  /** Aborts the token request. */
  signal?: AbortSignal | undefined
}

/**
 * How a token is earned at the AS. Made by {@link clientCredentials}, {@link tokenExchange},
 * {@link jwtBearer} and {@link refreshToken}.
 *
 * @example
 * ```ts
 * const grant: Grant = clientCredentials({ resource: 'https://api.example.com', scope: 'orders:read' })
 * createSession({ …, grant })
 * ```
 */
export interface Grant {
  /** The `grant_type`. */
  readonly type: string
  /** The default `resource` (RFC 8707) for tokens of this grant. */
  readonly resource: string | undefined
  /** The default `scope` for tokens of this grant. */
  readonly scope: string | undefined
  /**
   * Whether a failed request may be retried (after back-off) or fall back to this grant after a
   * refresh token is refused. False for grants whose credential is single-use (JWT bearer).
   */
  readonly retryable: boolean
  /**
   * `'ignore'`: a refresh token the AS returns anyway is never used, so every new token runs the
   * grant again (for {@link identityAssertionGrant}: the IdP decides at every refresh). Default: used.
   */
  readonly refreshTokens?: 'use' | 'ignore'
  /** Adds the grant's parameters to the form body. */
  params(body: URLSearchParams, context: GrantContext): void | Promise<void>
  /**
   * Told when the AS refused a request of this grant for good (not a transient failure), with the
   * form body that was refused. Answering `'retry'` sends the request once more (a new body from
   * {@link Grant.params}): for a grant that holds a credential the AS may refuse on its second use
   * and can get a fresh one. At most one such retry per token request.
   */
  refused?(error: Error, request?: URLSearchParams): void | 'retry'
  /** Told when the AS answered a request of this grant with a token, with the form body it accepted. */
  succeeded?(request: URLSearchParams): void
  /**
   * Told when the session closes; with `revoke`, revokes (RFC 7009) what the grant itself holds at
   * the servers it talks to (e.g. the ID-JAGs of {@link identityAssertionGrant} at the IdP).
   */
  close?(options: { revoke: boolean; signal?: AbortSignal | undefined }): Promise<void>
}

/**
 * Options shared by grants.
 *
 * @example
 * ```ts
 * const options: GrantOptions = { resource: 'https://api.example.com', scope: 'orders:read orders:write' }
 * clientCredentials(options)
 * ```
 */
export interface GrantOptions {
  /** The resource indicator (RFC 8707) — usually the API's base URL, sent verbatim. */
  resource?: string
  /** Space-separated scopes. */
  scope?: string
}

/** A space-separated scope: printable, no control characters. */
const scopeRule = z.string().regex(/^[\x21\x23-\x5b\x5d-\x7e]+( [\x21\x23-\x5b\x5d-\x7e]+)*$/, 'must be space-separated scope tokens (RFC 6749 §3.3)').optional()
const source = z.custom<string | TokenSource>((v) => (typeof v === 'string' && v.length > 0) || typeof v === 'function', 'must be a non-empty string, fromFile(…), fromEnv(…) or a function')
const COMMON_RULES = { resource: z.string().optional(), scope: scopeRule }
const checkClientCredentials = optionsChecker('clientCredentials', { ...COMMON_RULES, audience: z.unknown().optional() })
const checkRefreshToken = optionsChecker('refreshToken', { ...COMMON_RULES, refreshToken: z.unknown().optional() })
const checkTokenExchange = optionsChecker('tokenExchange', {
  ...COMMON_RULES,
  subjectToken: source,
  subjectTokenType: z.string().min(1).optional(),
  actorToken: source.optional(),
  actorTokenType: z.string().min(1).optional(),
  requestedTokenType: z.string().min(1).optional(),
  audience: z.string().min(1).optional(),
})
const checkJwtBearer = optionsChecker('jwtBearer', { ...COMMON_RULES, assertion: source })

const checkResource = (resource: string | undefined) => {
  if (resource !== undefined) assertResourceIndicator(resource, 'resource')
}

const common = (body: URLSearchParams, ctx: GrantContext) => {
  if (ctx.scope) body.set('scope', ctx.scope)
  if (ctx.resource) body.set('resource', ctx.resource)
  for (const [k, v] of Object.entries(ctx.extra)) body.set(k, v)
}

/**
 * Options of {@link clientCredentials}.
 *
 * @example
 * ```ts
 * const options: ClientCredentialsOptions = { audience: 'https://api.example.com', scope: 'orders:read' } // an Auth0-style AS
 * clientCredentials(options)
 * ```
 */
export interface ClientCredentialsOptions extends GrantOptions {
  /**
   * The target API as an AS that does not take RFC 8707 `resource` names it (Auth0 and ASs like it
   * want its identifier as `audience`). Sent verbatim as the `audience` form parameter of every
   * token request of this grant, besides `resource` when that is set too. At most 2,048
   * characters, with no control characters and no leading or trailing whitespace (else
   * `ERR_INVALID_CONFIG`).
   */
  audience?: string
}

const MAX_AUDIENCE_LENGTH = 2048

function checkAudience(audience: unknown): void {
  if (audience === undefined) return
  if (typeof audience !== 'string' || audience.length === 0 || audience.length > MAX_AUDIENCE_LENGTH || audience.trim() !== audience || /[\u0000-\u001f\u007f]/.test(audience)) {
    throw new BoundError('ERR_INVALID_CONFIG', `clientCredentials(): audience must be a non-empty string of at most ${MAX_AUDIENCE_LENGTH} characters, without control characters or surrounding whitespace`)
  }
}

/**
 * The client credentials grant (RFC 6749 §4.4): the workload earns tokens with its own
 * credentials.
 *
 * @example
 * ```ts
 * createSession({ …, grant: clientCredentials({ resource: 'https://api.example.com', scope: 'orders:read' }) })
 * createSession({ …, grant: clientCredentials({ audience: 'https://api.example.com' }) }) // an AS that wants `audience`
 * ```
 */
export function clientCredentials(options: ClientCredentialsOptions = {}): Grant {
  checkClientCredentials(options)
  checkResource(options.resource)
  checkAudience(options.audience)
  const audience = options.audience
  return {
    type: 'client_credentials',
    resource: options.resource,
    scope: options.scope,
    retryable: true,
    params(body, ctx) {
      body.set('grant_type', 'client_credentials')
      if (audience !== undefined) body.set('audience', audience)
      common(body, ctx)
    },
  }
}

/**
 * Options of {@link refreshToken}.
 *
 * @example
 * ```ts
 * refreshToken({ refreshToken: await store.get('rt'), resource: 'https://api.example.com' })
 * ```
 */
export interface RefreshTokenGrantOptions extends GrantOptions {
  /** The refresh token the session starts with (e.g. from a user's sign-in). */
  refreshToken: string
}

/**
 * The refresh token grant (RFC 6749 §6) for a session that starts from a refresh token. Rotated
 * refresh tokens are kept by the session; the old one is never sent again.
 *
 * @example
 * ```ts
 * createSession({ …, grant: refreshToken({ refreshToken: stored, resource }) })
 * ```
 */
export function refreshToken(options: RefreshTokenGrantOptions): Grant & { readonly initialRefreshToken: string } {
  checkRefreshToken(options)
  checkResource(options.resource)
  if (typeof options.refreshToken !== 'string' || options.refreshToken.length === 0) throw new BoundError('ERR_INVALID_CONFIG', 'refreshToken() needs a refresh token')
  return {
    type: 'refresh_token',
    resource: options.resource,
    scope: options.scope,
    retryable: true,
    initialRefreshToken: options.refreshToken,
    params(body, ctx) {
      // The session substitutes the current (rotated) refresh token; see refreshWith().
      body.set('grant_type', 'refresh_token')
      common(body, ctx)
    },
  }
}

/** The `grant_type=refresh_token` parameters for a held refresh token. */
export function refreshWith(token: string, base: { resource: string | undefined; scope: string | undefined }): Grant {
  return {
    type: 'refresh_token',
    resource: base.resource,
    scope: base.scope,
    retryable: true,
    params(body, ctx) {
      body.set('grant_type', 'refresh_token')
      body.set('refresh_token', token)
      common(body, ctx)
    },
  }
}

/**
 * The RFC 8693 token type identifiers Bound names.
 *
 * @example
 * ```ts
 * tokenExchange({ subjectToken: fromFile(idTokenPath), subjectTokenType: TOKEN_TYPES.idToken, resource })
 * ```
 */
export const TOKEN_TYPES = Object.freeze({
  jwt: 'urn:ietf:params:oauth:token-type:jwt',
  idToken: 'urn:ietf:params:oauth:token-type:id_token',
  accessToken: 'urn:ietf:params:oauth:token-type:access_token',
  refreshToken: 'urn:ietf:params:oauth:token-type:refresh_token',
  /** A SAML 2.0 assertion (RFC 8693 §3), e.g. the subject token of an ID-JAG request. */
  saml2: 'urn:ietf:params:oauth:token-type:saml2',
  /** An Identity Assertion JWT Authorization Grant (draft-ietf-oauth-identity-assertion-authz-grant). */
  idJag: 'urn:ietf:params:oauth:token-type:id-jag',
})

/**
 * Options of {@link tokenExchange}.
 *
 * @example
 * ```ts
 * tokenExchange({ subjectToken: fromEnv('CI_JOB_JWT'), actorToken: fromFile('/run/agent-token'), audience: 'deploy-api', scope: 'deploy' })
 * ```
 */
export interface TokenExchangeOptions extends GrantOptions {
  /** The subject token: a string, `fromFile(path)`, `fromEnv(name)` or a callback; read on every exchange. */
  subjectToken: string | TokenSource
  /** Its type. Default `urn:ietf:params:oauth:token-type:jwt`. */
  subjectTokenType?: string
  /** An actor token (delegation), optional. */
  actorToken?: string | TokenSource
  /** Its type. Default `urn:ietf:params:oauth:token-type:jwt`. */
  actorTokenType?: string
  /** `requested_token_type`, optional. */
  requestedTokenType?: string
  /** `audience` (logical name of the target service), optional. */
  audience?: string
}

/**
 * RFC 8693 token exchange: trade a workload identity token (a Kubernetes projected
 * service-account token, a CI job's OIDC token…) for a bound API token.
 *
 * One subject per session: the session caches tokens per resource, scope and step-up level, not
 * per subject token, so a source that starts yielding another subject's token (not a rotation of
 * the same identity) would be served the previous subject's cached token until it is refreshed.
 * To act for several subjects, make one session (and one grant) for each.
 *
 * @example
 * ```ts
 * createSession({ …, grant: tokenExchange({ subjectToken: fromFile('/var/run/secrets/tokens/bound'), resource }) })
 * ```
 */
export function tokenExchange(options: TokenExchangeOptions): Grant {
  checkTokenExchange(options)
  checkResource(options.resource)
  const subject = toTokenSource(options.subjectToken, 'The subject token')
  const actor = options.actorToken === undefined ? undefined : toTokenSource(options.actorToken, 'The actor token')
  return {
    type: 'urn:ietf:params:oauth:grant-type:token-exchange',
    resource: options.resource,
    scope: options.scope,
    retryable: true,
    async params(body, ctx) {
      body.set('grant_type', 'urn:ietf:params:oauth:grant-type:token-exchange')
      body.set('subject_token', await subject())
      body.set('subject_token_type', options.subjectTokenType ?? TOKEN_TYPES.jwt)
      if (actor) {
        body.set('actor_token', await actor())
        body.set('actor_token_type', options.actorTokenType ?? TOKEN_TYPES.jwt)
      }
      if (options.requestedTokenType) body.set('requested_token_type', options.requestedTokenType)
      if (options.audience) body.set('audience', options.audience)
      common(body, ctx)
    },
  }
}

/**
 * Options of {@link jwtBearer}.
 *
 * @example
 * ```ts
 * jwtBearer({ assertion: fromFile('/var/run/secrets/tokens/federated'), resource: 'https://api.example.com' })
 * ```
 */
export interface JwtBearerOptions extends GrantOptions {
  /** The assertion JWT: a string, `fromFile(path)`, `fromEnv(name)` or a callback; read on every request. */
  assertion: string | TokenSource
}

/**
 * The RFC 7523 JWT bearer grant: a JWT from a trusted issuer (workload identity federation) is the
 * grant. Its assertion is usually single-use, so a failed request is not retried with it.
 *
 * @example
 * ```ts
 * createSession({ …, grant: jwtBearer({ assertion: fromEnv('WORKLOAD_JWT'), resource }) })
 * ```
 */
export function jwtBearer(options: JwtBearerOptions): Grant {
  checkJwtBearer(options)
  checkResource(options.resource)
  const assertion = toTokenSource(options.assertion, 'The JWT bearer assertion')
  let lastSent: string | undefined
  let refusal: { assertion: string; error: Error } | undefined
  return {
    type: 'urn:ietf:params:oauth:grant-type:jwt-bearer',
    resource: options.resource,
    scope: options.scope,
    retryable: false,
    async params(body, ctx) {
      const value = await assertion()
      // JWTA-05: an assertion the AS refused is never sent again; a new one (rotated file, new env) is
      if (refusal && refusal.assertion === value) throw refusal.error
      lastSent = value
      body.set('grant_type', 'urn:ietf:params:oauth:grant-type:jwt-bearer')
      body.set('assertion', value)
      common(body, ctx)
    },
    refused(error) {
      if (lastSent !== undefined) refusal = { assertion: lastSent, error }
    },
  }
}

/**
 * The CIBA grant (OpenID CIBA §10.1, poll mode): redeems an `auth_req_id` once the user approved.
 * Used through `session.requestToken(ciba(authReqId))` — see `cibaStepUp` in `@bound/fetch`.
 *
 * @example
 * ```ts
 * const tokens = await session.requestToken(ciba(authReqId))
 * ```
 */
export function ciba(authReqId: string, options: GrantOptions = {}): Grant {
  return {
    type: 'urn:openid:params:grant-type:ciba',
    resource: options.resource,
    scope: options.scope,
    retryable: false,
    params(body, ctx) {
      body.set('grant_type', 'urn:openid:params:grant-type:ciba')
      body.set('auth_req_id', authReqId)
      if (ctx.resource) body.set('resource', ctx.resource)
    },
  }
}
