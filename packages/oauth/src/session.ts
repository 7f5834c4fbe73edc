import { z } from 'zod'
import { BoundError, assertSecureUrl, createEmitter, systemClock, type Clock, type Emitter } from '@bound/core'
import { createDpop, type Dpop, type DpopKey } from '@bound/dpop'
import { createTransport, type ClientCertificatePem, type Pem, type Transport } from '@bound/mtls'
import { noClientAuth, type ClientAuth } from './client-auth.js'
import { discoverAuthorizationServer, type AuthorizationServerMetadata } from './discovery.js'
import type { Grant } from './grants.js'
import { requestTokenFromEndpoint } from './token-endpoint.js'
import { createTokenManager, waitFor, type BackoffOptions, type RefreshOptions } from './token-manager.js'
import { createBoundToken, type BoundToken } from './token.js'

/** Options of {@link createSession}. */
export interface SessionOptions {
  /** The AS issuer identifier; metadata is discovered from it (RFC 8414). Either this or `tokenEndpoint`. */
  issuer?: string
  /** The token endpoint, when the AS publishes no metadata. */
  tokenEndpoint?: string
  /** The OAuth client id. */
  clientId: string
  /** Client authentication at the token endpoint. Default `noClientAuth()`. */
  clientAuth?: ClientAuth
  /** How tokens are earned. */
  grant: Grant
  /** A DPoP key (from `generateDpopKey`/`importDpopKey`): tokens are DPoP-bound and every request carries a proof. */
  dpop?: DpopKey
  /** A client certificate for mTLS (client auth and/or certificate-bound tokens). */
  clientCertificate?: ClientCertificatePem
  /** Extra trust anchors (PEM) for the AS and the APIs, added to Node's roots. */
  ca?: Pem | Pem[]
  /** A ready transport (overrides `ca` and `clientCertificate`). */
  transport?: Transport
  /** Lifetime assumed when the AS sends no `expires_in`, in seconds. Default 300. */
  defaultLifetime?: number
  /** Refresh-ahead schedule. */
  refresh?: RefreshOptions
  /** Back-off after failed token requests. */
  backoff?: BackoffOptions
  /** Accept `token_type: Bearer` from the AS for a DPoP request. Default false (fail closed). */
  acceptBearerDowngrade?: boolean
  /** Origins whose DPoP nonces are kept at most. Default 1,000. */
  maxNonceOrigins?: number
  /** Clock (tests). Default the system clock. */
  clock?: Clock
}

/** Parameters of one token need. */
export interface TokenRequest {
  /** Resource indicator; default the grant's. */
  resource?: string | undefined
  /** Scope; default the grant's. */
  scope?: string | undefined
  /** Extra token-request parameters (`acr_values`, `claims`, …); part of the cache key. */
  extra?: Record<string, string> | undefined
  signal?: AbortSignal | undefined
}

/** Events a session emits. Tokens appear only as redacted labels. */
export interface SessionEvents {
  'token.acquired': { label: string; cacheKey: string; type: 'DPoP' | 'Bearer'; expiresAt: number; attempts: number; waitMs: number }
  'token.failed': { cacheKey: string; code: string; message: string }
  'token.refresh_failed': { cacheKey: string; code: string; message: string }
  'token.invalidated': { label: string; cacheKey: string }
  'nonce.challenge': { origin: string; at: 'authorization-server' | 'resource-server' }
  'challenge.invalid_token': { origin: string; label: string }
  'key.rotated': { previousJkt: string; jkt: string; tokensDropped: number }
}

/** A bound session: grant + client auth + binding + token manager. */
export interface Session {
  readonly clientId: string
  readonly issuer: string | undefined
  /** DPoP state, when the session is DPoP-bound. */
  readonly dpop: Dpop | undefined
  /** The HTTP transport (AS and APIs). */
  readonly transport: Transport
  readonly events: Emitter<SessionEvents>
  /** The grant's default resource. */
  readonly resource: string | undefined
  /** A valid token for `request` (cached, or earned once however many callers wait). */
  token(request?: TokenRequest): Promise<BoundToken>
  /** Drops `token` when it is still the held generation (after `invalid_token`). */
  invalidate(token: BoundToken): void
  /**
   * Moves the session to a new DPoP key. Every token bound to the old key's `jkt` is dropped at
   * once; the next request earns one bound to the new key.
   */
  rotateDpopKey(key: DpopKey): void
  /** The AS metadata (discovered once). */
  metadata(signal?: AbortSignal): Promise<AuthorizationServerMetadata | undefined>
  /** Stops timers and drops tokens; closes the transport it created. */
  close(): Promise<void>
}

const optionsSchema = z.object({
  issuer: z.string().optional(),
  tokenEndpoint: z.string().optional(),
  clientId: z.string().min(1, 'clientId must be a non-empty string'),
  clientAuth: z.custom<ClientAuth>((v) => typeof v === 'object' && v !== null && typeof (v as ClientAuth).apply === 'function', 'clientAuth must come from clientSecretBasic(), privateKeyJwt(), … ').optional(),
  grant: z.custom<Grant>((v) => typeof v === 'object' && v !== null && typeof (v as Grant).params === 'function', 'grant must come from clientCredentials(), …'),
  dpop: z.custom<DpopKey>((v) => typeof v === 'object' && v !== null && typeof (v as DpopKey).sign === 'function' && typeof (v as DpopKey).jkt === 'string', 'dpop must be a key from generateDpopKey() or importDpopKey()').optional(),
  defaultLifetime: z.number().positive().max(86_400).optional(),
  maxNonceOrigins: z.number().int().positive().optional(),
}).passthrough()

/**
 * Creates a bound session.
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
  const parsed = optionsSchema.safeParse(options)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]
    throw new BoundError('ERR_INVALID_CONFIG', `createSession: ${issue?.path.join('.') || 'options'}: ${issue?.message ?? 'invalid'}`)
  }
  if (!options.issuer && !options.tokenEndpoint) throw new BoundError('ERR_INVALID_CONFIG', 'createSession: set issuer (for discovery) or tokenEndpoint')
  if (options.issuer) assertSecureUrl(options.issuer, 'issuer')
  if (options.tokenEndpoint) assertSecureUrl(options.tokenEndpoint, 'token endpoint')
  const clientAuth = options.clientAuth ?? noClientAuth()
  if (clientAuth.usesTlsClientCertificate && !options.clientCertificate && !options.transport) {
    throw new BoundError('ERR_INVALID_CONFIG', `createSession: ${clientAuth.method} needs a clientCertificate`)
  }
  const clock = options.clock ?? systemClock
  const ownTransport = !options.transport
  const transport = options.transport ?? createTransport({ ...(options.ca ? { ca: options.ca } : {}), ...(options.clientCertificate ? { clientCertificate: options.clientCertificate } : {}) })
  const dpop = options.dpop ? createDpop({ key: options.dpop, clock, ...(options.maxNonceOrigins ? { maxNonceOrigins: options.maxNonceOrigins } : {}) }) : undefined
  const events = createEmitter<SessionEvents>()
  const usesMtls = clientAuth.usesTlsClientCertificate || options.clientCertificate !== undefined
  const defaultLifetimeMs = (options.defaultLifetime ?? 300) * 1000
  const requests = new Map<string, TokenRequest>()

  let metadataPromise: Promise<AuthorizationServerMetadata> | undefined
  const metadata = async (signal?: AbortSignal) => {
    if (!options.issuer) return undefined
    metadataPromise ??= discoverAuthorizationServer(options.issuer, { fetch: transport.fetch }).catch((err: unknown) => {
      metadataPromise = undefined // a failure is not cached
      throw err
    })
    return waitFor(metadataPromise, signal)
  }

  const tokenEndpoint = async (signal?: AbortSignal): Promise<string> => {
    if (options.tokenEndpoint) return options.tokenEndpoint
    const meta = await metadata(signal)
    const endpoint = (usesMtls ? meta?.mtls_endpoint_aliases?.token_endpoint : undefined) ?? meta?.token_endpoint
    if (!endpoint) throw new BoundError('ERR_DISCOVERY', `The metadata of ${options.issuer} has no token_endpoint`)
    assertSecureUrl(endpoint, 'token endpoint')
    return endpoint
  }

  const manager = createTokenManager({
    clock,
    // a token bound to a key the session rotated away from is never served again
    accept: (token) => token.type !== 'DPoP' || token.binding.jkt === dpop?.jkt,
    ...(options.refresh ? { refresh: options.refresh } : {}),
    ...(options.backoff ? { backoff: options.backoff } : {}),
    onBackgroundError(cacheKey, err) {
      events.emit('token.refresh_failed', { cacheKey, code: err instanceof BoundError ? err.code : 'ERR_UNKNOWN', message: err instanceof Error ? err.message : String(err) })
    },
    async earn(cacheKey, generation, signal) {
      const request = requests.get(cacheKey) ?? {}
      const started = clock.now()
      try {
        const endpoint = await tokenEndpoint(signal)
        if (dpop) dpop.assertAlgAccepted((await metadata(signal))?.dpop_signing_alg_values_supported, `The authorization server ${options.issuer ?? endpoint}`)
        const result = await requestTokenFromEndpoint({
          endpoint,
          issuer: options.issuer,
          clientId: options.clientId,
          clientAuth,
          grant: options.grant,
          resource: request.resource ?? options.grant.resource,
          scope: request.scope ?? options.grant.scope,
          extra: request.extra ?? {},
          dpop,
          fetch: transport.fetch,
          clock,
          signal,
          acceptBearerDowngrade: options.acceptBearerDowngrade ?? false,
          onResponse: ({ nonceRetry }) => {
            if (nonceRetry) events.emit('nonce.challenge', { origin: new URL(endpoint).origin, at: 'authorization-server' })
          },
        })
        const receivedAt = clock.now()
        const { response } = result
        const token = createBoundToken({
          value: response.access_token,
          type: result.type,
          receivedAt,
          expiresAt: receivedAt + (response.expires_in !== undefined ? response.expires_in * 1000 : defaultLifetimeMs),
          lifetimeAssumed: response.expires_in === undefined,
          scope: response.scope ?? request.scope ?? options.grant.scope,
          cacheKey,
          generation,
          binding: result.type === 'DPoP' && result.jkt ? { jkt: result.jkt } : {},
        })
        events.emit('token.acquired', { label: token.label, cacheKey, type: token.type, expiresAt: token.expiresAt, attempts: result.attempts, waitMs: receivedAt - started })
        return token
      } catch (err) {
        events.emit('token.failed', { cacheKey, code: err instanceof BoundError ? err.code : 'ERR_UNKNOWN', message: err instanceof Error ? err.message : String(err) })
        throw err
      }
    },
  })

  return {
    clientId: options.clientId,
    issuer: options.issuer,
    dpop,
    transport,
    events,
    resource: options.grant.resource,
    metadata,
    token(request = {}) {
      const resource = request.resource ?? options.grant.resource
      const scope = request.scope ?? options.grant.scope
      const extra = request.extra ? Object.fromEntries(Object.entries(request.extra).sort(([a], [b]) => (a < b ? -1 : 1))) : {}
      const cacheKey = JSON.stringify([resource ?? null, scope ?? null, extra, dpop?.jkt ?? null])
      if (!requests.has(cacheKey)) requests.set(cacheKey, { resource, scope, extra })
      return manager.get(cacheKey, request.signal)
    },
    invalidate(token) {
      if (manager.invalidate(token)) events.emit('token.invalidated', { label: token.label, cacheKey: token.cacheKey })
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
    async close() {
      manager.close()
      if (ownTransport) await transport.close()
    },
  }
}
