import { z } from 'zod'
import { BoundError, assertSecureUrl, publishEvent, systemClock, type Clock, type Emitter } from '@bound/core'
import { clockRule, createEmitter, durationMs, functionRule, optionsChecker, pemListRule } from '@bound/core/internal'
import { createDpop, generateDpopKey, type Dpop, type DpopKey } from '@bound/dpop'
import { createTransport, type Interceptor, type ProxySetting, type Transport } from '@bound/http'
import type { ClientCertificate, ClientCertificatePem, Pem } from '@bound/mtls'
import { createAcquisition } from './acquisition.js'
import { createFleet, type Fleet, type SharedStoreOptions } from './fleet.js'
import { createBinding, type PostureAnswer } from './binding.js'
import { noClientAuth, type ClientAuth } from './client-auth.js'
import type { AuthorizationServerMetadata } from './discovery.js'
import type { Grant } from './grants.js'
import type { ProtectedResourceMetadata } from './protected-resource.js'
import { instrumentSession, type TelemetryOptions } from './telemetry.js'
import type { TokenResponse } from './token-endpoint.js'
import { createTokenCache } from './token-cache.js'
import type { BackoffOptions, RefreshOptions } from './token-manager.js'
import type { BoundToken } from './token.js'

/**
 * Options of {@link createSession}.
 *
 * @example
 * ```ts
 * const options: SessionOptions = {
 *   issuer: 'https://as.example.com',
 *   clientId: 'orders-worker',
 *   clientAuth: clientSecretBasic(process.env.CLIENT_SECRET!),
 *   grant: clientCredentials({ resource: 'https://api.example.com' }),
 *   dpop: await generateDpopKey(),
 *   refresh: { ahead: 0.3 },
 *   tokenRequestTimeoutMs: 5_000,
 * }
 * const session = createSession(options)
 * ```
 */
export interface SessionOptions {
  /**
   * The AS issuer identifier; metadata is discovered from it (RFC 8414). Without it (and without
   * `tokenEndpoint`) a bound fetch learns the AS from the resource server's RFC 9728 metadata —
   * for a session that sends no credentials to its AS (no client authentication, no client
   * certificate, the client credentials grant); any other session uses only an AS that
   * `trustedIssuers` lists.
   */
  issuer?: string
  /**
   * For a session without `issuer`/`tokenEndpoint` that authenticates to its AS: the issuers a
   * protected resource's RFC 9728 metadata may name, as a list or a predicate. Default none: such a
   * session refuses (`ERR_INVALID_CONFIG`) an AS it learns from metadata, before any credential
   * leaves.
   */
  trustedIssuers?: readonly string[] | ((issuer: string) => boolean)
  /** Tokens (one per resource, scope and step-up approval) held at most; the least recently used goes first. Default 256. */
  maxCachedTokens?: number
  /**
   * Capabilities the client declares on every token request (Microsoft Entra CAE: `['cp1']`), as
   * `claims={"access_token":{"xms_cc":{"values":[…]}}}` — merged into any other claims a request
   * carries (a claims challenge's, a step-up's). Entra sends claims challenges, and issues
   * CAE-capable tokens, only to clients that declare `cp1`.
   */
  clientCapabilities?: readonly string[]
  /** The token endpoint, when the AS publishes no metadata. */
  tokenEndpoint?: string
  /** The revocation endpoint, when the AS publishes no metadata. */
  revocationEndpoint?: string
  /** The OAuth client id. */
  clientId: string
  /** Client authentication at the token endpoint. Default `noClientAuth()`. */
  clientAuth?: ClientAuth
  /** How tokens are earned. */
  grant: Grant
  /** A DPoP key (from `generateDpopKey`/`importDpopKey`): tokens are DPoP-bound and every request carries a proof. */
  dpop?: DpopKey
  /**
   * A client certificate for mTLS (client auth and/or certificate-bound tokens): PEM, or a watched
   * source from `loadClientCertificate({ …, watch: true })`. Tokens earned over it are dropped when
   * it rotates.
   */
  clientCertificate?: ClientCertificatePem | ClientCertificate
  /** Extra trust anchors (PEM) for the AS and the APIs, added to Node's roots. */
  ca?: Pem | Pem[]
  /**
   * The egress proxy for the AS and the APIs: `'env'` (default: `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY`,
   * read when the session is made), `false`, or a URL / `{ url, noProxy }`. Loopback never uses it.
   * See `@bound/http`.
   */
  proxy?: ProxySetting
  /**
   * undici interceptors (`dns`, `cache`, your own) composed beneath Bound on every connection it
   * makes, in order; Bound's certificate routing stays on top. See `@bound/http` for the order.
   */
  interceptors?: readonly Interceptor[]
  /** A ready transport from `@bound/http`'s `createTransport` (then `ca`, `clientCertificate`, `proxy` and `interceptors` belong there). */
  transport?: Transport
  /** Lifetime assumed when the AS sends no `expires_in`, in milliseconds. Default 300,000 (5 minutes). */
  defaultLifetimeMs?: number
  /** Refresh-ahead schedule. */
  refresh?: RefreshOptions
  /** Back-off after failed token requests. */
  backoff?: BackoffOptions
  /** Give up on a request to the AS (discovery, token, revocation) that has not answered within this many milliseconds. Default 10,000. */
  tokenRequestTimeoutMs?: number
  /**
   * Called with every new refresh token before the access token that came with it is used, so a
   * workload can persist it (GRANT-06). The old one is never sent again.
   */
  onRefreshToken?: (refreshToken: string) => void | Promise<void>
  /** Accept `token_type: Bearer` from the AS for a DPoP request. Default false (fail closed). */
  acceptBearerDowngrade?: boolean
  /** Origins whose DPoP nonces are kept at most. Default 1,000. */
  maxNonceOrigins?: number
  /** Clock (tests). Default the system clock. */
  clock?: Clock
  /** Logging and OpenTelemetry (see {@link TelemetryOptions}). Default: silent logs; OpenTelemetry when installed. */
  telemetry?: TelemetryOptions
  /**
   * The context tokens are issued under, besides the DPoP key and the client certificate (which
   * are always part of it): a workload identity and a fingerprint of whatever else must not change
   * under a token (egress network, deployment revision…). Read on every token need; when a value
   * changes, every token issued under the old context is dropped before the next request, new
   * ones are earned, and `context.changed` says which element changed.
   */
  context?: {
    /** The workload's identity. Default: the client certificate's SPIFFE ID, when there is one. */
    workloadId?: string | (() => string)
    /** Any string standing for the rest of the context. */
    fingerprint?: () => string
  }
  /**
   * A posture check: evaluated before every token request (background refreshes included) and,
   * on use, at most every `postureIntervalMs`. While it says unhealthy, no credentialed
   * request and no token request leaves the process (`ERR_POSTURE_UNHEALTHY` with its reason),
   * held tokens are dropped and, with `revokeWhenUnhealthy`, every unexpired token the session
   * obtained is revoked; healthy again, the session resumes by itself.
   */
  posture?: () => Promise<PostureAnswer> | PostureAnswer
  /** Milliseconds a posture answer is reused. Default 10,000. */
  postureIntervalMs?: number
  /** Revoke (RFC 7009) every unexpired token the session obtained when the posture turns unhealthy. Default false. */
  revokeWhenUnhealthy?: boolean
  /**
   * Share tokens with the other processes of a fleet through a store (`@bound/redis`, or any
   * `TokenStore`): one process earns a key's token, the others take it, a rotating refresh token is
   * redeemed by one process per generation, values are sealed with `encryptionKey`, and the store
   * is never waited on longer than its bounds (see {@link SharedStoreOptions}). Processes share
   * tokens only when they share the binding (the same DPoP key or certificate). Default: none (each
   * process has its own cache).
   */
  store?: SharedStoreOptions
}

/**
 * A step-up approval a token is earned under (RFC 9470). It is scoped: a token earned with it is
 * held for the origin that asked for it (and the request's resource), and never served for another.
 *
 * @example
 * ```ts
 * const stepUp: StepUpApproval = { origin: 'https://payments.example.com', level: 'acr=urn:example:mfa', params: { acr_values: 'urn:example:mfa' } }
 * ```
 */
export interface StepUpApproval {
  /** The origin whose challenge asked for the level: the token is for it alone. */
  readonly origin: string
  /** A label for the level (acr values, max_age): part of the cache key, never sent. */
  readonly level: string
  /**
   * The token-request parameters for the level (`acr_values`, `max_age`…), sent to the AS as they
   * are. Absent for a token the application handed over (`adopt`), which is never earned again.
   */
  readonly params?: Readonly<Record<string, string>> | undefined
}

/**
 * What one token need asks for. Everything a token request sends travels here, and stays with the
 * cache entry it makes: the session invents nothing and forgets nothing.
 *
 * @example
 * ```ts
 * const token = await session.token({ resource: 'https://orders.example.com', scope: 'orders:write', signal: AbortSignal.timeout(5_000) })
 * ```
 */
export interface TokenRequest {
  /** Resource indicator (RFC 8707); default the grant's. */
  resource?: string | undefined
  /** Scope; default the grant's. */
  scope?: string | undefined
  /** The step-up approval the token must carry (see {@link StepUpApproval}). */
  stepUp?: StepUpApproval | undefined
  /**
   * A claims challenge's `claims` (JSON): a token is earned now with it, and replaces the held one
   * for the rest of this request's parameters (its refreshes do not repeat the claims).
   */
  claims?: string | undefined
  /** Stops waiting (the shared token request goes on for other callers). */
  signal?: AbortSignal | undefined
}

/**
 * Events a session emits. Tokens appear only as redacted labels.
 *
 * @example
 * ```ts
 * session.events.on('token.acquired', (e: SessionEvents['token.acquired']) => log.info({ label: e.label, grant: e.grant }, 'token'))
 * session.events.on('token.backoff', (e) => log.warn({ until: new Date(e.until), code: e.code }, 'backing off'))
 * ```
 */
export interface SessionEvents {
  /** `reason`: `refresh` for a background refresh ahead of expiry (nobody waited), `demand` when a caller needed it. */
  'token.acquired': { label: string; cacheKey: string; type: 'DPoP' | 'Bearer'; grant: string; expiresAt: number; attempts: number; waitMs: number; reason: 'demand' | 'refresh' }
  'token.failed': { cacheKey: string; code: string; message: string }
  'token.refresh_failed': { cacheKey: string; code: string; message: string }
  'token.backoff': { cacheKey: string; failures: number; until: number; code: string }
  /** A caller had to wait for a token request (the first token, or one after expiry). */
  'token.wait': { cacheKey: string; ms: number }
  'token.invalidated': { label: string; cacheKey: string }
  'token.revoked': { label: string; hint: 'access_token' | 'refresh_token' }
  'nonce.challenge': { origin: string; at: 'authorization-server' | 'resource-server' }
  'challenge.invalid_token': { origin: string; label: string }
  'key.rotated': { previousJkt: string; jkt: string; tokensDropped: number }
  'certificate.rotated': { previousX5t: string; x5t: string; subject: string; tokensDropped: number }
  /** The context tokens are issued under changed (`element`): tokens of the old context were dropped. */
  'context.changed': { element: 'workload-id' | 'fingerprint'; tokensDropped: number }
  /** The posture check changed its answer. */
  'posture.changed': { healthy: boolean; reason: string | undefined }
  /** A bound fetch met a challenge: `answered` (and retried) or `returned` to the caller. */
  'challenge.handled': { origin: string; kind: string; outcome: 'answered' | 'returned' }
  /**
   * A request was aimed at an origin that is not in the bound fetch's `origins`, and went without
   * credentials: reported once per origin, with the listed origin most like it (a typo?).
   */
  'origin.unlisted': { origin: string; nearest: string | undefined }
  /** A step-up: `approved` (onStepUp gave parameters or a token), `reused` (a level already approved), `declined`. */
  'challenge.step_up': { origin: string; acrValues: string | undefined; outcome: 'approved' | 'reused' | 'declined' }
  /** A token another process of the fleet earned, taken from the shared store (`generation`: the store's). */
  'token.shared': { label: string; cacheKey: string; generation: number; waitMs: number }
  /** The shared store failed (`error`) or did not answer in time (`timeout`): the session works alone until `retryAt`. */
  'store.degraded': { operation: string; reason: 'timeout' | 'error'; message: string; retryAt: number }
  /** The shared store answers again after `downMs`: fleet coordination resumed. */
  'store.recovered': { downMs: number }
  /** A caller waited on the store (lease, another process's token request) up to its bound and earned here. */
  'store.wait_exceeded': { cacheKey: string; ms: number; storeAvailable: boolean }
}

/**
 * A bound session. Made by {@link createSession}.
 *
 * The request side (the bound fetch, the undici interceptor, every integration) uses a session
 * through one seam and nothing else: {@link Session.token | token} (and its synchronous
 * {@link Session.tokenNow | tokenNow}), {@link Session.adopt | adopt},
 * {@link Session.invalidate | invalidate}, {@link Session.isCurrent | isCurrent} and
 * {@link Session.useResourceMetadata | useResourceMetadata}, plus the binding it sends with
 * (`dpop`, `transport`) and `events`. Cache keys and token-request parameters are the session's
 * own business.
 *
 * @example
 * ```ts
 * const session: Session = createSession({ … })
 * const token = await session.token()
 * await session.close({ revoke: true })
 * ```
 */
export interface Session {
  /** The OAuth client id. */
  readonly clientId: string
  /** The AS issuer: the configured one, or the one learned from a protected resource (RFC 9728). */
  readonly issuer: string | undefined
  /** DPoP state, when the session is DPoP-bound. */
  readonly dpop: Dpop | undefined
  /** The HTTP transport (AS and APIs). */
  readonly transport: Transport
  /** Token, nonce, challenge and rotation events (see {@link SessionEvents}). */
  readonly events: Emitter<SessionEvents>
  /** The default resource indicator: the grant's. */
  readonly resource: string | undefined
  /** Whether the session knows where to earn tokens: an issuer or token endpoint, given or learned (RFC 9728). */
  readonly hasAuthorizationServer: boolean
  /**
   * Takes what a protected resource's RFC 9728 metadata says: its authorization server (when the
   * session has none yet, and only where that is safe: see `trustedIssuers`; refused when it names
   * others only) and its binding requirements. Throws before any credential leaves.
   */
  useResourceMetadata(metadata: ProtectedResourceMetadata): void
  /** A valid token for `request` (cached, or earned once however many callers wait). */
  token(request?: TokenRequest): Promise<BoundToken>
  /**
   * The token {@link token} would resolve with at once — held, valid, and with no posture check
   * to make first — or `undefined` when `token()` would have to wait (earn, ask the posture check,
   * answer a claims challenge). Never earns, never throws. The integrations' synchronous fast path:
   * it marks the token used and starts a due background refresh exactly as `token()` does.
   */
  tokenNow(request?: TokenRequest): BoundToken | undefined
  /** Earns a new token for `request` now, whatever is held (joins one in flight). */
  forceRefresh(request?: TokenRequest): Promise<BoundToken>
  /** Drops `token` when it is still the held generation (after `invalid_token`). */
  invalidate(token: BoundToken): void
  /**
   * Holds a token set the application obtained itself (an interactive or CIBA step-up) for
   * `request`: validated like a token endpoint response and checked against the binding. It is
   * never refreshed; under a step-up approval without `params` it is never earned again either.
   */
  adopt(request: TokenRequest, tokenSet: Record<string, unknown>): BoundToken
  /** Whether `token` may still be sent: its binding (DPoP key, client certificate) is the session's current one. */
  isCurrent(token: BoundToken): boolean
  /**
   * Moves the session to a new DPoP key. Every token bound to the old key's `jkt` is dropped at
   * once; the next request earns one bound to the new key.
   */
  rotateDpopKey(key: DpopKey): void
  /**
   * Moves to a freshly generated DPoP key (same alg), drops every token, and revokes (RFC 7009)
   * every unexpired token it obtained when the AS has a revocation endpoint (best effort).
   */
  rotate(): Promise<void>
  /** The AS metadata (discovered once). */
  metadata(signal?: AbortSignal): Promise<AuthorizationServerMetadata | undefined>
  /**
   * One token request with `grant` — not cached, not single-flight — with the session's client
   * authentication and binding (DPoP proof, nonce retry, token-type check). For flows the session
   * does not run itself, such as polling a CIBA request.
   */
  requestToken(grant: Grant, request?: Pick<TokenRequest, 'resource' | 'scope' | 'signal'>): Promise<TokenResponse & { token_type: 'DPoP' | 'Bearer' }>
  /**
   * POSTs a form to the AS's CIBA backchannel authentication endpoint with the session's client
   * authentication; resolves with the JSON answer (`auth_req_id`, `expires_in`, `interval`).
   */
  backchannelAuthenticate(params: Record<string, string>, signal?: AbortSignal): Promise<{ auth_req_id: string; expires_in: number; interval?: number }>
  /**
   * Stops timers and drops tokens; with `revoke: true`, first revokes (RFC 7009) the refresh token
   * and every unexpired access token the session obtained — those it holds, and those a refresh
   * superseded or the cache let go. Closes the transport it created. Idempotent.
   */
  close(options?: { revoke?: boolean; signal?: AbortSignal; bestEffort?: boolean }): Promise<void>
  /** `close({ revoke: true, bestEffort: true })`, for `await using`: the session ends with its scope, and what it obtained is revoked. */
  [Symbol.asyncDispose](): Promise<void>
}

const fn = (what: string) => functionRule(`must be ${what}`)
const object = (message: string, has: (v: Record<string, unknown>) => boolean) => z.custom((v) => typeof v === 'object' && v !== null && has(v as Record<string, unknown>), message)
const checkRefresh = optionsChecker('createSession: refresh', {
  ahead: z.number().gt(0).lt(1).optional(),
  minAheadMs: durationMs(0, 86_400_000).optional(),
  jitter: z.number().min(0).max(1).optional(),
  steadyJitter: z.number().min(0).max(1).optional(),
  expirySkewMs: durationMs(0, 3_600_000).optional(),
  background: z.boolean().optional(),
})
const checkBackoff = optionsChecker('createSession: backoff', {
  initialMs: durationMs(1, 3_600_000).optional(),
  maxMs: durationMs(1, 86_400_000).optional(),
  maxRetryAfterMs: durationMs(0, 86_400_000).optional(),
})
const checkContext = optionsChecker('createSession: context', {
  workloadId: z.union([z.string().min(1), fn('a string or a function')]).optional(),
  fingerprint: fn('a function returning a string').optional(),
})
const checkTelemetry = optionsChecker('createSession: telemetry', {
  logger: z.custom((v) => typeof v === 'object' && v !== null, 'must be a logger ({ info, warn, … })').optional(),
  openTelemetry: z.boolean().optional(),
})
const checkStore = optionsChecker('createSession: store', {
  store: object('must be a TokenStore (createRedisTokenStore() from @bound/redis, or your own)', (v) => ['get', 'put', 'invalidate', 'acquireLease', 'holdsLease', 'releaseLease', 'subscribe'].every((m) => typeof v[m] === 'function')),
  encryptionKey: z.custom((v) => v !== undefined && v !== null && v !== '', 'is required: 32 bytes (AES-256-GCM) every process of the fleet shares, e.g. `openssl rand -base64 32`'),
  partition: z.string().min(1).max(512).optional(),
  timeoutMs: durationMs(1, 60_000).optional(),
  waitMs: durationMs(1, 600_000).optional(),
  leaseMs: durationMs(100, 3_600_000).optional(),
  retryMs: durationMs(1, 600_000).optional(),
  pollMs: durationMs(1, 60_000).optional(),
})
const checkSessionOptions = optionsChecker('createSession', {
  issuer: z.string().optional(),
  trustedIssuers: z.union([z.array(z.string()), fn('a list of issuers or a predicate')]).optional(),
  maxCachedTokens: z.number().int().positive().optional(),
  clientCapabilities: z.array(z.string().min(1, 'must be non-empty strings')).optional(),
  tokenEndpoint: z.string().optional(),
  revocationEndpoint: z.string().optional(),
  clientId: z.string({ error: 'must be a non-empty string' }).min(1, 'must be a non-empty string'),
  clientAuth: object('must come from clientSecretBasic(), privateKeyJwt(), …', (v) => typeof v.apply === 'function').optional(),
  grant: object('must come from clientCredentials(), tokenExchange(), …', (v) => typeof v.params === 'function'),
  dpop: object('must be a key from generateDpopKey() or importDpopKey()', (v) => typeof v.sign === 'function' && typeof v.jkt === 'string').optional(),
  clientCertificate: z.custom((v) => typeof v === 'object' && v !== null, 'must be { cert, key } PEM or a source from loadClientCertificate()').optional(),
  ca: pemListRule.optional(),
  proxy: z.unknown().optional(),
  interceptors: z.unknown().optional(),
  transport: object('must be a transport from createTransport()', (v) => typeof v.request === 'function').optional(),
  defaultLifetimeMs: durationMs(1_000, 86_400_000).optional(),
  refresh: z.unknown().optional(),
  backoff: z.unknown().optional(),
  tokenRequestTimeoutMs: durationMs(100, 600_000).optional(),
  onRefreshToken: fn('a function').optional(),
  acceptBearerDowngrade: z.boolean().optional(),
  maxNonceOrigins: z.number().int().positive().optional(),
  clock: clockRule.optional(),
  telemetry: z.unknown().optional(),
  context: z.unknown().optional(),
  posture: fn('a function').optional(),
  postureIntervalMs: durationMs(0, 86_400_000).optional(),
  revokeWhenUnhealthy: z.boolean().optional(),
  store: z.unknown().optional(),
})

const NO_EXTRA: Readonly<Record<string, string>> = Object.freeze({})

/**
 * Creates a bound session: the seam (see {@link Session}) over three parts — the binding (key,
 * certificate, context, posture), token acquisition (the AS, grants, client authentication,
 * revocation) and the token manager (cache, refresh-ahead, single-flight, back-off).
 *
 * @example
 * ```ts
 * import { createSession, clientCredentials, privateKeyJwt } from '@bound/oauth'
 * import { generateDpopKey } from '@bound/dpop'
 * const session = createSession({
 *   issuer: 'https://as.example.com',
 *   clientId: 'orders-worker',
 *   clientAuth: privateKeyJwt(signingKeyPem),
 *   grant: clientCredentials({ resource: 'https://api.example.com', scope: 'orders:read' }),
 *   dpop: await generateDpopKey(),
 * })
 * const token = await session.token()
 * ```
 */
export function createSession(options: SessionOptions): Session {
  checkSessionOptions(options)
  checkRefresh(options.refresh)
  checkBackoff(options.backoff)
  checkContext(options.context)
  checkTelemetry(options.telemetry)
  checkStore(options.store)
  if (options.store && options.store.partition === undefined && options.grant.type !== 'client_credentials') {
    throw new BoundError('ERR_INVALID_CONFIG', `createSession: store.partition is required with the ${options.grant.type} grant: it acts for a subject, and sessions of different subjects must not share tokens (give the tenant or user id)`)
  }
  if (options.issuer) assertSecureUrl(options.issuer, 'issuer')
  if (options.tokenEndpoint) assertSecureUrl(options.tokenEndpoint, 'token endpoint')
  if (options.revocationEndpoint) assertSecureUrl(options.revocationEndpoint, 'revocation endpoint')
  if (Array.isArray(options.trustedIssuers)) options.trustedIssuers.forEach((t, i) => assertSecureUrl(t, `trustedIssuers[${i}]`))
  const clientAuth = options.clientAuth ?? noClientAuth()
  if (clientAuth.usesTlsClientCertificate && !options.clientCertificate && !options.transport?.hasClientCertificate) {
    throw new BoundError('ERR_INVALID_CONFIG', `createSession: ${clientAuth.method} needs a clientCertificate`)
  }
  const clock = options.clock ?? systemClock
  const ownTransport = !options.transport
  if (options.transport && (options.proxy !== undefined || options.interceptors !== undefined)) {
    throw new BoundError('ERR_INVALID_CONFIG', 'createSession: proxy and interceptors are options of the transport you passed (createTransport({ proxy, interceptors }))')
  }
  const transport = options.transport ?? createTransport({
    ...(options.ca ? { ca: options.ca } : {}),
    ...(options.clientCertificate ? { clientCertificate: options.clientCertificate } : {}),
    ...(options.proxy !== undefined ? { proxy: options.proxy } : {}),
    ...(options.interceptors !== undefined ? { interceptors: options.interceptors } : {}),
  })
  const dpop = options.dpop ? createDpop({ key: options.dpop, clock, ...(options.maxNonceOrigins ? { maxNonceOrigins: options.maxNonceOrigins } : {}) }) : undefined
  const events = createEmitter<SessionEvents>((type, event) => publishEvent(type as string, event))
  const defaultLifetimeMs = options.defaultLifetimeMs ?? 300_000
  const grant = options.grant
  let closed = false

  const binding = createBinding({
    dpop,
    transport,
    clock,
    context: options.context,
    posture: options.posture,
    postureIntervalMs: options.postureIntervalMs ?? 10_000,
    onContextChanged(element) {
      // every token of the old context goes before the next request
      events.emit('context.changed', { element, tokensDropped: manager.dropWhere(() => true) })
    },
    onPostureChanged(healthy, reason) {
      events.emit('posture.changed', { healthy, reason })
      if (healthy) return
      manager.clear()
      // every token obtained and unexpired: the one in use when the posture turned, and those it superseded
      if (options.revokeWhenUnhealthy) void acquisition.revoke().catch(() => {})
    },
  })

  const tokenRequestTimeoutMs = options.tokenRequestTimeoutMs ?? 10_000
  const fleet: Fleet | undefined = options.store
    ? createFleet({
        shared: options.store,
        events,
        leaseMs: options.store.leaseMs ?? tokenRequestTimeoutMs + 5_000,
        // who the session is: the AS, the client, the grant, the partition, the certificate (the key is in every cache key)
        identity: () => JSON.stringify([acquisition.issuer ?? options.tokenEndpoint ?? '', options.clientId, grant.type, options.store?.partition ?? '', transport.clientCertificate?.current().x5t ?? '']),
        accept: (token) => binding.isCurrent(token),
        invalidateLocal(cacheKey, generation) {
          for (const token of manager.held()) {
            if (token.cacheKey === cacheKey && fleet?.generationOf(token) === generation && manager.invalidate(token)) events.emit('token.invalidated', { label: token.label, cacheKey })
          }
        },
        held: () => manager.held(),
      })
    : undefined

  const acquisition = createAcquisition({
    issuer: options.issuer,
    tokenEndpoint: options.tokenEndpoint,
    revocationEndpoint: options.revocationEndpoint,
    trustedIssuers: options.trustedIssuers,
    clientId: options.clientId,
    clientAuth,
    grant,
    dpop,
    transport,
    clock,
    events,
    tokenRequestTimeoutMs,
    acceptBearerDowngrade: options.acceptBearerDowngrade ?? false,
    onRefreshToken: options.onRefreshToken,
    fleet,
    familyKey: binding.key,
  })

  const cache = createTokenCache({
    binding,
    acquisition,
    events,
    clock,
    grant,
    dpop,
    defaultLifetimeMs,
    acceptBearerDowngrade: options.acceptBearerDowngrade ?? false,
    refresh: options.refresh,
    backoff: options.backoff,
    maxEntries: options.maxCachedTokens,
    clientCapabilities: options.clientCapabilities,
    fleet,
  })
  const { manager } = cache

  const offRotated = transport.clientCertificate?.events.on('rotated', ({ previous, current }) => {
    const tokensDropped = manager.dropWhere((t) => t.binding.x5t === previous.x5t)
    events.emit('certificate.rotated', { previousX5t: previous.x5t, x5t: current.x5t, subject: current.subject, tokensDropped })
  })

  const close = async (closeOptions: { revoke?: boolean; signal?: AbortSignal; bestEffort?: boolean } = {}) => {
    if (closed) return
    closed = true
    offRotated?.()
    manager.close()
    try {
      if (closeOptions.revoke) await acquisition.revoke(undefined, true, closeOptions.signal).catch((err: unknown) => {
        if (!closeOptions.bestEffort) throw err
      })
    } finally {
      fleet?.close() // (after the revocation: it tells the fleet)
      acquisition.forget()
      // a grant holding credentials of its own (identityAssertionGrant's ID-JAGs) revokes and forgets them while the transport is open
      const grantFailure: unknown = await grant.close?.({ revoke: closeOptions.revoke === true, signal: closeOptions.signal }).then(() => undefined, (err: unknown) => err)
      if (ownTransport) await transport.close()
      if (grantFailure !== undefined && !closeOptions.bestEffort) throw grantFailure
    }
  }

  const session: Session = {
    clientId: options.clientId,
    get issuer() {
      return acquisition.issuer
    },
    get hasAuthorizationServer() {
      return acquisition.ready
    },
    dpop,
    transport,
    events,
    resource: grant.resource,
    metadata: acquisition.metadata,
    useResourceMetadata(prm) {
      acquisition.learnIssuer(prm)
      if (prm.dpop_bound_access_tokens_required && !dpop) {
        throw new BoundError('ERR_INVALID_CONFIG', `The protected resource ${prm.resource} requires DPoP-bound tokens (RFC 9728 dpop_bound_access_tokens_required); give the session a DPoP key`)
      }
      if (dpop) dpop.assertAlgAccepted(prm.dpop_signing_alg_values_supported, `The protected resource ${prm.resource}`)
      if (prm.tls_client_certificate_bound_access_tokens && !transport.hasClientCertificate && !dpop) {
        throw new BoundError('ERR_INVALID_CONFIG', `The protected resource ${prm.resource} requires certificate-bound tokens (RFC 9728 tls_client_certificate_bound_access_tokens); give the session a client certificate`)
      }
    },
    token(req = {}) {
      // (the hot path: no posture check configured → no extra promise)
      const posture = binding.checkPosture()
      return posture ? posture.then(() => cache.token(req)) : cache.token(req)
    },
    // (a posture check is asked through token(): its answer may be stale)
    tokenNow: (req = {}) => (options.posture === undefined ? cache.tokenNow(req) : undefined),
    forceRefresh: (req = {}) => cache.forceRefresh(req),
    isCurrent: binding.isCurrent,
    adopt: (req, tokenSet) => cache.adopt(req, tokenSet),
    invalidate(token) {
      if (manager.invalidate(token)) events.emit('token.invalidated', { label: token.label, cacheKey: token.cacheKey })
      fleet?.invalidate(token) // every process of the fleet drops it too
    },
    rotateDpopKey(key) {
      if (!dpop) throw new BoundError('ERR_INVALID_CONFIG', 'rotateDpopKey: this session has no DPoP key')
      if (typeof key?.sign !== 'function' || typeof key.jkt !== 'string') throw new BoundError('ERR_INVALID_CONFIG', 'rotateDpopKey needs a key from generateDpopKey() or importDpopKey()')
      const previousJkt = dpop.jkt
      if (previousJkt === key.jkt) return
      dpop.rotate(key)
      const tokensDropped = manager.dropWhere((t) => t.binding.jkt === previousJkt)
      events.emit('key.rotated', { previousJkt, jkt: key.jkt, tokensDropped })
    },
    async requestToken(g, req = {}) {
      await binding.checkPosture()
      const result = await acquisition.request(g, { resource: req.resource ?? grant.resource, scope: req.scope ?? grant.scope, extra: NO_EXTRA }, req.signal)
      return { ...result.response, token_type: result.type }
    },
    async backchannelAuthenticate(params, signal) {
      await binding.checkPosture()
      return acquisition.backchannelAuthenticate(params, signal)
    },
    async rotate() {
      if (!dpop) throw new BoundError('ERR_INVALID_CONFIG', 'rotate: this session has no DPoP key')
      session.rotateDpopKey(await generateDpopKey({ alg: dpop.key.alg }))
      manager.clear()
      await acquisition.revoke().catch(() => {}) // best effort: the old tokens are bound to a key nobody holds any more
    },
    close,
    // `await using session = createSession(…)`: the session ends with its scope, and what it obtained is revoked (best effort)
    [Symbol.asyncDispose]: () => close({ revoke: true, bestEffort: true }),
  }
  instrumentSession(session, options.telemetry)
  return session
}
