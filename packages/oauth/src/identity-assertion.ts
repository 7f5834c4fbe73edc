import { BoundError, IdentityProviderError, assertResourceIndicator, assertSecureUrl } from '@bound/core'
import { optionsChecker, z } from '@bound/core/internal'
import type { Dpop } from '@bound/dpop'
import { noClientAuth, type ClientAuth } from './client-auth.js'
import { discoverAuthorizationServer, type AuthorizationServerMetadata } from './discovery.js'
import { TOKEN_TYPES, type Grant, type GrantContext, type GrantOptions, type GrantTransport } from './grants.js'
import { revokeToken } from './revocation.js'
import { toTokenSource, type TokenSource } from './subject-token.js'
import { requestIssuedToken } from './token-endpoint.js'
import { waitFor } from './token-manager.js'

/**
 * The enterprise identity provider of {@link identityAssertionGrant}: where the ID-JAG is asked
 * for, and how the agent authenticates there. The IdP knows the agent under its own registration —
 * its own client id and authentication method, independent of the session's at the resource's
 * authorization server.
 *
 * @example
 * ```ts
 * import { privateKeyJwt, type IdentityProviderOptions } from '@bound/oauth'
 * const idp: IdentityProviderOptions = { issuer: 'https://acme.idp.example', clientId: 'ai-agent', clientAuth: privateKeyJwt(process.env.IDP_KEY_PEM!) }
 * ```
 */
export interface IdentityProviderOptions {
  /**
   * The IdP's issuer identifier. Its metadata (RFC 8414, or OpenID Connect discovery) gives the
   * token and revocation endpoints when they are not set here; the ID-JAG's `iss` must be it.
   */
  issuer?: string
  /** The IdP's token endpoint, when it is not to be discovered from `issuer`. */
  tokenEndpoint?: string
  /** The IdP's revocation endpoint (RFC 7009), when it is not to be discovered from `issuer`. */
  revocationEndpoint?: string
  /** The agent's client id at the IdP. */
  clientId: string
  /** The agent's client authentication at the IdP. Default `noClientAuth()`. */
  clientAuth?: ClientAuth
  /**
   * Send the session's DPoP proof to the IdP too, so that it can bind the ID-JAG to the session's
   * key (`cnf.jkt`). Default true; false for an IdP that refuses a DPoP header it does not use.
   */
  dpop?: boolean
}

/**
 * Options of {@link identityAssertionGrant}.
 *
 * @example
 * ```ts
 * import { fromFile, identityAssertionGrant, type IdentityAssertionGrantOptions } from '@bound/oauth'
 * const options: IdentityAssertionGrantOptions = {
 *   idp: { issuer: 'https://acme.idp.example', clientId: 'ai-agent' },
 *   subjectToken: fromFile('/run/agent/id-token'),
 *   resource: 'https://crm.example.com/mcp',
 *   scope: 'contacts.read',
 * }
 * ```
 */
export interface IdentityAssertionGrantOptions extends GrantOptions {
  /** The enterprise IdP (see {@link IdentityProviderOptions}). */
  idp: IdentityProviderOptions
  /**
   * The user's identity assertion from single sign-on — an OpenID Connect ID token or a SAML 2.0
   * assertion, as the IdP accepts — as a string, `fromFile(path)`, `fromEnv(name)` or a callback;
   * read afresh for every ID-JAG request. It must stay the same user's for the session's life.
   */
  subjectToken: string | TokenSource
  /** Its type. Default `urn:ietf:params:oauth:token-type:id_token` (`TOKEN_TYPES.idToken`; `TOKEN_TYPES.saml2` for SAML). */
  subjectTokenType?: string
  /**
   * The `audience` asked of the IdP: the resource authorization server as the IdP names it.
   * Default the session's issuer (configured, or learned from the API's RFC 9728 metadata). The
   * ID-JAG's `aud` must be the session's issuer whatever was asked.
   */
  audience?: string
  /**
   * Present an ID-JAG again for the next access token while it lives, instead of asking the IdP
   * for each one (the draft allows it; an AS that treats ID-JAGs as single-use refuses it, which
   * Bound then notices and stops doing). Default false: every new access token is asked of the
   * IdP first, so the IdP's decisions apply from the next refresh on.
   */
  reuseIdJag?: boolean
  /**
   * Refuse (`ERR_TOKEN_TYPE_MISMATCH`) an ID-JAG the IdP did not bind to the session's DPoP key
   * (`cnf.jkt`). Default false: an unbound ID-JAG is accepted (most IdPs issue those) and the
   * access token is still DPoP-bound by the resource authorization server.
   */
  requireBoundIdJag?: boolean
}

const GRANT_TYPE_JWT_BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer'
const GRANT_TYPE_TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange'
const ID_JAG_TYP = 'oauth-id-jag+jwt'
/** Lifetime assumed for an ID-JAG whose lifetime cannot be read (an encrypted one without `expires_in`), seconds. */
const ASSUMED_LIFETIME_SECONDS = 60
/** ID-JAGs held at most (one per audience, resource and scope). */
const MAX_HELD = 64
/** ID-JAGs remembered for revocation at most. */
const MAX_TRACKED = 1_000

const text = (what: string) => z.string({ error: `must be ${what}` }).min(1, `must be ${what}`)
const source = z.custom<string | TokenSource>((v) => (typeof v === 'string' && v.length > 0) || typeof v === 'function', 'must be a non-empty string, fromFile(…), fromEnv(…) or a function')
const checkOptions = optionsChecker('identityAssertionGrant', {
  idp: z.custom((v) => typeof v === 'object' && v !== null, 'must be { issuer | tokenEndpoint, clientId, clientAuth? }'),
  subjectToken: source,
  subjectTokenType: text('a token type URI').optional(),
  audience: text('the resource authorization server’s identifier').max(2048).optional(),
  resource: z.string().optional(),
  scope: z.string().regex(/^[\x21\x23-\x5b\x5d-\x7e]+( [\x21\x23-\x5b\x5d-\x7e]+)*$/, 'must be space-separated scope tokens (RFC 6749 §3.3)').optional(),
  reuseIdJag: z.boolean().optional(),
  requireBoundIdJag: z.boolean().optional(),
})
const checkIdp = optionsChecker('identityAssertionGrant: idp', {
  issuer: z.string().optional(),
  tokenEndpoint: z.string().optional(),
  revocationEndpoint: z.string().optional(),
  clientId: text('the agent’s client id at the IdP'),
  clientAuth: z.custom((v) => typeof v === 'object' && v !== null && typeof (v as { apply?: unknown }).apply === 'function', 'must come from clientSecretBasic(), privateKeyJwt(), …').optional(),
  dpop: z.boolean().optional(),
})

/** One ID-JAG held: for one audience, resource and scope. */
interface Held {
  readonly value: string
  readonly key: string
  /** Epoch ms. */
  readonly expiresAt: number
  /** Epoch ms: not presented after this (the resource AS checks `exp` with its own clock). */
  readonly usableUntil: number
  /** The DPoP key thumbprint it is bound to (`cnf.jkt`), when it is. */
  readonly jkt: string | undefined
  /** Token requests it was presented in. */
  requests: number
  /** Whether an access token was issued for it. */
  redeemed: boolean
}

/** What one ID-JAG request asks for. */
interface Want {
  key: string
  audience: string
  /** The `aud` the ID-JAG must carry: the resource authorization server's issuer. */
  expectedAudience: string
  resource: string | undefined
  scope: string | undefined
  clientId: string | undefined
}

/**
 * Enterprise-managed authorization (the IETF draft "Identity Assertion JWT Authorization Grant",
 * ID-JAG, as the MCP specification's enterprise-managed authorization extension profiles it): the
 * agent acts for the signed-in user at another application's API, and the enterprise IdP decides.
 *
 * Each token the session earns runs the chain: the user's identity assertion (`subjectToken`) is
 * exchanged at the IdP (RFC 8693, `requested_token_type=urn:ietf:params:oauth:token-type:id-jag`,
 * `audience` = the resource authorization server, `resource`, `scope`) for an ID-JAG, which is
 * redeemed at the session's authorization server with the JWT bearer grant (RFC 7523) for the
 * access token. That token then behaves like every other: refreshed ahead of expiry by running the
 * chain again, one chain however many callers wait, back-off after failures, a new chain after
 * `invalid_token`.
 *
 * - **Two registrations.** The IdP knows the agent as `idp.clientId` with `idp.clientAuth`; the
 *   session's `clientId`/`clientAuth` are its registration at the resource authorization server.
 * - **Binding at both hops.** With a DPoP key, both requests carry a proof of it: the IdP may bind
 *   the ID-JAG (`cnf.jkt`, which must then be the session's key) and the access token is
 *   DPoP-bound as always (a Bearer answer fails closed, as for every grant).
 * - **Checked, not trusted.** Before it is sent on, the ID-JAG is checked enough to be used
 *   safely: `typ` `oauth-id-jag+jwt` when present, `aud` = the session's authorization server,
 *   `iss` = `idp.issuer` when given, `client_id` = the session's client, `exp` in the future. Its
 *   signature is the resource authorization server's to verify; an encrypted ID-JAG is passed on
 *   unread.
 * - **Held per audience, resource and scope**, until it expires (its `exp`, or `expires_in`),
 *   is refused, or (unless `reuseIdJag`) has been redeemed. A session acts for one user: the
 *   subject token must stay that user's (a JWT naming another `iss`/`sub` is refused with
 *   `ERR_INVALID_INPUT`); one session per user.
 * - **The hop that refused is named.** The IdP's refusal is an `IdentityProviderError`
 *   (`ERR_IDP_REFUSED`, `hop: 'idp'`, the IdP's `error` and reason); the resource authorization
 *   server's is a `TokenEndpointError` (`ERR_TOKEN_ENDPOINT`). Tokens never appear in either.
 * - **The IdP stays in charge.** A refusal drops every ID-JAG held, so the next chain fails typed;
 *   tokens already held are served until they expire and are not refreshed.
 * - **Revocation.** `session.close({ revoke: true })` revokes the access tokens at the resource
 *   authorization server and, where the IdP has a revocation endpoint, the unexpired ID-JAGs there.
 *
 * @example
 * ```ts
 * import { createSession, clientSecretBasic, privateKeyJwt, fromFile, identityAssertionGrant } from '@bound/oauth'
 * import { generateDpopKey } from '@bound/dpop'
 * const session = createSession({
 *   issuer: 'https://auth.crm.example.com',               // the resource authorization server
 *   clientId: 'agent-at-crm', clientAuth: clientSecretBasic(process.env.CRM_CLIENT_SECRET!),
 *   grant: identityAssertionGrant({
 *     idp: { issuer: 'https://acme.idp.example', clientId: 'ai-agent', clientAuth: privateKeyJwt(process.env.IDP_KEY_PEM!) },
 *     subjectToken: fromFile('/run/agent/id-token'),
 *     resource: 'https://crm.example.com/mcp',
 *     scope: 'contacts.read',
 *   }),
 *   dpop: await generateDpopKey(),
 * })
 * ```
 */
export function identityAssertionGrant(options: IdentityAssertionGrantOptions): Grant {
  checkOptions(options)
  checkIdp(options.idp)
  if (options.resource !== undefined) assertResourceIndicator(options.resource, 'resource')
  const idp = createIdentityProviderClient(options.idp, options.requireBoundIdJag ?? false)
  const subject = toTokenSource(options.subjectToken, 'The subject token (the user’s identity assertion)')
  const subjectTokenType = options.subjectTokenType ?? TOKEN_TYPES.idToken
  let reuse = options.reuseIdJag ?? false

  const held = new Map<string, Held>()
  const inflight = new Map<string, Promise<Held>>()
  const obtained = new Set<Held>() // every unexpired ID-JAG, for revocation at close
  let subjectId: string | undefined
  let lastTransport: GrantTransport | undefined

  const drop = (entry: Held) => {
    if (held.get(entry.key) === entry) held.delete(entry.key)
  }
  const find = (request: URLSearchParams | undefined) => {
    const value = request?.get('assertion')
    for (const entry of held.values()) if (entry.value === value) return entry
    return undefined
  }

  /** The subject token, checked to be the same user's as before (when it is a JWT). */
  const subjectToken = async (): Promise<string> => {
    const token = await subject()
    const claims = decodeJwt(token)?.payload
    if (claims && typeof claims.iss === 'string' && typeof claims.sub === 'string') {
      const id = `${claims.iss}\u0000${claims.sub}`
      if (subjectId !== undefined && subjectId !== id) {
        throw new BoundError('ERR_INVALID_INPUT', 'The subject token names another user than the one this session acts for: a session (and its identityAssertionGrant) acts for one user; make one session per user')
      }
      subjectId = id
    }
    return token
  }

  /** A new ID-JAG for `want`, held and tracked; an IdP refusal drops every one held. */
  const ask = async (want: Want, t: GrantTransport): Promise<Held> => {
    let entry: Held
    try {
      entry = await idp.requestIdJag(want, { subjectToken: await subjectToken(), subjectTokenType }, t)
    } catch (err) {
      // the IdP said no (not a momentary failure): nothing it issued before is used any more
      if (err instanceof IdentityProviderError && err.status < 500 && err.status !== 429) held.clear()
      throw err
    }
    if (held.size >= MAX_HELD && !held.has(want.key)) held.delete(held.keys().next().value as string)
    held.set(want.key, entry)
    for (const e of obtained) if (e.expiresAt <= t.clock.now()) obtained.delete(e)
    if (obtained.size >= MAX_TRACKED) obtained.delete(obtained.values().next().value as Held)
    obtained.add(entry)
    return entry
  }

  /** The ID-JAG to present for `want`: the one held while it may be, else a new one (one request per key). */
  const current = (want: Want, t: GrantTransport): Promise<Held> => {
    const entry = held.get(want.key)
    if (entry) {
      const usable = t.clock.now() < entry.usableUntil && (entry.jkt === undefined || entry.jkt === t.dpop?.jkt) && (reuse || !entry.redeemed)
      if (usable) return Promise.resolve(entry)
      drop(entry)
    }
    let flight = inflight.get(want.key)
    if (!flight) {
      flight = ask(want, t).finally(() => inflight.delete(want.key))
      inflight.set(want.key, flight)
    }
    return waitFor(flight, t.signal)
  }

  return {
    type: GRANT_TYPE_JWT_BEARER,
    resource: options.resource,
    scope: options.scope,
    retryable: true,
    // the IdP decides at every refresh: a refresh token from the resource AS (the draft says it SHOULD NOT issue one) would skip it
    refreshTokens: 'ignore',
    async params(body: URLSearchParams, ctx: GrantContext) {
      const t = ctx.transport
      if (t === undefined) throw new BoundError('ERR_INVALID_CONFIG', 'identityAssertionGrant runs inside a session: its first hop (the IdP) uses the session’s transport')
      lastTransport = t
      const audience = options.audience ?? ctx.issuer
      const expectedAudience = ctx.issuer ?? options.audience
      if (audience === undefined || expectedAudience === undefined) {
        throw new BoundError('ERR_INVALID_CONFIG', 'identityAssertionGrant: the resource authorization server’s issuer is not known (the session has only a tokenEndpoint): set the session’s issuer, or give audience')
      }
      const { resource, scope } = ctx
      const key = JSON.stringify([audience, resource ?? null, scope ?? null])
      const entry = await current({ key, audience, expectedAudience, resource, scope, clientId: ctx.clientId }, t)
      if ((ctx.attempt ?? 1) === 1) entry.requests += 1
      body.set('grant_type', GRANT_TYPE_JWT_BEARER)
      body.set('assertion', entry.value)
      if (scope) body.set('scope', scope)
      if (resource) body.set('resource', resource)
      for (const [k, v] of Object.entries(ctx.extra)) body.set(k, v)
    },
    succeeded(request) {
      const entry = find(request)
      if (entry === undefined) return
      entry.redeemed = true
      if (!reuse) drop(entry)
    },
    refused(error, request) {
      const entry = find(request)
      if (entry === undefined) return undefined
      drop(entry) // a refused ID-JAG is never sent again
      // presented before (redeemed, or sent in an earlier request): an AS that takes each ID-JAG
      // once (as the MCP profile requires) refuses it as a replay. One fresh chain, and no reuse.
      if ((error as { error?: unknown }).error === 'invalid_grant' && (entry.redeemed || entry.requests > 1)) {
        if (entry.redeemed) reuse = false
        return 'retry'
      }
      return undefined
    },
    async close({ revoke, signal }) {
      const t = lastTransport
      const live = [...obtained].filter((e) => e.expiresAt > (t?.clock.now() ?? Date.now()))
      held.clear()
      obtained.clear()
      if (revoke && t !== undefined && live.length > 0) await idp.revoke(live.map((e) => e.value), t, signal)
    },
  }
}

/**
 * The agent's side of the enterprise IdP: its endpoints (configured, or from its metadata), the
 * ID-JAG request (RFC 8693 token exchange, with the IdP's own client authentication and the
 * session's DPoP proof) with the answer checked, and RFC 7009 revocation there.
 */
function createIdentityProviderClient(idp: IdentityProviderOptions, requireBound: boolean) {
  if (idp.issuer === undefined && idp.tokenEndpoint === undefined) throw new BoundError('ERR_INVALID_CONFIG', 'identityAssertionGrant: idp needs issuer or tokenEndpoint')
  if (idp.issuer !== undefined) assertSecureUrl(idp.issuer, 'idp.issuer')
  if (idp.tokenEndpoint !== undefined) assertSecureUrl(idp.tokenEndpoint, 'idp.tokenEndpoint')
  if (idp.revocationEndpoint !== undefined) assertSecureUrl(idp.revocationEndpoint, 'idp.revocationEndpoint')
  const clientAuth = idp.clientAuth ?? noClientAuth()

  let metadataPromise: Promise<AuthorizationServerMetadata> | undefined
  const metadata = (t: GrantTransport): Promise<AuthorizationServerMetadata> | undefined => {
    if (idp.issuer === undefined) return undefined
    metadataPromise ??= discoverAuthorizationServer(idp.issuer, { fetch: t.fetch, signal: AbortSignal.timeout(t.timeoutMs) }).catch((err: unknown) => {
      metadataPromise = undefined // a failure is not cached
      throw err
    })
    return metadataPromise
  }
  const endpoint = async (kind: 'token_endpoint' | 'revocation_endpoint', t: GrantTransport): Promise<string | undefined> => {
    const configured = kind === 'token_endpoint' ? idp.tokenEndpoint : idp.revocationEndpoint
    if (configured !== undefined) return configured
    const url = (await metadata(t))?.[kind]
    if (url !== undefined) assertSecureUrl(url, `${kind.replace(/_/g, ' ')} of the identity provider`)
    return url
  }

  return {
    /** The first hop: an ID-JAG for `want`, checked before it is held. */
    async requestIdJag(want: Want, subject: { subjectToken: string; subjectTokenType: string }, t: GrantTransport): Promise<Held> {
      const url = await endpoint('token_endpoint', t)
      if (url === undefined) throw new BoundError('ERR_DISCOVERY', `The metadata of the identity provider ${idp.issuer} has no token_endpoint`)
      const dpop = idp.dpop === false ? undefined : t.dpop
      if (dpop && idp.tokenEndpoint === undefined) dpop.assertAlgAccepted((await metadata(t))?.dpop_signing_alg_values_supported, `The identity provider ${idp.issuer ?? url}`)
      const exchange: Grant = {
        type: GRANT_TYPE_TOKEN_EXCHANGE,
        resource: want.resource,
        scope: want.scope,
        retryable: true,
        params(body) {
          body.set('grant_type', GRANT_TYPE_TOKEN_EXCHANGE)
          body.set('requested_token_type', TOKEN_TYPES.idJag)
          body.set('audience', want.audience)
          if (want.resource !== undefined) body.set('resource', want.resource)
          if (want.scope !== undefined) body.set('scope', want.scope)
          body.set('subject_token', subject.subjectToken)
          body.set('subject_token_type', subject.subjectTokenType)
        },
      }
      const issued = await requestIssuedToken(
        { endpoint: url, issuer: idp.issuer, clientId: idp.clientId, clientAuth, grant: exchange, resource: want.resource, scope: want.scope, extra: {}, dpop, fetch: t.fetch, clock: t.clock, signal: t.signal, timeoutMs: t.timeoutMs },
        { issuedTokenType: TOKEN_TYPES.idJag, what: 'identity provider’s token endpoint', refusal: IdentityProviderError, hint: idpHint },
      )
      const receivedAt = t.clock.now()
      // (checked against the session's key, whether or not a proof of it went to the IdP)
      const checked = checkIdJag(issued.token, { ...want, issuer: idp.issuer, dpop: t.dpop, requireBound, receivedAt, expiresIn: issued.expiresIn, from: url })
      const lifetime = checked.expiresAt - receivedAt
      return { value: issued.token, key: want.key, expiresAt: checked.expiresAt, usableUntil: checked.expiresAt - Math.min(5_000, lifetime / 4), jkt: checked.jkt, requests: 0, redeemed: false }
    },
    /** RFC 7009 at the IdP, where it has a revocation endpoint (else there is nothing to do there). */
    async revoke(tokens: string[], t: GrantTransport, signal: AbortSignal | undefined): Promise<void> {
      const url = await endpoint('revocation_endpoint', t)
      if (url === undefined) return
      const timeout = AbortSignal.timeout(t.timeoutMs)
      const ctx = { endpoint: url, issuer: idp.issuer, clientId: idp.clientId, clientAuth, fetch: t.fetch, clock: t.clock, signal: signal ? AbortSignal.any([signal, timeout]) : timeout }
      const failures: unknown[] = []
      for (const token of tokens) await revokeToken(ctx, token).catch((e: unknown) => failures.push(e))
      if (failures.length > 0) throw new BoundError('ERR_TOKEN_ENDPOINT', `${failures.length} ID-JAG(s) could not be revoked at the identity provider`, { cause: failures[0] })
    },
  }
}

/** Advice for the IdP's refusals (never anything the IdP sent). */
function idpHint(error: { error: string }): string | undefined {
  switch (error.error) {
    case 'invalid_grant':
      return 'the IdP does not accept the subject token (an expired or revoked ID token or assertion, or one issued to another client than idp.clientId): the user signs in again for a fresh one'
    case 'access_denied':
      return 'the enterprise IdP does not allow this agent to act for the user at this audience and resource: its administrators decide'
    case 'invalid_client':
      return 'the IdP did not accept the client authentication: check idp.clientId and idp.clientAuth (the agent’s registration at the IdP, not at the resource authorization server)'
    case 'invalid_target':
      return 'the IdP does not know the audience (the resource authorization server’s issuer) or the resource, or does not pair them'
    case 'unsupported_grant_type':
      return 'the IdP does not do token exchange (RFC 8693) for this client'
    default:
      return undefined
  }
}

/** The parts of a compact JWS, decoded without any check; undefined for anything else (a JWE, an opaque string, SAML). */
function decodeJwt(token: string): { header: Record<string, unknown>; payload: Record<string, unknown> } | undefined {
  const parts = token.split('.')
  if (parts.length !== 3) return undefined
  try {
    const header = JSON.parse(Buffer.from(parts[0]!, 'base64url').toString('utf8')) as unknown
    const payload = JSON.parse(Buffer.from(parts[1]!, 'base64url').toString('utf8')) as unknown
    if (typeof header !== 'object' || header === null || typeof payload !== 'object' || payload === null) return undefined
    return { header: header as Record<string, unknown>, payload: payload as Record<string, unknown> }
  } catch {
    return undefined
  }
}

/**
 * "Validated enough": what the agent can and must check of an ID-JAG before it sends it on. The
 * signature is not verified (the agent does not trust it; the resource authorization server does).
 */
function checkIdJag(
  token: string,
  c: { expectedAudience: string; clientId: string | undefined; issuer: string | undefined; dpop: Dpop | undefined; requireBound: boolean; receivedAt: number; expiresIn: number | undefined; from: string },
): { expiresAt: number; jkt: string | undefined } {
  const byExpiresIn = c.expiresIn === undefined ? undefined : c.receivedAt + c.expiresIn * 1000
  const invalid = (why: string) => new BoundError('ERR_TOKEN_RESPONSE_INVALID', `The identity provider’s token endpoint ${c.from} issued an ID-JAG that cannot be used: ${why}`)
  const parts = token.split('.').length
  if (parts === 5) {
    // encrypted to the resource authorization server (the draft allows it): nothing to read
    if (c.requireBound && c.dpop) throw new BoundError('ERR_TOKEN_TYPE_MISMATCH', `The identity provider’s token endpoint ${c.from} issued an encrypted ID-JAG, whose binding to the session’s DPoP key cannot be checked, and requireBoundIdJag is set`)
    return { expiresAt: byExpiresIn ?? c.receivedAt + ASSUMED_LIFETIME_SECONDS * 1000, jkt: undefined }
  }
  const jwt = decodeJwt(token)
  if (jwt === undefined) throw invalid('it is not a JWT')
  const { header, payload } = jwt
  if (header.typ !== undefined) {
    const typ = typeof header.typ === 'string' ? header.typ.toLowerCase().replace(/^application\//, '') : ''
    if (typ !== ID_JAG_TYP) throw invalid(`its typ is ${JSON.stringify(String(header.typ).slice(0, 60))}, not ${ID_JAG_TYP}`)
  }
  const aud = payload.aud
  const audOk = aud === c.expectedAudience || (Array.isArray(aud) && aud.length === 1 && aud[0] === c.expectedAudience)
  if (!audOk) throw invalid(`its aud is ${JSON.stringify(aud).slice(0, 200)}, not the session’s authorization server ${c.expectedAudience} — check audience, or the IdP’s registration of that authorization server`)
  if (c.issuer !== undefined && payload.iss !== c.issuer) throw invalid(`its iss is ${JSON.stringify(payload.iss).slice(0, 200)}, not idp.issuer ${c.issuer}`)
  if (c.clientId !== undefined && payload.client_id !== undefined && payload.client_id !== c.clientId) {
    throw invalid(`it is for the client ${JSON.stringify(payload.client_id).slice(0, 100)}, while the session authenticates at ${c.expectedAudience} as ${c.clientId} — the IdP maps this agent to another client there`)
  }
  if (typeof payload.exp !== 'number' || !Number.isFinite(payload.exp)) throw invalid('it has no exp')
  const byExp = payload.exp * 1000
  if (byExp <= c.receivedAt) throw invalid('it has already expired (check the clocks of this host and the IdP)')
  const cnf = payload.cnf as { jkt?: unknown } | undefined
  const jkt = typeof cnf?.jkt === 'string' ? cnf.jkt : undefined
  if (cnf !== undefined && jkt === undefined) throw invalid('its cnf binds it to something other than a DPoP key, which this session cannot prove')
  if (jkt !== undefined && jkt !== c.dpop?.jkt) {
    throw new BoundError('ERR_TOKEN_TYPE_MISMATCH', `The identity provider’s token endpoint ${c.from} issued an ID-JAG bound to another key (cnf.jkt) than ${c.dpop ? 'the session’s DPoP key' : 'any this session holds (it has no DPoP key)'}`)
  }
  if (jkt === undefined && c.requireBound && c.dpop) {
    throw new BoundError('ERR_TOKEN_TYPE_MISMATCH', `The identity provider’s token endpoint ${c.from} issued an ID-JAG that is not bound to the session’s DPoP key (no cnf.jkt), and requireBoundIdJag is set`)
  }
  return { expiresAt: Math.min(byExp, byExpiresIn ?? Number.POSITIVE_INFINITY), jkt }
}
