/// <reference path="./oidc-provider.d.ts" />
import { generateKeyPairSync, randomBytes, X509Certificate, type KeyObject } from 'node:crypto'
import { createServer, type Server } from 'node:https'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { calculateJwkThumbprint, type JWK } from 'jose'
import Provider, { errors, type KoaMiddleware, type OidcKoaContext, type ProviderError } from 'oidc-provider'
import {
  certificateSubjectMatches,
  peerAuthorized,
  peerCertificate,
  type CertificateSubjectProperty,
} from './certificate-identity.js'
import type { TestCertificate, TestPki } from './pki.js'
import { closeServer, listen } from './listen.js'

/** DPoP signature algorithms the testkit servers accept. */
export const DPOP_SIGNING_ALGS = ['ES256', 'ES384', 'EdDSA', 'PS256', 'RS256'] as const

/** Default scope of the testkit resource server. */
export const DEFAULT_SCOPE = 'orders:read orders:write'

/** A resource server (audience) the authorization server issues JWT access tokens for. */
export interface ResourceRegistration {
  /** The resource indicator / audience, e.g. `https://127.0.0.1:4443`. */
  resource: string
  /** Space-separated scopes of that resource; default `orders:read orders:write`. */
  scope?: string
  /** Access token lifetime in seconds; default the server's `accessTokenTtl`. */
  accessTokenTtl?: number
}

/** Options of {@link startAuthorizationServer}. */
export interface AuthorizationServerOptions {
  /** The PKI whose server certificate the listeners use and whose CA they trust. */
  pki: TestPki
  /** Resources known at start; more can be added with {@link AuthorizationServer.addResource}. */
  resources?: Array<string | ResourceRegistration>
  /** Access token lifetime in seconds; default 300. */
  accessTokenTtl?: number
  /** Demand DPoP nonces (`use_dpop_nonce`) at the token endpoint; default true. */
  requireNonce?: boolean
  /**
   * Whether the main (issuer) listener also asks for client certificates. Default false, so
   * certificate-based clients must use the `mtls_endpoint_aliases` listener.
   */
  mainListenerRequestsCert?: boolean
  /** Log error details of failed requests to stderr; default false. */
  verbose?: boolean
}

/** Credentials of a client that authenticates with a client secret. */
export interface SecretClient {
  clientId: string
  clientSecret: string
  authMethod: 'client_secret_basic' | 'client_secret_post'
  scope: string
}

/** Credentials of the `private_key_jwt` client. */
export interface PrivateKeyJwtClient {
  clientId: string
  authMethod: 'private_key_jwt'
  privateKey: KeyObject
  privateJwk: JWK
  publicJwk: JWK
  kid: string
  alg: 'ES256'
  scope: string
}

/** Credentials of an RFC 8705 client (`tls_client_auth` or `self_signed_tls_client_auth`). */
export interface MtlsClient {
  clientId: string
  authMethod: 'tls_client_auth' | 'self_signed_tls_client_auth'
  /** The certificate to present (workload for tls_client_auth, selfSigned otherwise). */
  certificate: TestCertificate
  /** The registered `tls_client_auth_subject_dn`, for tls_client_auth. */
  subjectDn?: string
  scope: string
}

/** Every client registered at the testkit authorization server. */
export interface TestClients {
  /** `client_secret_basic`; its secret needs form-url-encoding (RFC 6749 §2.3.1). */
  secretBasic: SecretClient
  /** `client_secret_post`. */
  secretPost: SecretClient
  /** `client_secret_basic` with `dpop_bound_access_tokens: true`. */
  dpopRequired: SecretClient
  /** `private_key_jwt` with an ES256 key. */
  privateKeyJwt: PrivateKeyJwtClient
  /** `tls_client_auth` matching the workload certificate's subject DN; certificate-bound tokens. */
  tlsClientAuth: MtlsClient
  /** `self_signed_tls_client_auth` with the selfSigned certificate; certificate-bound tokens. */
  selfSignedTlsClientAuth: MtlsClient
}

/** Token endpoint statistics of the authorization server. */
export interface AuthorizationServerCounters {
  /** POSTs to the token endpoint, on both listeners. */
  tokenRequests: number
  /** Successful token responses. */
  tokensIssued: number
  /** Error responses other than DPoP nonce challenges. */
  tokenErrors: number
  /** `use_dpop_nonce` responses. */
  nonceChallenges: number
  /** Token requests per client id (best effort for unauthenticated requests). */
  byClient: Record<string, number>
  /** Issued tokens per client id. */
  issuedByClient: Record<string, number>
  /** Issued tokens by binding. */
  byBinding: { dpop: number; mtls: number; bearer: number }
  /** Token requests per listener. */
  byListener: { main: number; mtls: number }
}

/** A running oidc-provider authorization server on 127.0.0.1. */
export interface AuthorizationServer {
  /** `https://127.0.0.1:PORT` */
  issuer: string
  /**
   * Test fault: rewrite every successful token response with `fault` (e.g.
   * `(body) => ({ ...body, token_type: 'Bearer' })`); `undefined` turns it off.
   */
  setTokenResponseFault(fault: ((body: Record<string, unknown>) => Record<string, unknown>) | undefined): void
  /** Origin of the second listener that serves the `mtls_endpoint_aliases`. */
  mtlsOrigin: string
  /** RFC 8414 metadata URL (`/.well-known/oauth-authorization-server`). */
  metadataUrl: string
  tokenEndpoint: string
  mtlsTokenEndpoint: string
  jwksUri: string
  /** The public signing keys. */
  jwks: { keys: JWK[] }
  clients: TestClients
  /** Whether the listeners are up (false between {@link stop} and {@link start}). */
  readonly running: boolean
  /** Registers one more resource (audience), e.g. a second resource server origin. */
  addResource(resource: string | ResourceRegistration): void
  counters(): AuthorizationServerCounters
  resetCounters(): void
  /** Closes both listeners and every open connection (outage simulation). */
  stop(): Promise<void>
  /** Listens again on the same ports after {@link stop}. */
  start(): Promise<void>
  /** Final shutdown. Idempotent. */
  close(): Promise<void>
}

interface StoredResource {
  audience: string
  scope: string
  accessTokenTtl: number
}

function newCounters(): AuthorizationServerCounters {
  return {
    tokenRequests: 0,
    tokensIssued: 0,
    tokenErrors: 0,
    nonceChallenges: 0,
    byClient: {},
    issuedByClient: {},
    byBinding: { dpop: 0, mtls: 0, bearer: 0 },
    byListener: { main: 0, mtls: 0 },
  }
}

function normalizeResource(resource: string): string {
  try {
    return new URL(resource).href
  } catch {
    return resource
  }
}

function bump(record: Record<string, number>, key: string): void {
  record[key] = (record[key] ?? 0) + 1
}

function firstString(value: unknown): string | undefined {
  if (typeof value === 'string') return value
  if (Array.isArray(value) && typeof value[0] === 'string') return value[0]
  return undefined
}

/** Client id of a token request, also when client authentication failed. */
function requestClientId(ctx: OidcKoaContext): string | undefined {
  const authenticated = ctx.oidc?.client?.clientId
  if (authenticated !== undefined) return authenticated
  const fromBody = firstString(ctx.oidc?.body?.['client_id'])
  if (fromBody !== undefined) return fromBody
  const authorization = ctx.get('authorization')
  if (authorization.toLowerCase().startsWith('basic ')) {
    const decoded = Buffer.from(authorization.slice(6).trim(), 'base64').toString('utf8')
    const colon = decoded.indexOf(':')
    if (colon > 0) {
      try {
        return decodeURIComponent(decoded.slice(0, colon).replace(/\+/g, '%20'))
      } catch {
        return decoded.slice(0, colon)
      }
    }
  }
  return undefined
}

/**
 * Test-only step-up stand-in: client credentials has no standard way to ask for an `acr`, so a
 * token request may carry `acr_values` (first value becomes `acr`, with `auth_time` = now) and/or
 * an OIDC-style `claims` request whose essential `access_token` members with a `value` are copied.
 */
function stepUpClaims(body: Record<string, unknown> | undefined): Record<string, unknown> | undefined {
  if (body === undefined) return undefined
  const claims: Record<string, unknown> = {}
  const acrValues = firstString(body['acr_values'])
  const acr = acrValues?.split(' ').find((value) => value !== '')
  if (acr !== undefined) {
    claims['acr'] = acr
    claims['auth_time'] = Math.floor(Date.now() / 1000)
  }
  const claimsParameter = firstString(body['claims'])
  if (claimsParameter !== undefined) {
    try {
      const parsed: unknown = JSON.parse(claimsParameter)
      const accessToken = (parsed as { access_token?: unknown } | null)?.access_token
      if (accessToken !== null && typeof accessToken === 'object') {
        for (const [name, request] of Object.entries(accessToken as Record<string, unknown>)) {
          const { essential, value } = (request ?? {}) as { essential?: unknown; value?: unknown }
          if (essential === true && value !== undefined) claims[name] = value
        }
      }
    } catch {
      // An unparsable claims parameter is ignored, as oidc-provider ignores unknown parameters.
    }
  }
  return Object.keys(claims).length > 0 ? claims : undefined
}

function makeSecret(): string {
  // Reserved characters first: a client that skips RFC 6749 §2.3.1 form-url-encoding of the
  // Basic credentials turns '+' into ' ' at the server and fails.
  return `p@ss:w+rd/~${randomBytes(12).toString('base64url')}`
}

/**
 * Starts oidc-provider as an authorization server on two HTTPS listeners on 127.0.0.1: the issuer
 * origin, and an mTLS origin (published as `mtls_endpoint_aliases`) that asks for client
 * certificates. Client credentials, DPoP (with nonces), RFC 8705 client auth and certificate-bound
 * tokens, resource indicators with RFC 9068 JWT access tokens, revocation and introspection.
 *
 * For tests only.
 */
export async function startAuthorizationServer(options: AuthorizationServerOptions): Promise<AuthorizationServer> {
  const { pki } = options
  const accessTokenTtl = options.accessTokenTtl ?? 300
  const requireNonce = options.requireNonce ?? true
  const verbose = options.verbose ?? false

  const tlsOptions = { key: pki.server.keyPem, cert: pki.server.certPem, ca: pki.caPem }
  let handler: ((req: IncomingMessage, res: ServerResponse) => void) | undefined
  const dispatch = (req: IncomingMessage, res: ServerResponse): void => {
    if (handler === undefined) {
      res.statusCode = 503
      res.end()
      return
    }
    handler(req, res)
  }
  const mainServer: Server = createServer({
    ...tlsOptions,
    requestCert: options.mainListenerRequestsCert ?? false,
    rejectUnauthorized: false,
  }, dispatch)
  const mtlsServer: Server = createServer({ ...tlsOptions, requestCert: true, rejectUnauthorized: false }, dispatch)

  const mainPort = await listen(mainServer, 0)
  let mtlsPort: number
  try {
    mtlsPort = await listen(mtlsServer, 0)
  } catch (error) {
    await closeServer(mainServer)
    throw error
  }

  const issuer = `https://127.0.0.1:${mainPort}`
  const mtlsOrigin = `https://127.0.0.1:${mtlsPort}`

  // Signing key of the access tokens.
  const signing = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const signingJwk = signing.privateKey.export({ format: 'jwk' }) as JWK
  const publicSigningJwk = signing.publicKey.export({ format: 'jwk' }) as JWK
  const signingKid = await calculateJwkThumbprint(publicSigningJwk)
  Object.assign(signingJwk, { kid: signingKid, alg: 'ES256', use: 'sig' })
  Object.assign(publicSigningJwk, { kid: signingKid, alg: 'ES256', use: 'sig' })

  // Clients.
  const scope = DEFAULT_SCOPE
  const clientKeys = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const clientPublicJwk = clientKeys.publicKey.export({ format: 'jwk' }) as JWK
  const clientKid = await calculateJwkThumbprint(clientPublicJwk)
  Object.assign(clientPublicJwk, { kid: clientKid, alg: 'ES256', use: 'sig' })
  const clientPrivateJwk = { ...(clientKeys.privateKey.export({ format: 'jwk' }) as JWK), kid: clientKid, alg: 'ES256' }

  const selfSignedCert = new X509Certificate(pki.selfSigned.certPem)
  const selfSignedJwk = {
    ...(selfSignedCert.publicKey.export({ format: 'jwk' }) as JWK),
    x5c: [selfSignedCert.raw.toString('base64')],
  }

  const clients: TestClients = {
    secretBasic: { clientId: 'secret-basic', clientSecret: makeSecret(), authMethod: 'client_secret_basic', scope },
    secretPost: { clientId: 'secret-post', clientSecret: makeSecret(), authMethod: 'client_secret_post', scope },
    dpopRequired: { clientId: 'dpop-required', clientSecret: makeSecret(), authMethod: 'client_secret_basic', scope },
    privateKeyJwt: {
      clientId: 'private-key-jwt',
      authMethod: 'private_key_jwt',
      privateKey: clientKeys.privateKey,
      privateJwk: clientPrivateJwk,
      publicJwk: clientPublicJwk,
      kid: clientKid,
      alg: 'ES256',
      scope,
    },
    tlsClientAuth: {
      clientId: 'tls-client-auth',
      authMethod: 'tls_client_auth',
      certificate: pki.workload,
      subjectDn: pki.workload.subject,
      scope,
    },
    selfSignedTlsClientAuth: {
      clientId: 'self-signed-tls-client-auth',
      authMethod: 'self_signed_tls_client_auth',
      certificate: pki.selfSigned,
      scope,
    },
  }

  const base = { grant_types: ['client_credentials'], response_types: [], redirect_uris: [], scope }
  const clientMetadata = [
    { ...base, client_id: clients.secretBasic.clientId, client_secret: clients.secretBasic.clientSecret, token_endpoint_auth_method: 'client_secret_basic' },
    { ...base, client_id: clients.secretPost.clientId, client_secret: clients.secretPost.clientSecret, token_endpoint_auth_method: 'client_secret_post' },
    {
      ...base,
      client_id: clients.dpopRequired.clientId,
      client_secret: clients.dpopRequired.clientSecret,
      token_endpoint_auth_method: 'client_secret_basic',
      dpop_bound_access_tokens: true,
    },
    {
      ...base,
      client_id: clients.privateKeyJwt.clientId,
      token_endpoint_auth_method: 'private_key_jwt',
      token_endpoint_auth_signing_alg: 'ES256',
      jwks: { keys: [clientPublicJwk] },
    },
    {
      ...base,
      client_id: clients.tlsClientAuth.clientId,
      token_endpoint_auth_method: 'tls_client_auth',
      tls_client_auth_subject_dn: pki.workload.subject,
      tls_client_certificate_bound_access_tokens: true,
    },
    {
      ...base,
      client_id: clients.selfSignedTlsClientAuth.clientId,
      token_endpoint_auth_method: 'self_signed_tls_client_auth',
      jwks: { keys: [selfSignedJwk] },
      tls_client_certificate_bound_access_tokens: true,
    },
  ]

  // Resources.
  const resources = new Map<string, StoredResource>()
  const addResource = (registration: string | ResourceRegistration): void => {
    const entry = typeof registration === 'string' ? { resource: registration } : registration
    resources.set(normalizeResource(entry.resource), {
      audience: entry.resource,
      scope: entry.scope ?? scope,
      accessTokenTtl: entry.accessTokenTtl ?? accessTokenTtl,
    })
  }
  for (const resource of options.resources ?? []) addResource(resource)

  const log = (message: string): void => {
    if (verbose) process.stderr.write(`[bound-testkit as] ${message}\n`)
  }

  const provider = new Provider(issuer, {
    clients: clientMetadata,
    jwks: { keys: [signingJwk] },
    clientDefaults: {
      grant_types: ['client_credentials'],
      response_types: [],
      id_token_signed_response_alg: 'ES256',
      token_endpoint_auth_method: 'client_secret_basic',
    },
    cookies: { keys: [randomBytes(32).toString('base64url')] },
    scopes: ['openid', 'orders:read', 'orders:write'],
    responseTypes: ['none'],
    clientAuthMethods: [
      'client_secret_basic',
      'client_secret_post',
      'client_secret_jwt',
      'private_key_jwt',
      'tls_client_auth',
      'self_signed_tls_client_auth',
    ],
    ttl: { ClientCredentials: accessTokenTtl, AccessToken: accessTokenTtl },
    enabledJWA: {
      dPoPSigningAlgValues: [...DPOP_SIGNING_ALGS],
    },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
      revocation: { enabled: true },
      dPoP: {
        enabled: true,
        nonceSecret: randomBytes(32),
        requireNonce: () => requireNonce,
      },
      mTLS: {
        enabled: true,
        certificateBoundAccessTokens: true,
        tlsClientAuth: true,
        selfSignedTlsClientAuth: true,
        getCertificate: (ctx: OidcKoaContext) => peerCertificate(ctx.socket),
        certificateAuthorized: (ctx: OidcKoaContext) => peerAuthorized(ctx.socket),
        certificateSubjectMatches: (ctx: OidcKoaContext, property: CertificateSubjectProperty, expected: string) => {
          const certificate = peerCertificate(ctx.socket)
          return certificate !== undefined && certificateSubjectMatches(certificate, property, expected)
        },
      },
      resourceIndicators: {
        enabled: true,
        defaultResource: async (_ctx: OidcKoaContext, _client: unknown, oneOf?: string[]) => {
          if (oneOf !== undefined) return oneOf
          return resources.values().next().value?.audience
        },
        useGrantedResource: async () => true,
        getResourceServerInfo: async (_ctx: OidcKoaContext, resourceIndicator: string) => {
          const resource = resources.get(normalizeResource(resourceIndicator))
          if (resource === undefined) throw new errors.InvalidTarget(`unknown resource ${resourceIndicator}`)
          return {
            scope: resource.scope,
            audience: resource.audience,
            accessTokenFormat: 'jwt',
            accessTokenTTL: resource.accessTokenTtl,
            jwt: { sign: { alg: 'ES256' } },
          }
        },
      },
    },
    extraTokenClaims: async (ctx: OidcKoaContext) => stepUpClaims(ctx.oidc?.body),
    discovery: {
      mtls_endpoint_aliases: {
        token_endpoint: `${mtlsOrigin}/token`,
        revocation_endpoint: `${mtlsOrigin}/token/revocation`,
        introspection_endpoint: `${mtlsOrigin}/token/introspection`,
      },
    },
  })

  let tokenResponseFault: ((body: Record<string, unknown>) => Record<string, unknown>) | undefined
  // Test faults: rewrite a successful token response (e.g. a Bearer token_type for a DPoP request).
  provider.use(async (ctx, next) => {
    await next()
    if (tokenResponseFault && ctx.method === 'POST' && ctx.path === '/token' && ctx.status === 200 && typeof ctx.body === 'object' && ctx.body !== null) {
      ctx.body = tokenResponseFault({ ...(ctx.body as Record<string, unknown>) })
    }
  })

  let counters = newCounters()
  const countTokenRequests: KoaMiddleware = async (ctx, next) => {
    if (ctx.method !== 'POST' || ctx.path !== '/token') {
      await next()
      return
    }
    counters.tokenRequests += 1
    const onMtls = ctx.socket.localPort === mtlsPort
    counters.byListener[onMtls ? 'mtls' : 'main'] += 1
    try {
      await next()
    } finally {
      const clientId = requestClientId(ctx)
      if (clientId !== undefined) bump(counters.byClient, clientId)
      const body = (ctx.body ?? {}) as { error?: string; token_type?: string }
      if (ctx.status === 200) {
        counters.tokensIssued += 1
        if (clientId !== undefined) bump(counters.issuedByClient, clientId)
        const token = ctx.oidc?.entities['ClientCredentials'] as { 'x5t#S256'?: string } | undefined
        const dpop = body.token_type?.toLowerCase() === 'dpop'
        const mtls = token?.['x5t#S256'] !== undefined
        if (dpop) counters.byBinding.dpop += 1
        if (mtls) counters.byBinding.mtls += 1
        if (!dpop && !mtls) counters.byBinding.bearer += 1
      } else if (body.error === 'use_dpop_nonce') {
        counters.nonceChallenges += 1
      } else {
        counters.tokenErrors += 1
      }
    }
  }
  provider.use(countTokenRequests)

  if (verbose) {
    const describe = (event: string) => (ctx: OidcKoaContext | undefined, error: ProviderError) => {
      log(`${event} ${ctx?.method ?? ''} ${ctx?.path ?? ''}: ${error.error ?? error.name}`
        + `${error.error_description === undefined ? '' : ` (${error.error_description})`}`
        + `${error.error_detail === undefined ? '' : ` detail: ${error.error_detail}`}`
        + `${error.error === undefined ? ` ${error.stack ?? error.message}` : ''}`)
    }
    for (const event of ['server_error', 'grant.error', 'introspection.error', 'revocation.error', 'jwks.error', 'discovery.error']) {
      provider.on(event, describe(event))
    }
  }

  // oidc-provider validates static client metadata lazily: fail now rather than at first use.
  try {
    for (const metadata of clientMetadata) {
      if (await provider.Client.find(metadata.client_id) === undefined) {
        throw new Error(`client ${metadata.client_id} was not registered`)
      }
    }
  } catch (error) {
    await Promise.all([closeServer(mainServer), closeServer(mtlsServer)])
    throw error
  }

  handler = provider.callback()

  let running = true
  let closed = false
  const stop = async (): Promise<void> => {
    if (!running) return
    running = false
    await Promise.all([closeServer(mainServer), closeServer(mtlsServer)])
  }

  return {
    issuer,
    mtlsOrigin,
    metadataUrl: `${issuer}/.well-known/oauth-authorization-server`,
    tokenEndpoint: `${issuer}/token`,
    mtlsTokenEndpoint: `${mtlsOrigin}/token`,
    jwksUri: `${issuer}/jwks`,
    jwks: { keys: [publicSigningJwk] },
    clients,
    get running() {
      return running
    },
    addResource,
    setTokenResponseFault(fault) {
      tokenResponseFault = fault
    },
    counters: () => structuredClone(counters),
    resetCounters: () => {
      counters = newCounters()
    },
    stop,
    async start() {
      if (closed) throw new Error('the authorization server was closed')
      if (running) return
      await listen(mainServer, mainPort)
      await listen(mtlsServer, mtlsPort)
      running = true
    },
    async close() {
      if (closed) return
      closed = true
      await stop()
    },
  }
}
