/// <reference path="./oidc-provider.d.ts" />
import { randomBytes } from 'node:crypto'
import type { JWTPayload } from 'jose'
import {
  errors,
  type ClientCredentialsToken,
  type GrantHandler,
  type OidcClient,
  type OidcKoaContext,
  type Provider,
} from 'oidc-provider'
import {
  buildTokenResponse,
  checkDpopReplay,
  checkDpopRequired,
  checkMtlsCert,
  resolveRequestedResources,
  validateClientScope,
  validateDpop,
  type DpopValidation,
} from 'oidc-provider/lib/helpers/grants.js'
import instance from 'oidc-provider/lib/helpers/weak_cache.js'
import { TOKEN_TYPE_ID_JAG, type IdJagAcceptance, type IdJagIssuer } from './identity-assertion.js'
import type { WorkloadIdentityIssuer } from './workload-identity.js'

/**
 * RFC 8693 token exchange grant type.
 *
 * @example
 * ```ts
 * expect(kit.as.counters().byGrant[GRANT_TYPE_TOKEN_EXCHANGE]).toBe(1)
 * ```
 */
export const GRANT_TYPE_TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange'
/**
 * RFC 7523 JWT bearer grant type.
 *
 * @example
 * ```ts
 * expect(kit.as.counters().byGrant[GRANT_TYPE_JWT_BEARER]).toBe(1)
 * ```
 */
export const GRANT_TYPE_JWT_BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer'
/**
 * RFC 8693 token type of an access token (the `issued_token_type` of token exchange).
 *
 * @example
 * ```ts
 * expect(tokenResponse.issued_token_type).toBe(TOKEN_TYPE_ACCESS_TOKEN)
 * ```
 */
export const TOKEN_TYPE_ACCESS_TOKEN = 'urn:ietf:params:oauth:token-type:access_token'
/**
 * RFC 8693 token type of a JWT (accepted `subject_token_type`).
 *
 * @example
 * ```ts
 * tokenExchange({ subjectToken, subjectTokenType: TOKEN_TYPE_JWT, resource: kit.resource })
 * ```
 */
export const TOKEN_TYPE_JWT = 'urn:ietf:params:oauth:token-type:jwt'
/**
 * RFC 8693 token type of an ID token (accepted `subject_token_type`).
 *
 * @example
 * ```ts
 * tokenExchange({ subjectToken: idToken, subjectTokenType: TOKEN_TYPE_ID_TOKEN, resource: kit.resource })
 * ```
 */
export const TOKEN_TYPE_ID_TOKEN = 'urn:ietf:params:oauth:token-type:id_token'

const SUBJECT_TOKEN_TYPES = new Set([TOKEN_TYPE_JWT, TOKEN_TYPE_ID_TOKEN])
const REFRESH_TOKEN_PREFIX = 'tkrt_'
const STORE_PRUNE_THRESHOLD = 10_000
const FAMILY_ACCESS_TOKENS_LIMIT = 100
const USED_ASSERTIONS_LIMIT = 100_000

/**
 * Why access tokens were revoked (see {@link AccessTokenRevocation}).
 *
 * @example
 * ```ts
 * kit.as.onAccessTokenRevoked(({ reason }: { reason: RevocationReason }) => console.log(reason)) // e.g. 'refresh_token_reuse'
 * ```
 */
export type RevocationReason = 'revocation_endpoint' | 'refresh_token_revoked' | 'refresh_token_reuse'

/**
 * An access token the authorization server revoked; resource servers subscribe to these.
 *
 * @example
 * ```ts
 * const off = kit.as.onAccessTokenRevoked((r: AccessTokenRevocation) => revoked.add(r.jti))
 * ```
 */
export interface AccessTokenRevocation {
  /** The access token's `jti`. */
  jti: string
  /** Its `client_id`. */
  clientId?: string
  /** Its `exp` (seconds), when known. */
  exp?: number
  reason: RevocationReason
}

interface RefreshFamily {
  id: string
  clientId: string
  sub: string
  gty: string
  /** Scope granted to the family (what was requested, `offline_access` included). */
  scope: string
  /** The resource indicator the access tokens are for. */
  resource: string | undefined
  /** Public clients only: the DPoP key the refresh token is bound to. */
  jkt: string | undefined
  /** The first access token was DPoP-bound: refreshing needs a DPoP proof. */
  dpop: boolean
  /** Claims added at issuance (the step-up stand-in), carried into refreshed tokens. */
  extra: Record<string, unknown> | undefined
  expiresAt: number
  revoked: boolean
  accessTokens: Array<{ jti: string; exp?: number }>
}

interface RefreshEntry {
  familyId: string
  consumed: boolean
}

/** What the grants need from the authorization server. */
export interface GrantDependencies {
  provider: Provider
  issuer: string
  workloadIdentity: WorkloadIdentityIssuer
  /** Absolute lifetime of a refresh token family, seconds. */
  refreshTokenTtlSeconds: number
  /** oidc-provider `getResourceServerInfo` result for a resource indicator (throws invalid_target). */
  resourceServerInfo(resource: string): Record<string, unknown>
  /** Claims the AS adds to tokens of this request (the step-up stand-in). */
  extraClaims(ctx: OidcKoaContext): Record<string, unknown> | undefined
  /** Claim overrides applied by the JWT access token customizer. */
  tokenOverrides: WeakMap<object, Record<string, unknown>>
  onRefreshReuse(): void
  revokeAccessTokens(revocations: AccessTokenRevocation[]): void
  /** Enterprise-IdP mode: answers token exchanges that ask for an ID-JAG. */
  idJagIssuer?: IdJagIssuer
  /** Accepts ID-JAGs from trusted IdPs as JWT bearer assertions. */
  idJagAcceptance?: IdJagAcceptance
  /** Told when an ID-JAG was redeemed for an access token. */
  onIdJagRedeemed?(): void
}

/** The testkit's own refresh tokens (issued by the token exchange and JWT bearer grants). */
export interface RefreshTokenStore {
  /** Whether the value is a refresh token of this store (active or not). */
  has(value: string): boolean
  /**
   * Revokes the token's family (and its access tokens) for the revocation endpoint. Returns
   * `'not_found'`, `'client_mismatch'` or `'revoked'`.
   */
  revoke(value: string, clientId: string): 'not_found' | 'client_mismatch' | 'revoked'
}

function firstString(value: unknown): string | undefined {
  if (typeof value === 'string') return value
  if (Array.isArray(value) && typeof value[0] === 'string') return value[0]
  return undefined
}

function requireParam(ctx: OidcKoaContext, name: string): string {
  const value = firstString(ctx.oidc?.params?.[name])
  if (value === undefined || value === '') throw new errors.InvalidRequest(`missing required parameter '${name}'`)
  return value
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}

function oidcOf(ctx: OidcKoaContext): { client: OidcClient; params: Record<string, unknown> } {
  const client = ctx.oidc?.client
  const params = ctx.oidc?.params
  if (client === undefined || params === undefined) throw new Error('grant handler called without an authenticated client')
  return { client, params }
}

/**
 * Registers the RFC 8693 token exchange and RFC 7523 JWT bearer grants, and wraps the
 * `refresh_token` grant so that the testkit's own refresh tokens (issued by those two grants)
 * rotate with reuse detection, while any other refresh token still goes to oidc-provider.
 *
 * Access tokens are minted the way oidc-provider's client credentials grant mints them (a
 * `ClientCredentials` model with the resource server info: same format, TTL, DPoP `cnf.jkt`
 * with oidc-provider's nonce and replay rules, `cnf.x5t#S256` for certificate-bound clients),
 * with `sub` set to the workload identity's subject.
 */
export function installGrants(deps: GrantDependencies): RefreshTokenStore {
  const { provider, issuer, workloadIdentity, tokenOverrides } = deps
  const tokens = new Map<string, RefreshEntry>()
  const families = new Map<string, RefreshFamily>()
  const usedAssertions = new Map<string, number>()

  const prune = (): void => {
    const now = Date.now()
    if (tokens.size > STORE_PRUNE_THRESHOLD) {
      for (const [value, entry] of tokens) {
        const family = families.get(entry.familyId)
        if (family === undefined || family.expiresAt <= now) tokens.delete(value)
      }
      for (const [id, family] of families) if (family.expiresAt <= now) families.delete(id)
    }
    if (usedAssertions.size > USED_ASSERTIONS_LIMIT / 2) {
      for (const [key, exp] of usedAssertions) if (exp * 1000 <= now) usedAssertions.delete(key)
    }
  }

  const newRefreshToken = (family: RefreshFamily): string => {
    const value = `${REFRESH_TOKEN_PREFIX}${randomBytes(32).toString('base64url')}`
    tokens.set(value, { familyId: family.id, consumed: false })
    return value
  }

  const revokeFamily = (family: RefreshFamily, reason: RevocationReason): void => {
    if (!family.revoked) family.revoked = true
    const now = Math.floor(Date.now() / 1000)
    const live = family.accessTokens.filter((token) => token.exp === undefined || token.exp > now)
    family.accessTokens = []
    if (live.length > 0) {
      deps.revokeAccessTokens(live.map((token) => ({
        jti: token.jti,
        clientId: family.clientId,
        ...(token.exp === undefined ? {} : { exp: token.exp }),
        reason,
      })))
    }
  }

  const rememberAccessToken = (family: RefreshFamily, token: ClientCredentialsToken): void => {
    if (token.jti === undefined) return
    family.accessTokens.push({ jti: token.jti, ...(token.exp === undefined ? {} : { exp: token.exp }) })
    if (family.accessTokens.length > FAMILY_ACCESS_TOKENS_LIMIT) family.accessTokens.shift()
  }

  /** Applies the DPoP and mTLS bindings exactly like oidc-provider's client credentials grant. */
  const bind = async (ctx: OidcKoaContext, client: OidcClient, token: ClientCredentialsToken, dPoP: DpopValidation | undefined): Promise<void> => {
    const cert = checkMtlsCert(provider, ctx)
    if (cert) token.setThumbprint('x5t', cert)
    if (dPoP) {
      await checkDpopReplay(provider, ctx, dPoP, client.clientId)
      token.setThumbprint('jkt', dPoP.thumbprint)
    }
    checkDpopRequired(provider, ctx, dPoP)
  }

  /**
   * Mints an access token for the token exchange and JWT bearer grants (mirrors
   * lib/actions/grants/client_credentials.js), and a refresh token when `offline_access` was asked.
   */
  const issue = async (
    ctx: OidcKoaContext,
    options: { dPoP: DpopValidation | undefined; subject: JWTPayload; gty: string; commit?: () => void },
  ): Promise<void> => {
    const { client } = oidcOf(ctx)
    const resourceServers = await resolveRequestedResources(provider, ctx)
    const requested = validateClientScope(provider, ctx)
    const scopes = [...requested]
    const token = new provider.ClientCredentials({ client, scope: scopes.join(' ') || undefined })
    const [resourceServer] = resourceServers
    if (resourceServer !== undefined) {
      if (resourceServers.length !== 1) {
        throw new errors.InvalidTarget('only a single resource indicator value is supported for this grant type')
      }
      token.resourceServer = resourceServer
      token.scope = scopes.filter((scope) => resourceServer.scopes.has(scope)).join(' ') || undefined
    }
    await bind(ctx, client, token, options.dPoP)

    options.commit?.()
    const sub = String(options.subject.sub)
    tokenOverrides.set(token, { sub })
    ctx.oidc?.entity('ClientCredentials', token)
    const accessToken = await token.save()

    let refreshToken: string | undefined
    if (requested.has('offline_access') && client.grantTypeAllowed('refresh_token')) {
      prune()
      const family: RefreshFamily = {
        id: randomBytes(12).toString('base64url'),
        clientId: client.clientId,
        sub,
        gty: options.gty,
        scope: scopes.join(' '),
        resource: resourceServer?.identifier(),
        jkt: client.clientAuthMethod === 'none' ? token.jkt : undefined,
        dpop: token.jkt !== undefined,
        extra: deps.extraClaims(ctx),
        expiresAt: Date.now() + deps.refreshTokenTtlSeconds * 1000,
        revoked: false,
        accessTokens: [],
      }
      families.set(family.id, family)
      rememberAccessToken(family, token)
      refreshToken = newRefreshToken(family)
    }

    ctx.body = buildTokenResponse(provider, {
      accessToken,
      expiresIn: token.expiration,
      scope: token.scope || undefined,
      tokenType: token.tokenType,
      refreshToken,
      issuedTokenType: options.gty === GRANT_TYPE_TOKEN_EXCHANGE ? TOKEN_TYPE_ACCESS_TOKEN : undefined,
    })
  }

  const tokenExchange: GrantHandler = async (ctx) => {
    const { params } = oidcOf(ctx)
    // The DPoP proof first, so that use_dpop_nonce comes before anything else (as in the built-in grants).
    const dPoP = await validateDpop(provider, ctx)
    const subjectToken = requireParam(ctx, 'subject_token')
    const subjectTokenType = requireParam(ctx, 'subject_token_type')
    if (!SUBJECT_TOKEN_TYPES.has(subjectTokenType)) {
      throw new errors.InvalidRequest(`unsupported subject_token_type (use ${TOKEN_TYPE_JWT} or ${TOKEN_TYPE_ID_TOKEN})`)
    }
    if (params['actor_token'] !== undefined || params['actor_token_type'] !== undefined) {
      throw new errors.InvalidRequest('actor_token (delegation) is not supported')
    }
    const requestedTokenType = firstString(params['requested_token_type'])
    if (requestedTokenType === TOKEN_TYPE_ID_JAG && deps.idJagIssuer !== undefined) {
      await deps.idJagIssuer.handle(ctx, oidcOf(ctx).client, dPoP)
      return
    }
    if (requestedTokenType !== undefined && requestedTokenType !== TOKEN_TYPE_ACCESS_TOKEN) {
      throw new errors.InvalidRequest(`unsupported requested_token_type (only ${TOKEN_TYPE_ACCESS_TOKEN})`)
    }
    // RFC 8693 `audience`: the testkit's resources are named by their audience, so it stands for `resource`.
    if (params['audience'] !== undefined && params['resource'] === undefined) params['resource'] = params['audience']

    let subject: JWTPayload
    try {
      subject = await workloadIdentity.verify(subjectToken, { audience: issuer })
    } catch (error) {
      throw new errors.InvalidGrant(`invalid subject_token: ${message(error)}`)
    }
    await issue(ctx, { dPoP, subject, gty: GRANT_TYPE_TOKEN_EXCHANGE })
  }

  /** Consumes an assertion's `jti` (single use); called once every other check passed (a use_dpop_nonce retry may resend it). */
  const consume = (key: string, subject: JWTPayload, what: string) => () => {
    if (usedAssertions.has(key)) {
      // (the reason is told for ID-JAGs; a workload assertion's refusal keeps oidc-provider's generic description)
      const error = new errors.InvalidGrant(`${what} jti was already used`)
      throw what === 'ID-JAG' ? Object.assign(error, { error_description: 'ID-JAG jti was already used' }) : error
    }
    prune()
    usedAssertions.set(key, typeof subject.exp === 'number' ? subject.exp : Math.floor(Date.now() / 1000) + 3600)
  }

  const jwtBearer: GrantHandler = async (ctx) => {
    const dPoP = await validateDpop(provider, ctx)
    const assertion = requireParam(ctx, 'assertion')
    if (deps.idJagAcceptance?.applies(assertion)) {
      // an Identity Assertion JWT Authorization Grant from a trusted enterprise IdP
      const { subject, replayKey } = await deps.idJagAcceptance.verify(ctx, oidcOf(ctx).client, assertion, dPoP)
      if (replayKey !== undefined && usedAssertions.has(replayKey)) consume(replayKey, subject, 'ID-JAG')()
      const commit = replayKey === undefined ? undefined : consume(replayKey, subject, 'ID-JAG')
      await issue(ctx, { dPoP, subject, gty: GRANT_TYPE_JWT_BEARER, commit: () => {
        commit?.()
        deps.onIdJagRedeemed?.()
      } })
      return
    }
    let subject: JWTPayload
    try {
      subject = await workloadIdentity.verify(assertion, { audience: issuer, requiredClaims: ['jti'] })
    } catch (error) {
      throw new errors.InvalidGrant(`invalid assertion: ${message(error)}`)
    }
    const key = `${String(subject.iss)} ${String(subject.jti)}`
    if (usedAssertions.has(key)) throw new errors.InvalidGrant('assertion jti was already used')
    await issue(ctx, { dPoP, subject, gty: GRANT_TYPE_JWT_BEARER, commit: consume(key, subject, 'assertion') })
  }

  const originalRefresh = instance(provider).grantTypeHandlers.get('refresh_token')

  const refresh: GrantHandler = async (ctx) => {
    const { client, params } = oidcOf(ctx)
    const value = firstString(params['refresh_token'])
    const entry = value === undefined ? undefined : tokens.get(value)
    if (entry === undefined) {
      if (originalRefresh !== undefined) return originalRefresh(ctx)
      requireParam(ctx, 'refresh_token')
      throw new errors.InvalidGrant('refresh token not found')
    }
    const dPoP = await validateDpop(provider, ctx)
    const family = families.get(entry.familyId)
    if (family === undefined) throw new errors.InvalidGrant('refresh token not found')
    if (family.clientId !== client.clientId) throw new errors.InvalidGrant('client mismatch')
    if (family.revoked) throw new errors.InvalidGrant('refresh token was revoked')
    if (Date.now() >= family.expiresAt) throw new errors.InvalidGrant('refresh token is expired')
    const reuse = (): never => {
      revokeFamily(family, 'refresh_token_reuse')
      deps.onRefreshReuse()
      throw new errors.InvalidGrant('refresh token already used: reuse detected, the token family is revoked')
    }
    if (entry.consumed) reuse()

    if (family.dpop && !dPoP) throw new errors.InvalidGrant('DPoP proof JWT not provided (the refresh token was issued with DPoP)')
    if (family.jkt !== undefined && dPoP?.thumbprint !== family.jkt) throw new errors.InvalidGrant('failed jkt verification')

    const familyScopes = new Set(family.scope.split(' ').filter((scope) => scope !== ''))
    const requestedScope = firstString(params['scope'])
    let scopes = [...familyScopes]
    if (requestedScope !== undefined && requestedScope !== '') {
      scopes = requestedScope.split(' ').filter((scope) => scope !== '')
      const missing = scopes.filter((scope) => !familyScopes.has(scope))
      if (missing.length > 0) throw new errors.InvalidScope(`refresh token missing requested scope`, missing.join(' '))
    }
    const requestedResource = params['resource']
    if (requestedResource !== undefined) {
      const resources = Array.isArray(requestedResource) ? requestedResource : [requestedResource]
      if (resources.length !== 1 || resources[0] !== family.resource) {
        throw new errors.InvalidTarget('the refresh token was not issued for the requested resource')
      }
    }

    const token = new provider.ClientCredentials({ client, scope: scopes.join(' ') || undefined })
    if (family.resource !== undefined) {
      const resourceServer = new provider.ResourceServer(family.resource, deps.resourceServerInfo(family.resource))
      token.resourceServer = resourceServer
      token.scope = scopes.filter((scope) => resourceServer.scopes.has(scope)).join(' ') || undefined
    }
    await bind(ctx, client, token, dPoP)

    // Rotation, synchronously with the last check: a concurrent use of the same token is a reuse.
    if (entry.consumed || family.revoked) reuse()
    entry.consumed = true
    const refreshToken = newRefreshToken(family)

    tokenOverrides.set(token, { sub: family.sub, ...family.extra })
    ctx.oidc?.entity('ClientCredentials', token)
    const accessToken = await token.save()
    rememberAccessToken(family, token)

    ctx.body = buildTokenResponse(provider, {
      accessToken,
      expiresIn: token.expiration,
      scope: token.scope || undefined,
      tokenType: token.tokenType,
      refreshToken,
    })
  }

  provider.registerGrantType(
    GRANT_TYPE_TOKEN_EXCHANGE,
    tokenExchange,
    ['subject_token', 'subject_token_type', 'actor_token', 'actor_token_type', 'requested_token_type', 'audience', 'resource', 'scope'],
    ['resource', 'audience'],
  )
  provider.registerGrantType(GRANT_TYPE_JWT_BEARER, jwtBearer, ['assertion', 'resource', 'scope'], ['resource'])
  provider.registerGrantType('refresh_token', refresh, ['refresh_token', 'resource', 'scope'], ['resource'])

  return {
    has: (value) => tokens.has(value),
    revoke(value, clientId) {
      const entry = tokens.get(value)
      const family = entry === undefined ? undefined : families.get(entry.familyId)
      if (family === undefined) return 'not_found'
      if (family.clientId !== clientId) return 'client_mismatch'
      revokeFamily(family, 'refresh_token_revoked')
      return 'revoked'
    },
  }
}
