/// <reference path="./oidc-provider.d.ts" />
import { randomUUID, type KeyObject } from 'node:crypto'
import { decodeProtectedHeader, jwtVerify, SignJWT, type JWTPayload, type JWTVerifyGetKey } from 'jose'
import { errors, type OidcClient, type OidcKoaContext, type Provider, type ProviderError } from 'oidc-provider'
import { checkDpopReplay, type DpopValidation } from 'oidc-provider/lib/helpers/grants.js'
import { createJwksSource, type JwksSource } from './jwks-source.js'

/**
 * RFC 8693 token type of an Identity Assertion JWT Authorization Grant (ID-JAG,
 * draft-ietf-oauth-identity-assertion-authz-grant): the `requested_token_type` that asks the
 * testkit IdP for one, and the `issued_token_type` of its answer.
 *
 * @example
 * ```ts
 * expect(kit.idp!.issued()[0]).toMatchObject({ aud: kit.issuer })
 * ```
 */
export const TOKEN_TYPE_ID_JAG = 'urn:ietf:params:oauth:token-type:id-jag'

/**
 * The JOSE `typ` of an ID-JAG.
 *
 * @example
 * ```ts
 * expect(decodeProtectedHeader(idJag).typ).toBe(ID_JAG_TYP)
 * ```
 */
export const ID_JAG_TYP = 'oauth-id-jag+jwt'

/**
 * An app the enterprise IdP lets act for its users at another authorization server: the IdP's
 * client `clientId` may get ID-JAGs for `audience`, naming `clientIdAtAudience` as their
 * `client_id` (the same agent's registration there, draft §5).
 *
 * @example
 * ```ts
 * kit.idp!.allowApp({ clientId: kit.idp!.clients.privateKeyJwt.clientId, audience: kit.issuer, clientIdAtAudience: kit.clients.dpopRequired.clientId, scope: 'orders:read' })
 * ```
 */
export interface IdJagApp {
  /** The agent's client id at the IdP (the one that authenticates the token exchange). */
  clientId: string
  /** The resource authorization server's issuer (the ID-JAG's `aud`). */
  audience: string
  /** The agent's client id at that authorization server (the ID-JAG's `client_id`). */
  clientIdAtAudience: string
  /** Space-separated scopes the app may get there; default whatever is asked. */
  scope?: string
  /** Resources it may name there; default any. */
  resources?: string[]
}

/**
 * Options of {@link IdentityProvider.mintIdToken}.
 *
 * @example
 * ```ts
 * const expired = await kit.idp!.mintIdToken({ sub: 'alice', ttlSeconds: -60 })
 * ```
 */
export interface IdTokenOptions {
  /** The user; default `alice@acme.example`. */
  sub?: string
  /** The IdP client the ID token is for (its `aud`); default the default app's client. */
  clientId?: string
  /** Lifetime in seconds; default 3600. Zero or negative gives an expired token. */
  ttlSeconds?: number
  /** Extra claims, merged last. */
  claims?: Record<string, unknown>
}

/**
 * An ID-JAG the testkit IdP issued (what it knows of it; never the token itself).
 *
 * @example
 * ```ts
 * const [first]: IssuedIdJag[] = kit.idp!.issued()
 * expect(first?.jkt).toBe(session.dpop?.jkt)
 * ```
 */
export interface IssuedIdJag {
  jti: string
  sub: string
  aud: string
  /** The `client_id` claim (the agent at the audience). */
  clientId: string
  /** The IdP client that asked for it. */
  idpClientId: string
  resource: string | undefined
  scope: string | undefined
  /** `cnf.jkt`, when the request carried a DPoP proof. */
  jkt: string | undefined
  /** Seconds since the epoch. */
  exp: number
  /** Revoked at the IdP's revocation endpoint. */
  revoked: boolean
}

/**
 * The testkit authorization server's enterprise-IdP controls (`kit.idp`): who may get ID-JAGs, and
 * what it issued.
 *
 * @example
 * ```ts
 * const control: IdJagIssuerControl = kit.idp!
 * control.refuseApp(kit.idp!.clients.secretPost.clientId) // access_denied from now on
 * ```
 */
export interface IdJagIssuerControl {
  /** Lets an app act for users at an audience (replaces its earlier registration for that audience). */
  allowApp(app: IdJagApp): void
  /** Refuses an IdP client from now on (`access_denied`), for every audience, until {@link allowApp}. */
  refuseApp(clientId: string): void
  /** Stops issuing ID-JAGs altogether (`access_denied`). */
  stopIssuing(): void
  /** Issues again after {@link stopIssuing}. */
  resumeIssuing(): void
  /** Lifetime of the ID-JAGs issued from now on, in seconds. */
  setIdJagTtlSeconds(seconds: number): void
  /** The ID-JAGs issued so far (the last 1,000), oldest first. */
  issued(): IssuedIdJag[]
  /** Whether the IdP revoked the ID-JAG with this `jti` (its revocation endpoint). */
  isRevoked(jti: string): boolean
  /** Signs an OpenID Connect ID token of a user for an IdP client: the subject token of an ID-JAG request. */
  mintIdToken(options?: IdTokenOptions): Promise<string>
  /** The app registered first (what `startTestkit({ idp })` sets up), if any. */
  readonly defaultApp: IdJagApp | undefined
}

/** What the IdP side needs from its authorization server. */
export interface IdJagIssuerDeps {
  provider: Provider
  issuer: string
  signingKey: KeyObject
  kid: string
  verifyOwn: JWTVerifyGetKey
  ttlSeconds: number
  onIssued(): void
}

const DEFAULT_USER = 'alice@acme.example'
const MAX_ISSUED = 1_000

function firstString(value: unknown): string | undefined {
  if (typeof value === 'string') return value
  if (Array.isArray(value) && typeof value[0] === 'string') return value[0]
  return undefined
}

/** An OAuth error whose description the client sees (the testkit tells its reasons). */
function refusal(kind: 'invalid_grant' | 'access_denied' | 'invalid_target' | 'invalid_scope' | 'invalid_request', description: string): ProviderError {
  const error = kind === 'invalid_grant' ? new errors.InvalidGrant(description)
    : kind === 'access_denied' ? new errors.AccessDenied(description)
    : kind === 'invalid_target' ? new errors.InvalidTarget(description)
    : kind === 'invalid_scope' ? new errors.InvalidScope(description)
    : new errors.InvalidRequest(description)
  return Object.assign(error, { error_description: description })
}

/**
 * The enterprise IdP's side: RFC 8693 token exchange with `requested_token_type` id-jag. Verifies
 * the subject token (an ID token this IdP signed, `aud` = the authenticated client), applies the
 * app policy, and signs an ID-JAG (`typ` oauth-id-jag+jwt; `iss`, `sub`, `aud`, `client_id`,
 * `jti`, `iat`, `exp`, `resource`, `scope`, and `cnf.jkt` when the request carried a DPoP proof).
 */
export function createIdJagIssuer(deps: IdJagIssuerDeps) {
  const { provider, issuer } = deps
  const apps = new Map<string, IdJagApp>()
  const refused = new Set<string>()
  const issued: IssuedIdJag[] = []
  let issuing = true
  let ttlSeconds = deps.ttlSeconds
  let defaultApp: IdJagApp | undefined
  const appKey = (clientId: string, audience: string) => `${clientId}\u0000${audience}`

  const sign = (header: Record<string, unknown>, payload: JWTPayload, exp: number) =>
    new SignJWT(payload).setProtectedHeader({ alg: 'ES256', kid: deps.kid, ...header }).setIssuer(issuer).setIssuedAt().setExpirationTime(exp).sign(deps.signingKey)

  const control: IdJagIssuerControl = {
    allowApp(app) {
      apps.set(appKey(app.clientId, app.audience), structuredClone(app))
      refused.delete(app.clientId)
      defaultApp ??= structuredClone(app)
    },
    refuseApp: (clientId) => void refused.add(clientId),
    stopIssuing: () => void (issuing = false),
    resumeIssuing: () => void (issuing = true),
    setIdJagTtlSeconds(seconds) {
      if (!Number.isInteger(seconds) || seconds < 1) throw new TypeError('setIdJagTtlSeconds: a whole number of seconds, at least 1')
      ttlSeconds = seconds
    },
    issued: () => structuredClone(issued),
    isRevoked: (jti) => issued.some((i) => i.jti === jti && i.revoked),
    async mintIdToken(options = {}) {
      const now = Math.floor(Date.now() / 1000)
      const clientId = options.clientId ?? defaultApp?.clientId
      if (clientId === undefined) throw new TypeError('mintIdToken: no clientId and no app registered')
      const ttl = options.ttlSeconds ?? 3600
      return sign({ typ: 'JWT' }, { sub: options.sub ?? DEFAULT_USER, aud: clientId, auth_time: now, ...options.claims }, now + ttl)
    },
    get defaultApp() {
      return defaultApp === undefined ? undefined : structuredClone(defaultApp)
    },
  }

  /** Answers a token exchange that asks for an ID-JAG (the grant handler hands it over). */
  const handle = async (ctx: OidcKoaContext, client: OidcClient, dPoP: DpopValidation | undefined): Promise<void> => {
    const params = ctx.oidc?.params ?? {}
    const subjectToken = firstString(params['subject_token'])
    const subjectTokenType = firstString(params['subject_token_type'])
    const audience = firstString(params['audience'])
    const resource = firstString(params['resource'])
    const requestedScope = firstString(params['scope'])
    if (subjectToken === undefined || subjectTokenType === undefined) throw refusal('invalid_request', 'subject_token and subject_token_type are required')
    if (subjectTokenType !== 'urn:ietf:params:oauth:token-type:id_token') throw refusal('invalid_request', 'this IdP takes ID tokens (urn:ietf:params:oauth:token-type:id_token) as subject tokens')
    if (audience === undefined) throw refusal('invalid_request', 'audience (the resource authorization server) is required')
    if (params['actor_token'] !== undefined) throw refusal('invalid_request', 'actor_token is not supported')

    let subject: JWTPayload
    try {
      ;({ payload: subject } = await jwtVerify(subjectToken, deps.verifyOwn, { issuer, audience: client.clientId, algorithms: ['ES256'], requiredClaims: ['sub', 'exp'] }))
    } catch (error) {
      const reason = (error as { code?: string }).code === 'ERR_JWT_EXPIRED' ? 'the ID token has expired' : `the ID token is not valid for this client (${error instanceof Error ? error.message : 'invalid'})`
      throw refusal('invalid_grant', reason)
    }
    if (!issuing) throw refusal('access_denied', 'the identity provider issues no ID-JAGs at the moment')
    const app = apps.get(appKey(client.clientId, audience))
    if (refused.has(client.clientId) || app === undefined) throw refusal('access_denied', `the enterprise does not allow ${client.clientId} to act for its users at ${audience}`)
    if (resource !== undefined && app.resources !== undefined && !app.resources.includes(resource)) throw refusal('invalid_target', `${resource} is not a resource of ${audience} for this app`)
    let scope = requestedScope
    if (app.scope !== undefined) {
      const allowed = new Set(app.scope.split(' '))
      const granted = (requestedScope ?? app.scope).split(' ').filter((s) => s !== '' && allowed.has(s))
      if (granted.length === 0) throw refusal('invalid_scope', 'none of the requested scopes is allowed to this app')
      scope = granted.join(' ')
    }
    if (dPoP) await checkDpopReplay(provider, ctx, dPoP, client.clientId)

    const now = Math.floor(Date.now() / 1000)
    const jti = randomUUID()
    const exp = now + ttlSeconds
    const sub = String(subject.sub)
    const claims: JWTPayload = {
      sub,
      aud: audience,
      client_id: app.clientIdAtAudience,
      jti,
      ...(resource === undefined ? {} : { resource }),
      ...(scope === undefined ? {} : { scope }),
      ...(typeof subject.auth_time === 'number' ? { auth_time: subject.auth_time } : {}),
      ...(dPoP ? { cnf: { jkt: dPoP.thumbprint } } : {}),
    }
    const idJag = await sign({ typ: ID_JAG_TYP }, claims, exp)
    issued.push({ jti, sub, aud: audience, clientId: app.clientIdAtAudience, idpClientId: client.clientId, resource, scope, jkt: dPoP?.thumbprint, exp, revoked: false })
    if (issued.length > MAX_ISSUED) issued.shift()
    deps.onIssued()
    ctx.body = {
      access_token: idJag,
      issued_token_type: TOKEN_TYPE_ID_JAG,
      token_type: 'N_A',
      expires_in: ttlSeconds,
      ...(scope === undefined ? {} : { scope }),
    }
  }

  /** RFC 7009 for an ID-JAG this IdP issued to `clientId`: 'revoked', 'not_found' or 'client_mismatch'. */
  const revoke = async (token: string, clientId: string): Promise<'revoked' | 'not_found' | 'client_mismatch'> => {
    let jti: unknown
    try {
      ;({ payload: { jti } } = await jwtVerify(token, deps.verifyOwn, { issuer, typ: ID_JAG_TYP, algorithms: ['ES256'] }))
    } catch {
      return 'not_found'
    }
    const entry = issued.find((i) => i.jti === jti)
    if (entry === undefined) return 'not_found'
    if (entry.idpClientId !== clientId) return 'client_mismatch'
    entry.revoked = true
    return 'revoked'
  }

  return { control, handle, revoke }
}

/** An IdP whose ID-JAGs the resource authorization server accepts. */
export interface TrustedIdJagIssuer {
  /** Its issuer identifier (the ID-JAG's `iss`). */
  issuer: string
  /** Its https `jwks_uri`. */
  jwksUri: string
  /** Asked before an ID-JAG is redeemed: whether its issuer revoked it (the testkit wires its IdP here). */
  revoked?: (jti: string) => boolean
}

/** What the resource side needs from its authorization server. */
export interface IdJagAcceptanceDeps {
  /** This authorization server's issuer: the `aud` an ID-JAG must carry. */
  issuer: string
  /** The CA to trust when fetching an IdP's JWKS. */
  ca: string
}

/**
 * The resource authorization server's side: the JWT bearer grant (RFC 7523) with an ID-JAG as the
 * assertion, verified against the issuing IdP's JWKS: `typ`, `iss` (a trusted IdP), `aud` (this
 * server's issuer, a string or a one-element array), `exp`, `client_id` = the authenticated client,
 * `cnf.jkt` = the DPoP proof's key when present, not revoked, and `jti` used once (unless told
 * otherwise). The request's `resource` and `scope` are narrowed to the ID-JAG's.
 */
export function createIdJagAcceptance(deps: IdJagAcceptanceDeps) {
  const trusted = new Map<string, { jwks: JwksSource; revoked: ((jti: string) => boolean) | undefined }>()
  let singleUse = true

  /** Whether the assertion is an ID-JAG (its `typ`), so that this side handles it. */
  const applies = (assertion: string): boolean => {
    try {
      return decodeProtectedHeader(assertion).typ === ID_JAG_TYP
    } catch {
      return false
    }
  }

  /**
   * Verifies the ID-JAG of a JWT bearer request and narrows its `resource` and `scope`; returns
   * its claims and, when it is single-use, the key under which its `jti` is consumed.
   */
  const verify = async (ctx: OidcKoaContext, client: OidcClient, assertion: string, dPoP: DpopValidation | undefined): Promise<{ subject: JWTPayload; replayKey: string | undefined }> => {
    let iss: unknown
    try {
      ;({ iss } = JSON.parse(Buffer.from(assertion.split('.')[1] ?? '', 'base64url').toString('utf8')) as { iss?: unknown })
    } catch {
      throw refusal('invalid_grant', 'the ID-JAG is not a JWT')
    }
    const issuer = typeof iss === 'string' ? trusted.get(iss) : undefined
    if (issuer === undefined) throw refusal('invalid_grant', 'the ID-JAG is not from an identity provider this server trusts')
    let subject: JWTPayload
    try {
      ;({ payload: subject } = await jwtVerify(assertion, issuer.jwks.getKey, { issuer: iss as string, audience: deps.issuer, typ: ID_JAG_TYP, algorithms: ['ES256'], requiredClaims: ['sub', 'exp', 'iat', 'jti', 'client_id'] }))
    } catch (error) {
      throw refusal('invalid_grant', `the ID-JAG does not verify (${(error as { code?: string }).code === 'ERR_JWT_EXPIRED' ? 'expired' : error instanceof Error ? error.message : 'invalid'})`)
    }
    if (Array.isArray(subject.aud) && subject.aud.length !== 1) throw refusal('invalid_grant', 'the ID-JAG names more than one audience')
    if (subject['client_id'] !== client.clientId) throw refusal('invalid_grant', 'the ID-JAG is for another client than the one authenticated')
    const jkt = (subject['cnf'] as { jkt?: unknown } | undefined)?.jkt
    if (jkt !== undefined && dPoP?.thumbprint !== jkt) throw refusal('invalid_grant', dPoP ? 'the DPoP proof is not made with the key the ID-JAG is bound to' : 'the ID-JAG is bound to a key (cnf.jkt): a DPoP proof of it is required')
    const jti = String(subject.jti)
    if (issuer.revoked?.(jti)) throw refusal('invalid_grant', 'the ID-JAG was revoked by its issuer')

    // resource and scope: at most what the ID-JAG grants (MCP enterprise-managed authorization §7.2.1)
    const params = ctx.oidc?.params ?? {}
    const granted = subject['resource'] === undefined ? undefined : ([] as unknown[]).concat(subject['resource']).map(String)
    const asked = firstString(params['resource'])
    if (granted !== undefined) {
      if (asked === undefined) params['resource'] = granted[0]
      else if (!granted.includes(asked)) throw refusal('invalid_target', 'the ID-JAG does not grant this resource')
    }
    const jagScope = typeof subject['scope'] === 'string' ? subject['scope'].split(' ').filter((s) => s !== '') : undefined
    const askedScope = firstString(params['scope'])
    if (jagScope !== undefined) {
      const scope = askedScope === undefined ? jagScope : askedScope.split(' ').filter((s) => jagScope.includes(s))
      if (scope.length === 0) throw refusal('invalid_scope', 'none of the requested scopes is in the ID-JAG')
      params['scope'] = scope.join(' ')
    }
    return { subject, replayKey: singleUse ? `${String(iss)} ${jti}` : undefined }
  }

  return {
    applies,
    verify,
    trust(idp: TrustedIdJagIssuer) {
      trusted.set(idp.issuer, { jwks: createJwksSource({ jwksUri: idp.jwksUri, ca: deps.ca }), revoked: idp.revoked })
    },
    setSingleUse(value: boolean) {
      singleUse = value
    },
    get trusts() {
      return trusted.size > 0
    },
  }
}

/** The resource side of an authorization server (see {@link createIdJagAcceptance}). */
export type IdJagAcceptance = ReturnType<typeof createIdJagAcceptance>
/** The IdP side of an authorization server (see {@link createIdJagIssuer}). */
export type IdJagIssuer = ReturnType<typeof createIdJagIssuer>
