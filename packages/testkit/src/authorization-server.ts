/// <reference path="./oidc-provider.d.ts" />
import { generateKeyPairSync, randomBytes, X509Certificate, type KeyObject } from 'node:crypto'
import { createServer, type Server } from 'node:https'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import { calculateJwkThumbprint, createLocalJWKSet, jwtVerify, type JWK, type JWTPayload } from 'jose'
import { announceSecret } from './secrets.js'
import Provider, { errors, type KoaMiddleware, type OidcKoaContext, type ProviderError } from 'oidc-provider'
import {
  certificateSubjectMatches,
  peerAuthorized,
  peerCertificate,
  type CertificateSubjectProperty,
} from './certificate-identity.js'
import type { TestCertificate, TestPki } from './pki.js'
import { closeServer, listen } from './listen.js'
import {
  GRANT_TYPE_JWT_BEARER,
  GRANT_TYPE_TOKEN_EXCHANGE,
  installGrants,
  type AccessTokenRevocation,
} from './grants.js'
import {
  answerWithFault,
  validateFault,
  type TokenEndpointFault,
  type TokenEndpointFaultOptions,
} from './token-endpoint-faults.js'
import { createWorkloadIdentityIssuer, type WorkloadIdentityIssuer } from './workload-identity.js'
import { createIdJagAcceptance, createIdJagIssuer, ID_JAG_TYP, TOKEN_TYPE_ID_JAG, type IdJagIssuerControl, type TrustedIdJagIssuer } from './identity-assertion.js'
import { checkAuthorizationServerQuirks, installAuthorizationServerQuirks, type AuthorizationServerQuirks } from './quirks.js'
import { createMemoryAdapter } from 'oidc-provider/lib/adapters/memory_adapter.js'
import { createCiba, GRANT_TYPE_CIBA, type CibaControl } from './ciba.js'
import {
  ATTEST_JWT_CLIENT_AUTH,
  ATTEST_JWT_CLIENT_AUTH_DPOP,
  attestationVerification,
  createClientAttester,
  type ClientAttester,
} from './client-attestation.js'

/**
 * DPoP signature algorithms the testkit servers accept.
 *
 * @example
 * ```ts
 * for (const alg of DPOP_SIGNING_ALGS) await generateDpopKey({ alg })
 * ```
 */
export const DPOP_SIGNING_ALGS = ['ES256', 'ES384', 'EdDSA', 'PS256', 'RS256'] as const

/**
 * Default scope of the testkit resource server.
 *
 * @example
 * ```ts
 * clientCredentials({ resource: kit.resource, scope: DEFAULT_SCOPE })
 * ```
 */
export const DEFAULT_SCOPE = 'orders:read orders:write'

/**
 * A resource server (audience) the authorization server issues JWT access tokens for.
 *
 * @example
 * ```ts
 * kit.as.addResource({ resource: 'https://127.0.0.1:8443', scope: 'reports:read', accessTokenTtlSeconds: 60 })
 * ```
 */
export interface ResourceRegistration {
  /** The resource indicator / audience, e.g. `https://127.0.0.1:4443`. */
  resource: string
  /** Space-separated scopes of that resource; default `orders:read orders:write`. */
  scope?: string
  /** Access token lifetime in seconds; default the server's `accessTokenTtlSeconds`. */
  accessTokenTtlSeconds?: number
}

/**
 * Options of {@link startAuthorizationServer}.
 *
 * @example
 * ```ts
 * const as = await startAuthorizationServer({ pki, accessTokenTtlSeconds: 30, requireNonce: false })
 * ```
 */
export interface AuthorizationServerOptions {
  /** The PKI whose server certificate the listeners use and whose CA they trust. */
  pki: TestPki
  /** Resources known at start; more can be added with {@link AuthorizationServer.addResource}. */
  resources?: Array<string | ResourceRegistration>
  /** Access token lifetime in seconds; default 300. */
  accessTokenTtlSeconds?: number
  /** Demand DPoP nonces (`use_dpop_nonce`) at the token endpoint; default true. */
  requireNonce?: boolean
  /**
   * Whether the main (issuer) listener also asks for client certificates. Default false, so
   * certificate-based clients must use the `mtls_endpoint_aliases` listener.
   */
  mainListenerRequestsCert?: boolean
  /** Log error details of failed requests to stderr; default false. */
  verbose?: boolean
  /**
   * The workload identity issuer whose JWTs the token exchange and JWT bearer grants accept.
   * Default: one made at start (`https://workload-identity.bound.test`, ES256, default audience
   * the AS issuer); pass `{ issuer }` to name it differently.
   */
  workloadIdentity?: WorkloadIdentityIssuer | { issuer?: string }
  /** Absolute lifetime of refresh token families (token exchange / JWT bearer), seconds; default 86400. */
  refreshTokenTtlSeconds?: number
  /**
   * The Client Attester whose attestations the `attest_jwt_client_auth` clients present. Default:
   * one made at start (`https://attester.bound.test`, ES256); pass `{ issuer }` to name it differently.
   */
  attester?: ClientAttester | { issuer?: string }
  /** The `interval` (seconds) of CIBA backchannel authentication responses; default 1. */
  cibaIntervalSeconds?: number
  /** Lifetime of CIBA requests without `requested_expiry`, seconds; default 300 (`requested_expiry` is capped at 600). */
  cibaRequestTtl?: number
  /**
   * Vendor quirks to reproduce (Auth0-style `audience`, metadata without DPoP algs, token
   * responses without `expires_in` or with a lower-case `token_type`); default none. See
   * {@link AuthorizationServerQuirks}; {@link AuthorizationServer.setQuirks} changes them later.
   */
  quirks?: AuthorizationServerQuirks
  /**
   * Run as an enterprise identity provider too: a token exchange with `requested_token_type`
   * `urn:ietf:params:oauth:token-type:id-jag` gets an ID-JAG for the apps it allows (see
   * {@link AuthorizationServer.idJagIssuer}). `idJagTtlSeconds` is their lifetime (default 300).
   */
  identityProvider?: { idJagTtlSeconds?: number }
  /**
   * Identity providers whose ID-JAGs the JWT bearer grant accepts from the start (more with
   * {@link AuthorizationServer.trustIdJagIssuer}); the metadata then advertises the ID-JAG profile.
   */
  idJagIssuers?: TrustedIdJagIssuer[]
}

/**
 * Credentials of a client that authenticates with a client secret.
 *
 * @example
 * ```ts
 * const { clientId, clientSecret }: SecretClient = kit.clients.secretBasic
 * createSession({ …, clientId, clientAuth: clientSecretBasic(clientSecret) })
 * ```
 */
export interface SecretClient {
  clientId: string
  clientSecret: string
  authMethod: 'client_secret_basic' | 'client_secret_post'
  scope: string
}

/**
 * Credentials of the `private_key_jwt` client.
 *
 * @example
 * ```ts
 * const { clientId, privateJwk, kid }: PrivateKeyJwtClient = kit.clients.privateKeyJwt
 * createSession({ …, clientId, clientAuth: privateKeyJwt(privateJwk, { kid }) })
 * ```
 */
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

/**
 * Credentials of an RFC 8705 client (`tls_client_auth` or `self_signed_tls_client_auth`).
 *
 * @example
 * ```ts
 * const c: MtlsClient = kit.clients.tlsClientAuth
 * createSession({ …, clientId: c.clientId, clientAuth: tlsClientAuth(), clientCertificate: { cert: c.certificate.certPem, key: c.certificate.keyPem } })
 * ```
 */
export interface MtlsClient {
  clientId: string
  authMethod: 'tls_client_auth' | 'self_signed_tls_client_auth'
  /** The certificate to present (workload for tls_client_auth, selfSigned otherwise). */
  certificate: TestCertificate
  /** The registered `tls_client_auth_subject_dn`, for tls_client_auth. */
  subjectDn?: string
  scope: string
}

/**
 * A public client (`token_endpoint_auth_method: none`), for the token exchange and JWT bearer grants.
 *
 * @example
 * ```ts
 * createSession({ …, clientId: kit.clients.publicClient.clientId, clientAuth: noClientAuth(), grant: tokenExchange({ subjectToken: await kit.workloadIdentity.mintToken() }) })
 * ```
 */
export interface PublicClient {
  clientId: string
  authMethod: 'none'
  scope: string
}

/**
 * A client that authenticates with OAuth attestation-based client authentication
 * (draft-ietf-oauth-attestation-based-client-auth): an `OAuth-Client-Attestation` from the testkit's
 * Client Attester plus an `OAuth-Client-Attestation-PoP` (`attest_jwt_client_auth`), or a DPoP
 * proof made with the attested key (`attest_jwt_client_auth_dpop`, DPoP combined mode).
 *
 * @example
 * ```ts
 * const { clientId }: AttestedClient = kit.clients.attested
 * const attestation = await kit.attester.issue({ clientId, cnfJwk: instancePublicJwk })
 * ```
 */
export interface AttestedClient {
  clientId: string
  authMethod: 'attest_jwt_client_auth' | 'attest_jwt_client_auth_dpop'
  /** Scopes it may ask for, e.g. in a CIBA request (with `openid`). */
  scope: string
}

/**
 * Every client registered at the testkit authorization server.
 *
 * @example
 * ```ts
 * const clients: TestClients = kit.clients
 * clients.secretBasic.clientId // 'secret-basic'
 * ```
 */
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
  /**
   * `tls_client_auth` whose tokens are **not** certificate-bound, so they can be DPoP-bound: a
   * workload that authenticates with its certificate and binds its tokens to a DPoP key.
   */
  tlsClientAuthDpop: MtlsClient
  /** `self_signed_tls_client_auth` with the selfSigned certificate; certificate-bound tokens. */
  selfSignedTlsClientAuth: MtlsClient
  /**
   * A public client (`none`): token exchange, JWT bearer and refresh only (no client
   * credentials). Its refresh tokens are bound to the DPoP key of the first token.
   */
  publicClient: PublicClient
  /**
   * `client_secret_basic`, allowed the CIBA grant (poll mode) besides client credentials and the
   * workload grants; its `scope` is `openid orders:read orders:write`.
   */
  ciba: SecretClient
  /**
   * `attest_jwt_client_auth` (attestation + PoP JWT headers); client credentials, CIBA and the
   * workload grants.
   */
  attested: AttestedClient
  /** `attest_jwt_client_auth_dpop` (attestation + DPoP proof with the attested key, DPoP combined mode). */
  attestedDpop: AttestedClient
}

/**
 * Token endpoint statistics of the authorization server.
 *
 * @example
 * ```ts
 * const { tokensIssued, nonceChallenges, byBinding }: AuthorizationServerCounters = kit.as.counters()
 * ```
 */
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
  /** Issued tokens per `grant_type`. */
  byGrant: Record<string, number>
  /** Refresh tokens presented again after rotation (each revoked its family). */
  refreshReuseDetected: number
  /** Tokens revoked through the revocation endpoint (JWT access tokens and testkit refresh tokens). */
  revocations: number
  /** Token requests answered (or delayed) by a {@link AuthorizationServer.setFault} fault. */
  faulted: number
  /** Successful CIBA backchannel authentication requests. */
  cibaRequests: number
  /** CIBA polls answered `slow_down`. */
  cibaSlowDowns: number
  /** Requests (any endpoint) whose client authenticated with a valid attestation and PoP. */
  attestationsVerified: number
  /**
   * Requests that presented an attestation or PoP header, or named an attestation client, and
   * failed client authentication (`invalid_client` and other errors, but not `use_attestation_challenge`).
   */
  attestationsRejected: number
  /** `use_attestation_challenge` answers (a PoP without a valid `challenge`). */
  attestationChallenges: number
  /** ID-JAGs issued (identity provider mode). */
  idJagsIssued: number
  /** ID-JAGs redeemed for an access token (JWT bearer grant). */
  idJagsRedeemed: number
}

/**
 * A running oidc-provider authorization server on 127.0.0.1.
 *
 * @example
 * ```ts
 * const as: AuthorizationServer = kit.as
 * as.setFault({ kind: 'status', status: 503, retryAfter: 2 }, { times: 1 })
 * await as.stop() // an outage; as.start() listens again on the same ports
 * ```
 */
export interface AuthorizationServer {
  /** `https://127.0.0.1:PORT` */
  issuer: string
  /**
   * Test fault: rewrite every successful token response with `fault` (e.g.
   * `(body) => ({ ...body, token_type: 'Bearer' })`); `undefined` turns it off.
   */
  setTokenResponseFault(fault: ((body: Record<string, unknown>) => Record<string, unknown>) | undefined): void
  /**
   * Replaces the vendor quirks in force (see {@link AuthorizationServerQuirks}); `{}` or
   * `undefined` goes back to the standard behaviour. Checked when set (TypeError for an unknown member).
   */
  setQuirks(quirks: AuthorizationServerQuirks | undefined): void
  /** The quirks in force (a copy). */
  quirks(): AuthorizationServerQuirks
  /**
   * Test fault on the token endpoint (POST `/token` on both listeners; discovery, JWKS,
   * revocation and introspection keep working): `hang`, `slow`, `status`, `html`, `truncated`,
   * `huge`, `body` or `drop` (see {@link TokenEndpointFault}). `undefined` clears it. Requests
   * held by `hang` are answered for real when the fault is set again or cleared, and dropped when
   * the server stops. Faulted requests count in `counters().faulted` (and in `tokenRequests`).
   */
  setFault(fault: TokenEndpointFault | undefined, options?: TokenEndpointFaultOptions): void
  /** The fault currently set, if any. */
  fault(): TokenEndpointFault | undefined
  /** The simulated workload identity issuer trusted by the token exchange and JWT bearer grants. */
  workloadIdentity: WorkloadIdentityIssuer
  /**
   * Subscribes to access token revocations: a JWT access token revoked at the revocation
   * endpoint, or the access tokens of a refresh token family that was revoked or reused.
   * oidc-provider cannot revoke JWT access tokens itself, so resource servers listen here
   * ({@link startTestkit} wires its RS). Returns the unsubscribe function.
   */
  onAccessTokenRevoked(listener: (revocation: AccessTokenRevocation) => void): () => void
  /** Origin of the second listener that serves the `mtls_endpoint_aliases`. */
  mtlsOrigin: string
  /** RFC 8414 metadata URL (`/.well-known/oauth-authorization-server`). */
  metadataUrl: string
  tokenEndpoint: string
  mtlsTokenEndpoint: string
  /** RFC 7009 revocation endpoint (`/token/revocation`) and its mTLS alias. */
  revocationEndpoint: string
  mtlsRevocationEndpoint: string
  jwksUri: string
  /** CIBA `backchannel_authentication_endpoint` (`/backchannel`). */
  backchannelAuthenticationEndpoint: string
  /** Attestation `challenge_endpoint` (`/challenge`): POST, answers `{ attestation_challenge }` (and a DPoP nonce). */
  challengeEndpoint: string
  /**
   * CIBA (poll mode) approval hooks: see the requests the AS received and approve, deny or expire
   * them; `slow_down` and `interval` control.
   */
  ciba: CibaControl
  /** The Client Attester the AS trusts for `attest_jwt_client_auth` / `attest_jwt_client_auth_dpop`. */
  attester: ClientAttester
  /** The public signing keys. */
  jwks: { keys: JWK[] }
  clients: TestClients
  /** Whether the listeners are up (false between {@link stop} and {@link start}). */
  readonly running: boolean
  /** The enterprise-IdP controls, when started with `identityProvider` (undefined otherwise). */
  idJagIssuer: IdJagIssuerControl | undefined
  /** Accepts ID-JAGs of one more identity provider in the JWT bearer grant. */
  trustIdJagIssuer(idp: TrustedIdJagIssuer): void
  /**
   * Whether an ID-JAG is taken once (its `jti` consumed, as the MCP profile requires: default) or
   * may be presented again until it expires (the IETF draft allows that).
   */
  setIdJagSingleUse(singleUse: boolean): void
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
  accessTokenTtlSeconds: number
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
    byGrant: {},
    refreshReuseDetected: 0,
    revocations: 0,
    faulted: 0,
    cibaRequests: 0,
    cibaSlowDowns: 0,
    attestationsVerified: 0,
    attestationsRejected: 0,
    attestationChallenges: 0,
    idJagsIssued: 0,
    idJagsRedeemed: 0,
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
 * an OIDC-style `claims` request whose essential `access_token` members with a `value` are copied
 * (and whose `access_token.xms_cc.values`, the client's capabilities, become an `xms_cc` claim).
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
          const { essential, value, values } = (request ?? {}) as { essential?: unknown; value?: unknown; values?: unknown }
          if (essential === true && value !== undefined) claims[name] = value
          // client capabilities, as Entra carries them into CAE tokens: `xms_cc: ["cp1"]`
          else if (name === 'xms_cc' && Array.isArray(values) && values.every((v) => typeof v === 'string')) claims[name] = values
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

/** oidc-provider's default `clockTolerance` (seconds), which its memory adapter adds to lifetimes. */
const OIDC_CLOCK_TOLERANCE = 15

const ATTESTATION_METHODS = new Set<string>([ATTEST_JWT_CLIENT_AUTH, ATTEST_JWT_CLIENT_AUTH_DPOP])

/** How long expired CIBA requests stay stored (so that polls get `expired_token`), seconds. */
const CIBA_RETENTION_SECONDS = 600

/** Whether a compact JWS says it is an ID-JAG (its `typ`). */
function idJagHeader(token: string): boolean {
  try {
    return (JSON.parse(Buffer.from(token.split('.')[0] ?? '', 'base64url').toString('utf8')) as { typ?: unknown }).typ === ID_JAG_TYP
  } catch {
    return false
  }
}

/** Path of a request target, without the query. */
function targetPath(url: string | undefined): string {
  const target = url ?? '/'
  const query = target.indexOf('?')
  return query === -1 ? target : target.slice(0, query)
}

/**
 * Starts oidc-provider as an authorization server on two HTTPS listeners on 127.0.0.1: the issuer
 * origin, and an mTLS origin (published as `mtls_endpoint_aliases`) that asks for client
 * certificates. Client credentials, RFC 8693 token exchange and RFC 7523 JWT bearer (subject: a
 * simulated workload identity issuer) with rotating refresh tokens, DPoP (with nonces), RFC 8705
 * client auth and certificate-bound tokens, resource indicators with RFC 9068 JWT access tokens,
 * revocation (JWT access tokens included, through {@link AuthorizationServer.onAccessTokenRevoked})
 * and introspection, plus token endpoint fault injection.
 *
 * For tests only.
 *
 * @example
 * ```ts
 * const pki = await createTestPki()
 * const as = await startAuthorizationServer({ pki, resources: ['https://127.0.0.1:8443'] })
 * // … as.issuer, as.clients …
 * await as.close()
 * ```
 */
export async function startAuthorizationServer(options: AuthorizationServerOptions): Promise<AuthorizationServer> {
  const { pki } = options
  const accessTokenTtlSeconds = options.accessTokenTtlSeconds ?? 300
  const refreshTokenTtlSeconds = options.refreshTokenTtlSeconds ?? 86_400
  const requireNonce = options.requireNonce ?? true
  const verbose = options.verbose ?? false
  let quirks = checkAuthorizationServerQuirks(options.quirks)

  const tlsOptions = { key: pki.server.keyPem, cert: pki.server.certPem, ca: pki.caPem }
  let handler: ((req: IncomingMessage, res: ServerResponse) => void) | undefined

  // Token endpoint faults (applied before oidc-provider sees the request).
  let currentFault: TokenEndpointFault | undefined
  let faultRemaining: number | undefined
  const hung = new Set<{ req: IncomingMessage; res: ServerResponse }>()
  const delayed = new Set<NodeJS.Timeout>()
  let mtlsPort = -1
  let counters = newCounters()

  const realAnswer = (req: IncomingMessage, res: ServerResponse): void => {
    if (res.destroyed || res.writableEnded) return
    if (handler === undefined) {
      res.statusCode = 503
      res.end()
      return
    }
    handler(req, res)
  }
  const releaseHung = (): void => {
    const held = [...hung]
    hung.clear()
    for (const { req, res } of held) realAnswer(req, res)
  }
  const takeFault = (): TokenEndpointFault | undefined => {
    const fault = currentFault
    if (fault !== undefined && faultRemaining !== undefined) {
      faultRemaining -= 1
      // Auto-expiry does not release requests held by `hang`: only setFault()/stop() do.
      if (faultRemaining <= 0) {
        currentFault = undefined
        faultRemaining = undefined
      }
    }
    return fault
  }

  const dispatch = (req: IncomingMessage, res: ServerResponse): void => {
    if (currentFault !== undefined && req.method === 'POST' && targetPath(req.url) === '/token') {
      const fault = takeFault()
      if (fault !== undefined) {
        counters.faulted += 1
        switch (fault.kind) {
          case 'hang': {
            const entry = { req, res }
            hung.add(entry)
            res.once('close', () => hung.delete(entry))
            return
          }
          case 'slow': {
            const timer = setTimeout(() => {
              delayed.delete(timer)
              realAnswer(req, res)
            }, fault.ms)
            delayed.add(timer)
            return
          }
          default:
            // Terminal faults never reach oidc-provider: count the request here.
            counters.tokenRequests += 1
            counters.byListener[req.socket.localPort === mtlsPort ? 'mtls' : 'main'] += 1
            answerWithFault(fault, req, res)
            return
        }
      }
    }
    realAnswer(req, res)
  }
  const mainServer: Server = createServer({
    ...tlsOptions,
    requestCert: options.mainListenerRequestsCert ?? false,
    rejectUnauthorized: false,
  }, dispatch)
  const mtlsServer: Server = createServer({ ...tlsOptions, requestCert: true, rejectUnauthorized: false }, dispatch)
  // Every raw connection (TLS handshakes in progress included), so that stop() can cut them all.
  const sockets = new Set<Socket>()
  for (const server of [mainServer, mtlsServer]) {
    server.on('connection', (socket: Socket) => {
      sockets.add(socket)
      socket.once('close', () => sockets.delete(socket))
    })
  }

  const mainPort = await listen(mainServer, 0)
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
  const ownKeys = createLocalJWKSet({ keys: [publicSigningJwk] })

  const workloadOption = options.workloadIdentity
  const workloadIdentity: WorkloadIdentityIssuer = workloadOption !== undefined && 'mintToken' in workloadOption
    ? workloadOption
    : await createWorkloadIdentityIssuer({
      ...(workloadOption?.issuer === undefined ? {} : { issuer: workloadOption.issuer }),
      defaultAudience: issuer,
    })

  const attesterOption = options.attester
  const attester: ClientAttester = attesterOption !== undefined && 'issue' in attesterOption
    ? attesterOption
    : await createClientAttester(attesterOption?.issuer === undefined ? {} : { issuer: attesterOption.issuer })

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
    tlsClientAuthDpop: {
      clientId: 'tls-client-auth-dpop',
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
    publicClient: { clientId: 'public-client', authMethod: 'none', scope },
    ciba: { clientId: 'ciba', clientSecret: makeSecret(), authMethod: 'client_secret_basic', scope: `openid ${scope}` },
    attested: { clientId: 'attested', authMethod: ATTEST_JWT_CLIENT_AUTH, scope: `openid ${scope}` },
    attestedDpop: { clientId: 'attested-dpop', authMethod: ATTEST_JWT_CLIENT_AUTH_DPOP, scope: `openid ${scope}` },
  }

  announceSecret(clients.secretBasic.clientSecret, clients.secretPost.clientSecret, clients.dpopRequired.clientSecret, clients.ciba.clientSecret, clientPrivateJwk.d, clientKeys.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString())
  // Every client may use client credentials and the workload grants; `offline_access` asks the
  // workload grants for a refresh token.
  const workloadGrants = [GRANT_TYPE_TOKEN_EXCHANGE, GRANT_TYPE_JWT_BEARER, 'refresh_token']
  const base = {
    grant_types: ['client_credentials', ...workloadGrants],
    response_types: [],
    redirect_uris: [],
    scope: `${scope} offline_access`,
  }
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
      client_id: clients.tlsClientAuthDpop.clientId,
      token_endpoint_auth_method: 'tls_client_auth',
      tls_client_auth_subject_dn: pki.workload.subject,
    },
    {
      ...base,
      client_id: clients.selfSignedTlsClientAuth.clientId,
      token_endpoint_auth_method: 'self_signed_tls_client_auth',
      jwks: { keys: [selfSignedJwk] },
      tls_client_certificate_bound_access_tokens: true,
    },
    {
      ...base,
      grant_types: workloadGrants,
      client_id: clients.publicClient.clientId,
      token_endpoint_auth_method: 'none',
    },
    // CIBA (poll mode) needs `openid` in the request, hence in the client's scope.
    {
      ...base,
      grant_types: [...base.grant_types, GRANT_TYPE_CIBA],
      backchannel_token_delivery_mode: 'poll',
      scope: `openid ${base.scope}`,
      client_id: clients.ciba.clientId,
      client_secret: clients.ciba.clientSecret,
      token_endpoint_auth_method: 'client_secret_basic',
    },
    ...[clients.attested, clients.attestedDpop].map((client) => ({
      ...base,
      grant_types: [...base.grant_types, GRANT_TYPE_CIBA],
      backchannel_token_delivery_mode: 'poll',
      scope: `openid ${base.scope}`,
      client_id: client.clientId,
      token_endpoint_auth_method: client.authMethod,
    })),
  ]

  // Resources.
  const resources = new Map<string, StoredResource>()
  const addResource = (registration: string | ResourceRegistration): void => {
    const entry = typeof registration === 'string' ? { resource: registration } : registration
    resources.set(normalizeResource(entry.resource), {
      audience: entry.resource,
      scope: entry.scope ?? scope,
      accessTokenTtlSeconds: entry.accessTokenTtlSeconds ?? accessTokenTtlSeconds,
    })
  }
  for (const resource of options.resources ?? []) addResource(resource)
  const resourceServerInfo = (resourceIndicator: string): Record<string, unknown> => {
    const resource = resources.get(normalizeResource(resourceIndicator))
    if (resource === undefined) throw new errors.InvalidTarget(`unknown resource ${resourceIndicator}`)
    return {
      scope: resource.scope,
      audience: resource.audience,
      accessTokenFormat: 'jwt',
      accessTokenTTL: resource.accessTokenTtlSeconds,
      jwt: { sign: { alg: 'ES256' } },
    }
  }

  const log = (message: string): void => {
    if (verbose) process.stderr.write(`[bound-testkit as] ${message}\n`)
  }

  // Claims set by the workload grants (`sub`, carried step-up claims), applied to the JWT.
  const tokenOverrides = new WeakMap<object, Record<string, unknown>>()

  const ciba = createCiba({
    endpoint: `${issuer}/backchannel`,
    counters: () => counters,
    log,
    ...(options.cibaIntervalSeconds === undefined ? {} : { interval: options.cibaIntervalSeconds }),
  })
  const cibaRequestTtl = options.cibaRequestTtl ?? 300
  const attestation = attestationVerification(attester)

  // oidc-provider's per-provider memory store, except that CIBA requests are kept past their expiry
  // (their polls get `expired_token` rather than `invalid_grant` "not found").
  const memory = createMemoryAdapter(OIDC_CLOCK_TOLERANCE)
  const adapter = (model: string): unknown => {
    const store = memory(model)
    if (model !== 'BackchannelAuthenticationRequest') return store
    const upsert = store.upsert.bind(store)
    store.upsert = (id, payload, expiresIn) => upsert(id, payload, typeof expiresIn === 'number' ? Math.max(expiresIn, 0) + CIBA_RETENTION_SECONDS : expiresIn)
    return store
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
    scopes: ['openid', 'offline_access', 'orders:read', 'orders:write'],
    responseTypes: ['none'],
    adapter,
    // CIBA users: any account id (a login_hint) exists.
    findAccount: async (_ctx: unknown, accountId: string) => ({
      accountId,
      claims: async () => ({ sub: accountId }),
    }),
    clientAuthMethods: [
      'none',
      'client_secret_basic',
      'client_secret_post',
      'client_secret_jwt',
      'private_key_jwt',
      'tls_client_auth',
      'self_signed_tls_client_auth',
      ATTEST_JWT_CLIENT_AUTH,
      ATTEST_JWT_CLIENT_AUTH_DPOP,
    ],
    ttl: {
      // a resource's own lifetime (ResourceRegistration.accessTokenTtlSeconds), else the server's
      ClientCredentials: (_ctx: unknown, token: { resourceServer?: { accessTokenTTL?: number } }) => token.resourceServer?.accessTokenTTL ?? accessTokenTtlSeconds,
      AccessToken: accessTokenTtlSeconds,
      // CIBA: the request lives `requested_expiry` seconds (at most 600) or cibaRequestTtl.
      BackchannelAuthenticationRequest: (ctx: OidcKoaContext | undefined) => {
        const requested = Number(firstString(ctx?.oidc?.params?.['requested_expiry']))
        return Number.isSafeInteger(requested) && requested > 0 ? Math.min(600, requested) : cibaRequestTtl
      },
      Grant: 86_400,
      IdToken: 3600,
      RefreshToken: refreshTokenTtlSeconds,
    },
    enabledJWA: {
      dPoPSigningAlgValues: [...DPOP_SIGNING_ALGS],
    },
    features: {
      devInteractions: { enabled: false },
      ciba: ciba.feature,
      // draft-ietf-oauth-attestation-based-client-auth as implemented by oidc-provider 9.13 ("draft-12").
      attestClientAuth: {
        enabled: true,
        ack: 'draft-12',
        challengeSecret: randomBytes(32),
        getAttestationSignaturePublicKey: attestation.getAttestationSignaturePublicKey,
        assertAttestationJwtAndPop: attestation.assertAttestationJwtAndPop,
      },
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
        getResourceServerInfo: async (_ctx: OidcKoaContext, resourceIndicator: string) => resourceServerInfo(resourceIndicator),
      },
    },
    formats: {
      customizers: {
        jwt: async (_ctx: unknown, token: object, jwt: { payload: Record<string, unknown> }) => {
          const overrides = tokenOverrides.get(token)
          if (overrides !== undefined) Object.assign(jwt.payload, overrides)
        },
      },
    },
    extraTokenClaims: async (ctx: OidcKoaContext | undefined, token: { gty?: string }) => {
      const claims = { ...stepUpClaims(ctx?.oidc?.body), ...ciba.tokenClaims(ctx, token) }
      return Object.keys(claims).length > 0 ? claims : undefined
    },
    discovery: {
      ...(options.identityProvider ? { identity_chaining_requested_token_types_supported: [TOKEN_TYPE_ID_JAG] } : {}),
      ...(options.idJagIssuers?.length ? { authorization_grant_profiles_supported: ['urn:ietf:params:oauth:grant-profile:id-jag'] } : {}),
      mtls_endpoint_aliases: {
        token_endpoint: `${mtlsOrigin}/token`,
        revocation_endpoint: `${mtlsOrigin}/token/revocation`,
        introspection_endpoint: `${mtlsOrigin}/token/introspection`,
        backchannel_authentication_endpoint: `${mtlsOrigin}/backchannel`,
      },
    },
  })

  // Access token revocations, for resource servers (oidc-provider cannot revoke JWT access tokens).
  const revocationListeners = new Set<(revocation: AccessTokenRevocation) => void>()
  const emitRevocations = (revocations: AccessTokenRevocation[]): void => {
    for (const revocation of revocations) {
      for (const listener of revocationListeners) {
        try {
          listener(revocation)
        } catch (error) {
          log(`revocation listener failed: ${error instanceof Error ? error.message : String(error)}`)
        }
      }
    }
  }

  // Enterprise-managed authorization: the IdP side (ID-JAGs by token exchange) and the resource side (ID-JAGs as JWT bearer grants).
  const idJagIssuer = options.identityProvider === undefined ? undefined : createIdJagIssuer({
    provider,
    issuer,
    signingKey: signing.privateKey,
    kid: signingKid,
    verifyOwn: ownKeys,
    ttlSeconds: options.identityProvider.idJagTtlSeconds ?? 300,
    onIssued: () => void (counters.idJagsIssued += 1),
  })
  const idJagAcceptance = createIdJagAcceptance({ issuer, ca: pki.caPem })
  for (const idp of options.idJagIssuers ?? []) idJagAcceptance.trust(idp)

  const refreshTokens = installGrants({
    provider,
    issuer,
    workloadIdentity,
    refreshTokenTtlSeconds,
    resourceServerInfo,
    extraClaims: (ctx) => stepUpClaims(ctx.oidc?.body),
    tokenOverrides,
    onRefreshReuse: () => {
      counters.refreshReuseDetected += 1
    },
    revokeAccessTokens: emitRevocations,
    ...(idJagIssuer === undefined ? {} : { idJagIssuer }),
    idJagAcceptance,
    onIdJagRedeemed: () => void (counters.idJagsRedeemed += 1),
  })

  let tokenResponseFault: ((body: Record<string, unknown>) => Record<string, unknown>) | undefined
  // Test faults: rewrite a successful token response (e.g. a Bearer token_type for a DPoP request).
  provider.use(async (ctx, next) => {
    await next()
    if (tokenResponseFault && ctx.method === 'POST' && ctx.path === '/token' && ctx.status === 200 && typeof ctx.body === 'object' && ctx.body !== null) {
      ctx.body = tokenResponseFault({ ...(ctx.body as Record<string, unknown>) })
    }
  })

  installAuthorizationServerQuirks({
    provider,
    current: () => quirks,
    knownResource: (identifier) => resources.has(normalizeResource(identifier)),
  })

  // RFC 7009 bridge: oidc-provider authenticates the client, then refuses JWTs
  // (unsupported_token_type) and ignores tokens it does not know (the testkit's refresh tokens).
  provider.use(async (ctx, next) => {
    await next()
    if (ctx.method !== 'POST' || ctx.path !== '/token/revocation') return
    const client = ctx.oidc?.client
    const token = firstString(ctx.oidc?.params?.['token'])
    if (client === undefined || token === undefined) return
    const refused = (ctx.body as { error?: unknown } | undefined)?.error === 'unsupported_token_type'
    const revoked = (): void => {
      ctx.status = 200
      ctx.body = ''
    }
    const notAllowed = (): void => {
      // As oidc-provider's default revocation.allowedPolicy: silent for public clients.
      if (client.clientAuthMethod === 'none') return revoked()
      ctx.status = 400
      ctx.body = { error: 'invalid_request', error_description: 'client is not authorized to revoke the presented token' }
    }
    if (ctx.status === 400 && refused) {
      if (idJagIssuer !== undefined && idJagHeader(token)) {
        // an ID-JAG this IdP issued: the resource authorization servers that trust it refuse it from now on
        const outcome = await idJagIssuer.revoke(token, client.clientId)
        if (outcome === 'client_mismatch') return notAllowed()
        if (outcome === 'revoked') counters.revocations += 1
        return revoked()
      }
      let claims: JWTPayload
      try {
        ;({ payload: claims } = await jwtVerify(token, ownKeys, { issuer, typ: 'at+jwt', algorithms: ['ES256'] }))
      } catch {
        // Not an active access token of this AS (expired, foreign, forged): nothing to revoke (RFC 7009 §2.2).
        return revoked()
      }
      if (claims['client_id'] !== client.clientId) return notAllowed()
      if (typeof claims.jti === 'string') {
        counters.revocations += 1
        emitRevocations([{
          jti: claims.jti,
          clientId: client.clientId,
          ...(typeof claims.exp === 'number' ? { exp: claims.exp } : {}),
          reason: 'revocation_endpoint',
        }])
      }
      return revoked()
    }
    if (ctx.status === 200 && refreshTokens.has(token)) {
      const outcome = refreshTokens.revoke(token, client.clientId)
      if (outcome === 'client_mismatch') return notAllowed()
      if (outcome === 'revoked') counters.revocations += 1
    }
  })

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
        const grantType = firstString(ctx.oidc?.params?.['grant_type']) ?? firstString(ctx.oidc?.body?.['grant_type'])
        if (grantType !== undefined) bump(counters.byGrant, grantType)
        const token = (ctx.oidc?.entities['ClientCredentials'] ?? ctx.oidc?.entities['AccessToken']) as { 'x5t#S256'?: string } | undefined
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
  // Attestation-based client authentication outcomes (any endpoint that authenticates clients).
  provider.use(async (ctx, next) => {
    const attestationHeader = ctx.get('oauth-client-attestation')
    const popHeader = ctx.get('oauth-client-attestation-pop')
    announceSecret(attestationHeader || undefined, popHeader || undefined)
    try {
      await next()
    } finally {
      const client = ctx.oidc?.client
      const involved = attestationHeader !== '' || popHeader !== '' || (client !== undefined && ATTESTATION_METHODS.has(client.clientAuthMethod))
      if (involved) {
        const error = (ctx.body as { error?: unknown } | undefined)?.error
        if (ctx.oidc?.clientAttestation !== undefined) counters.attestationsVerified += 1
        else if (error === 'use_attestation_challenge') counters.attestationChallenges += 1
        else if (ctx.status >= 400 && error !== 'use_dpop_nonce') counters.attestationsRejected += 1
      }
    }
  })
  ciba.install(provider)
  // leak scans: everything secret that crosses the token and revocation endpoints
  provider.use(async (ctx, next) => {
    await next()
    if (ctx.method !== 'POST' || !ctx.path.startsWith('/token')) return
    const params = (ctx.oidc?.body ?? {}) as Record<string, unknown>
    announceSecret(firstString(params['client_secret']), firstString(params['client_assertion']), firstString(params['assertion']), firstString(params['subject_token']), firstString(params['refresh_token']), firstString(params['token']), ctx.get('dpop') || undefined, ctx.get('authorization').replace(/^basic /i, '') || undefined)
    const body = (ctx.body ?? {}) as { access_token?: unknown; refresh_token?: unknown }
    announceSecret(body.access_token, body.refresh_token)
  })

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
    for (const timer of delayed) clearTimeout(timer)
    delayed.clear()
    hung.clear()
    // Stop listening first (new connections get ECONNREFUSED at once), then cut every connection.
    const closing = Promise.all([closeServer(mainServer), closeServer(mtlsServer)])
    for (const socket of sockets) socket.destroy()
    sockets.clear()
    await closing
  }

  return {
    issuer,
    mtlsOrigin,
    metadataUrl: `${issuer}/.well-known/oauth-authorization-server`,
    tokenEndpoint: `${issuer}/token`,
    mtlsTokenEndpoint: `${mtlsOrigin}/token`,
    revocationEndpoint: `${issuer}/token/revocation`,
    mtlsRevocationEndpoint: `${mtlsOrigin}/token/revocation`,
    jwksUri: `${issuer}/jwks`,
    backchannelAuthenticationEndpoint: `${issuer}/backchannel`,
    challengeEndpoint: `${issuer}/challenge`,
    ciba: ciba.control,
    attester,
    jwks: { keys: [publicSigningJwk] },
    clients,
    workloadIdentity,
    get running() {
      return running
    },
    idJagIssuer: idJagIssuer?.control,
    trustIdJagIssuer: (idp) => idJagAcceptance.trust(idp),
    setIdJagSingleUse: (singleUse) => idJagAcceptance.setSingleUse(singleUse),
    addResource,
    setTokenResponseFault(fault) {
      tokenResponseFault = fault
    },
    setQuirks(next) {
      quirks = checkAuthorizationServerQuirks(next)
    },
    quirks: () => structuredClone(quirks),
    setFault(fault, faultOptions = {}) {
      if (fault !== undefined) validateFault(fault)
      const times = faultOptions.times
      if (times !== undefined && (!Number.isInteger(times) || times < 1)) throw new TypeError('times must be a positive integer')
      currentFault = fault === undefined ? undefined : structuredClone(fault)
      faultRemaining = fault === undefined ? undefined : times
      if (fault?.kind !== 'hang') releaseHung()
    },
    fault: () => (currentFault === undefined ? undefined : structuredClone(currentFault)),
    onAccessTokenRevoked(listener) {
      revocationListeners.add(listener)
      return () => {
        revocationListeners.delete(listener)
      }
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
      revocationListeners.clear()
      await stop()
    },
  }
}
