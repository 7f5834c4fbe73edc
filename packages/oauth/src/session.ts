import { z } from 'zod'
import { BoundError, TokenEndpointError, assertSecureUrl, createEmitter, publishEvent, systemClock, type Clock, type Emitter } from '@bound/core'
import { instrumentSession, type TelemetryOptions } from './telemetry.js'
import { createDpop, generateDpopKey, type Dpop, type DpopKey } from '@bound/dpop'
import { createTransport, type ClientCertificate, type ClientCertificatePem, type Pem, type Transport } from '@bound/mtls'
import { noClientAuth, type ClientAuth } from './client-auth.js'
import { discoverAuthorizationServer, type AuthorizationServerMetadata } from './discovery.js'
import type { ProtectedResourceMetadata } from './protected-resource.js'
import { refreshWith, type Grant } from './grants.js'
import { revokeToken } from './revocation.js'
import { parseTokenResponse, requestTokenFromEndpoint, type TokenEndpointResult, type TokenResponse } from './token-endpoint.js'
import { createTokenManager, waitFor, type BackoffOptions, type RefreshOptions } from './token-manager.js'
import { createBoundToken, type BoundToken } from './token.js'

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
 *   tokenRequestTimeout: 5,
 * }
 * const session = createSession(options)
 * ```
 */
export interface SessionOptions {
  /**
   * The AS issuer identifier; metadata is discovered from it (RFC 8414). Without it (and without
   * `tokenEndpoint`) a bound fetch learns the AS from the resource server's RFC 9728 metadata.
   */
  issuer?: string
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
  /** A ready transport (overrides `ca` and `clientCertificate`). */
  transport?: Transport
  /** Lifetime assumed when the AS sends no `expires_in`, in seconds. Default 300. */
  defaultLifetime?: number
  /** Refresh-ahead schedule. */
  refresh?: RefreshOptions
  /** Back-off after failed token requests. */
  backoff?: BackoffOptions
  /** Give up on a token request attempt that has not answered within this many seconds. Default 10. */
  tokenRequestTimeout?: number
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
   * A posture check: evaluated before a token is earned and, on use, at most every
   * `postureInterval` seconds. While it says unhealthy, no credentialed request leaves the process
   * (`ERR_POSTURE_UNHEALTHY` with its reason) and, with `revokeWhenUnhealthy`, held tokens are
   * revoked; healthy again, the session resumes by itself.
   */
  posture?: () => Promise<{ healthy: boolean; reason?: string; claims?: Record<string, unknown> }> | { healthy: boolean; reason?: string; claims?: Record<string, unknown> }
  /** Seconds a posture answer is reused. Default 10. */
  postureInterval?: number
  /** Revoke held tokens (RFC 7009) when the posture turns unhealthy. Default false. */
  revokeWhenUnhealthy?: boolean
}

/**
 * Parameters of one token need.
 *
 * @example
 * ```ts
 * const token = await session.token({ scope: 'orders:write', signal: AbortSignal.timeout(5_000) })
 * ```
 */
export interface TokenRequest {
  /** Resource indicator; default the grant's. */
  resource?: string | undefined
  /** Scope; default the grant's. */
  scope?: string | undefined
  /** Extra token-request parameters (`acr_values`, `claims`, …); part of the cache key. */
  extra?: Record<string, string> | undefined
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
  /** A step-up: `approved` (onStepUp gave parameters or a token), `reused` (a level already approved), `declined`. */
  'step_up': { origin: string; acrValues: string | undefined; outcome: 'approved' | 'reused' | 'declined' }
}

/**
 * A bound session: grant + client auth + binding + token manager. Made by {@link createSession}.
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
  /** The default resource indicator: the grant's, or the one learned from the protected resource's metadata. */
  readonly resource: string | undefined
  /** Whether the session knows where to earn tokens (an issuer or token endpoint, given or learned). */
  readonly ready: boolean
  /**
   * Takes what a protected resource's RFC 9728 metadata says: its authorization server (when the
   * session has none yet; refused when it names others only), its binding requirements, and its
   * `resource` as the default resource indicator.
   */
  useResourceMetadata(metadata: ProtectedResourceMetadata): void
  /** A valid token for `request` (cached, or earned once however many callers wait). */
  token(request?: TokenRequest): Promise<BoundToken>
  /** Earns a new token for `request` now, whatever is held (joins one in flight). */
  forceRefresh(request?: TokenRequest): Promise<BoundToken>
  /** Drops `token` when it is still the held generation (after `invalid_token`). */
  invalidate(token: BoundToken): void
  /**
   * Holds a token the application obtained itself (e.g. from an interactive step-up) for
   * `request`: validated like a token endpoint response and checked against the binding.
   */
  putToken(request: TokenRequest, response: Record<string, unknown>): BoundToken
  /** Whether `token` may still be sent: its binding (DPoP key, client certificate) is the session's current one. */
  accepts(token: BoundToken): boolean
  /**
   * Moves the session to a new DPoP key. Every token bound to the old key's `jkt` is dropped at
   * once; the next request earns one bound to the new key.
   */
  rotateDpopKey(key: DpopKey): void
  /**
   * Moves to a freshly generated DPoP key (same alg), drops every token, and revokes (RFC 7009)
   * the ones it held when the AS has a revocation endpoint (best effort).
   */
  rotate(): Promise<void>
  /** The AS metadata (discovered once). */
  metadata(signal?: AbortSignal): Promise<AuthorizationServerMetadata | undefined>
  /**
   * One token request with `grant` — not cached, not single-flight — with the session's client
   * authentication and binding (DPoP proof, nonce retry, token-type check). For flows the session
   * does not run itself, such as polling a CIBA request.
   */
  requestToken(grant: Grant, request?: TokenRequest): Promise<TokenResponse & { token_type: 'DPoP' | 'Bearer' }>
  /**
   * POSTs a form to the AS's CIBA backchannel authentication endpoint with the session's client
   * authentication; resolves with the JSON answer (`auth_req_id`, `expires_in`, `interval`).
   */
  backchannelAuthenticate(params: Record<string, string>, signal?: AbortSignal): Promise<{ auth_req_id: string; expires_in: number; interval?: number }>
  /**
   * Stops timers and drops tokens; with `revoke: true`, first revokes (RFC 7009) the refresh token
   * and every access token held. Closes the transport it created. Idempotent.
   */
  close(options?: { revoke?: boolean; signal?: AbortSignal; bestEffort?: boolean }): Promise<void>
  /** `close()` without revocation, for `await using`. */
  [Symbol.asyncDispose](): Promise<void>
}

const optionsSchema = z.object({
  issuer: z.string().optional(),
  tokenEndpoint: z.string().optional(),
  clientId: z.string().min(1, 'clientId must be a non-empty string'),
  clientAuth: z.custom<ClientAuth>((v) => typeof v === 'object' && v !== null && typeof (v as ClientAuth).apply === 'function', 'clientAuth must come from clientSecretBasic(), privateKeyJwt(), …').optional(),
  grant: z.custom<Grant>((v) => typeof v === 'object' && v !== null && typeof (v as Grant).params === 'function', 'grant must come from clientCredentials(), tokenExchange(), …'),
  dpop: z.custom<DpopKey>((v) => typeof v === 'object' && v !== null && typeof (v as DpopKey).sign === 'function' && typeof (v as DpopKey).jkt === 'string', 'dpop must be a key from generateDpopKey() or importDpopKey()').optional(),
  defaultLifetime: z.number().positive().max(86_400).optional(),
  maxNonceOrigins: z.number().int().positive().optional(),
  onRefreshToken: z.function().optional(),
}).passthrough()

const codeOf = (err: unknown) => (err instanceof BoundError ? err.code : 'ERR_UNKNOWN')
const messageOf = (err: unknown) => (err instanceof Error ? err.message : String(err))

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
  if (options.issuer) assertSecureUrl(options.issuer, 'issuer')
  if (options.tokenEndpoint) assertSecureUrl(options.tokenEndpoint, 'token endpoint')
  if (options.revocationEndpoint) assertSecureUrl(options.revocationEndpoint, 'revocation endpoint')
  const clientAuth = options.clientAuth ?? noClientAuth()
  if (clientAuth.usesTlsClientCertificate && !options.clientCertificate && !options.transport?.hasClientCertificate) {
    throw new BoundError('ERR_INVALID_CONFIG', `createSession: ${clientAuth.method} needs a clientCertificate`)
  }
  const clock = options.clock ?? systemClock
  const ownTransport = !options.transport
  const transport = options.transport ?? createTransport({ ...(options.ca ? { ca: options.ca } : {}), ...(options.clientCertificate ? { clientCertificate: options.clientCertificate } : {}) })
  const dpop = options.dpop ? createDpop({ key: options.dpop, clock, ...(options.maxNonceOrigins ? { maxNonceOrigins: options.maxNonceOrigins } : {}) }) : undefined
  const events = createEmitter<SessionEvents>((type, event) => publishEvent(type as string, event))
  const usesMtls = clientAuth.usesTlsClientCertificate || transport.hasClientCertificate
  const defaultLifetimeMs = (options.defaultLifetime ?? 300) * 1000
  const baseGrant = options.grant
  const requests = new Map<string, TokenRequest>()
  let closed = false
  let issuer = options.issuer
  let defaultResource = baseGrant.resource

  // One refresh-token family per session, used by one request at a time (rotation would otherwise
  // trip the AS's reuse detection).
  let refreshTokenValue: string | undefined = (baseGrant as { initialRefreshToken?: string }).initialRefreshToken
  let refreshChain: Promise<unknown> = Promise.resolve()
  const withRefreshLock = <T>(task: () => Promise<T>): Promise<T> => {
    const run = refreshChain.then(task, task)
    refreshChain = run.catch(() => {})
    return run
  }

  let metadataPromise: Promise<AuthorizationServerMetadata> | undefined
  const metadata = async (signal?: AbortSignal) => {
    if (!issuer) return undefined
    // bounded like a token request: a metadata endpoint that never answers must not stall the first call
    metadataPromise ??= discoverAuthorizationServer(issuer, { fetch: transport.fetch, signal: AbortSignal.timeout((options.tokenRequestTimeout ?? 10) * 1000) }).catch((err: unknown) => {
      metadataPromise = undefined // a failure is not cached
      throw err
    })
    return waitFor(metadataPromise, signal)
  }

  const endpoint = async (kind: 'token_endpoint' | 'revocation_endpoint' | 'backchannel_authentication_endpoint', signal?: AbortSignal): Promise<string | undefined> => {
    const configured = kind === 'token_endpoint' ? options.tokenEndpoint : kind === 'revocation_endpoint' ? options.revocationEndpoint : undefined
    if (configured) return configured
    if (!issuer) {
      throw new BoundError('ERR_DISCOVERY', 'No authorization server is known yet: set issuer or tokenEndpoint, or let a bound fetch learn it from the resource server (RFC 9728)')
    }
    const meta = await metadata(signal)
    // RFC 8705 §5: a client doing mTLS uses the aliases when the AS publishes them (MTLS-03).
    const member = meta?.[kind]
    const url = (usesMtls ? meta?.mtls_endpoint_aliases?.[kind] : undefined) ?? (typeof member === 'string' ? member : undefined)
    if (url !== undefined) assertSecureUrl(url, kind.replace(/_/g, ' '))
    return url
  }

  const currentX5t = () => transport.clientCertificate?.current().x5t
  const accepts = (token: BoundToken) =>
    (token.type !== 'DPoP' || token.binding.jkt === dpop?.jkt) && (token.binding.x5t === undefined || token.binding.x5t === currentX5t())

  /** A fresh challenge from the AS's `challenge_endpoint` (attestation-based client auth), when it has one. */
  const attestationChallenge = async (signal?: AbortSignal): Promise<string | undefined> => {
    const url = (await metadata(signal))?.challenge_endpoint
    if (typeof url !== 'string') return undefined
    assertSecureUrl(url, 'challenge endpoint')
    const res = await transport.fetch(url, { method: 'POST', headers: { accept: 'application/json' }, signal: AbortSignal.timeout(10_000) }).catch((err: unknown) => {
      throw new BoundError('ERR_NETWORK', `The challenge endpoint ${url} could not be reached`, { cause: err })
    })
    if (dpop) dpop.observe(url, res.headers)
    const json = (await res.json().catch(() => undefined)) as { attestation_challenge?: unknown } | undefined
    return typeof json?.attestation_challenge === 'string' ? json.attestation_challenge : (res.headers.get('oauth-client-attestation-challenge') ?? undefined)
  }

  const request = async (grant: Grant, req: TokenRequest, signal?: AbortSignal): Promise<TokenEndpointResult & { x5t: string | undefined }> => {
    const url = await endpoint('token_endpoint', signal)
    if (!url) throw new BoundError('ERR_DISCOVERY', `The metadata of ${issuer} has no token_endpoint`)
    if (dpop) dpop.assertAlgAccepted((await metadata(signal))?.dpop_signing_alg_values_supported, `The authorization server ${issuer ?? url}`)
    // Tokens earned over a client certificate are tied to it (RFC 8705 §3): a rotation drops them.
    const x5tBefore = currentX5t()
    const result = await requestTokenFromEndpoint({
      endpoint: url,
      issuer,
      clientId: options.clientId,
      clientAuth,
      grant,
      resource: req.resource,
      scope: req.scope,
      extra: req.extra ?? {},
      dpop,
      fetch: transport.fetch,
      clock,
      signal,
      acceptBearerDowngrade: options.acceptBearerDowngrade ?? false,
      timeoutMs: (options.tokenRequestTimeout ?? 10) * 1000,
      ...(clientAuth.method === 'attest_jwt_client_auth' ? { attestationChallenge: () => attestationChallenge(signal) } : {}),
      onResponse: ({ nonceRetry }) => {
        if (nonceRetry) events.emit('nonce.challenge', { origin: new URL(url).origin, at: 'authorization-server' })
      },
    })
    // rotated while in flight: the AS may have seen either certificate; tie it to the old one, so it is re-earned
    return { ...result, x5t: x5tBefore }
  }

  /** Earns with the refresh token when one is held, else with the configured grant (GRANT-09). */
  const earnResult = async (req: TokenRequest): Promise<{ result: TokenEndpointResult & { x5t: string | undefined }; grant: string }> => {
    if (refreshTokenValue !== undefined) {
      const outcome = await withRefreshLock(async () => {
        const rt = refreshTokenValue
        if (rt === undefined) return undefined // dropped while waiting: use the grant
        try {
          const result = await request(refreshWith(rt, { resource: req.resource, scope: req.scope }), req)
          await keepRefreshToken(result)
          return { result, grant: 'refresh_token' }
        } catch (err) {
          if (err instanceof TokenEndpointError && err.error === 'invalid_grant' && refreshTokenValue === rt) {
            refreshTokenValue = undefined
            if (baseGrant.type === 'refresh_token' || !baseGrant.retryable) throw err
            return undefined // fall back to the session's own credentials
          }
          throw err
        }
      })
      if (outcome) return outcome
    }
    if (baseGrant.type === 'refresh_token') {
      throw new BoundError('ERR_TOKEN_UNAVAILABLE', 'The refresh token was refused and this session has no other way to earn tokens; sign in again')
    }
    const result = await request(baseGrant, req)
    await keepRefreshToken(result)
    return { result, grant: baseGrant.type }
  }

  const keepRefreshToken = async (result: TokenEndpointResult) => {
    const next = result.response.refresh_token
    if (next === undefined || next === refreshTokenValue) return
    refreshTokenValue = next // the old one is never sent again (GRANT-06)
    await options.onRefreshToken?.(next)
  }

  /** A token response as a held token: lifetime from receipt (`expires_in`, else the default), scope as granted or asked. */
  const holdable = (response: TokenResponse, type: 'DPoP' | 'Bearer', receivedAt: number, req: TokenRequest, cacheKey: string, generation: number, binding: BoundToken['binding']) =>
    createBoundToken({
      value: response.access_token,
      type,
      receivedAt,
      expiresAt: receivedAt + (response.expires_in !== undefined ? response.expires_in * 1000 : defaultLifetimeMs),
      lifetimeAssumed: response.expires_in === undefined,
      scope: response.scope ?? req.scope,
      cacheKey,
      generation,
      binding,
    })

  const manager = createTokenManager({
    clock,
    ...(options.refresh ? { refresh: options.refresh } : {}),
    ...(options.backoff ? { backoff: options.backoff } : {}),
    // a token bound to a key or certificate the session rotated away from is never served again
    accept: accepts,
    onBackgroundError(cacheKey, err) {
      events.emit('token.refresh_failed', { cacheKey, code: codeOf(err), message: messageOf(err) })
    },
    onEvent(event) {
      if (event.type === 'wait') events.emit('token.wait', { cacheKey: event.cacheKey, ms: event.ms })
      if (event.type === 'backoff') events.emit('token.backoff', { cacheKey: event.cacheKey, failures: event.failures, until: event.until, code: codeOf(event.error) })
    },
    async earn(cacheKey, generation, { background }) {
      const req = requests.get(cacheKey) ?? {}
      const started = clock.now()
      try {
        const { result, grant } = await earnResult(req)
        const receivedAt = clock.now()
        const { response } = result
        const token = holdable(response, result.type, receivedAt, req, cacheKey, generation, { ...(result.type === 'DPoP' && result.jkt ? { jkt: result.jkt } : {}), ...(result.x5t ? { x5t: result.x5t } : {}) })
        events.emit('token.acquired', { label: token.label, cacheKey, type: token.type, grant, expiresAt: token.expiresAt, attempts: result.attempts, waitMs: receivedAt - started, reason: background ? 'refresh' : 'demand' })
        return token
      } catch (err) {
        events.emit('token.failed', { cacheKey, code: codeOf(err), message: messageOf(err) })
        throw err
      }
    },
  })

  // The context element values tokens were last issued under (key and certificate have their own events).
  let lastContext: { workloadId: string | undefined; fingerprint: string | undefined } | undefined
  const currentContext = () => {
    const id = options.context?.workloadId
    return {
      workloadId: typeof id === 'function' ? id() : (id ?? transport.clientCertificate?.current().spiffeId),
      fingerprint: options.context?.fingerprint?.(),
    }
  }
  const checkContext = () => {
    if (!options.context && !transport.clientCertificate) return ''
    const now = currentContext()
    if (lastContext) {
      for (const element of ['workload-id', 'fingerprint'] as const) {
        const key = element === 'workload-id' ? 'workloadId' : 'fingerprint'
        if (now[key] !== lastContext[key]) {
          // every token of the old context goes before the next request
          const tokensDropped = manager.dropWhere(() => true)
          events.emit('context.changed', { element, tokensDropped })
          break
        }
      }
    }
    lastContext = now
    return JSON.stringify([now.workloadId ?? null, now.fingerprint ?? null])
  }

  // Posture: cached answers, re-asked at most every postureInterval seconds.
  let posture: { healthy: boolean; reason: string | undefined; at: number } | undefined
  let postureFlight: Promise<void> | undefined
  const checkPosture = async () => {
    if (!options.posture) return
    const now = clock.now()
    if (!posture || now - posture.at >= (options.postureInterval ?? 10) * 1000) {
      postureFlight ??= (async () => {
        let answer: { healthy: boolean; reason?: string }
        try {
          answer = await options.posture!()
        } catch (err) {
          answer = { healthy: false, reason: `the posture check failed (${err instanceof Error ? err.message.slice(0, 200) : 'error'})` }
        }
        const changed = posture === undefined || posture.healthy !== answer.healthy
        posture = { healthy: answer.healthy === true, reason: answer.reason, at: clock.now() }
        if (changed) {
          events.emit('posture.changed', { healthy: posture.healthy, reason: posture.reason })
          if (!posture.healthy) {
            const held = manager.held()
            manager.clear()
            if (options.revokeWhenUnhealthy) void revokeHeld(held).catch(() => {})
          }
        }
      })().finally(() => {
        postureFlight = undefined
      })
      await postureFlight
    }
    if (posture && !posture.healthy) {
      throw new BoundError('ERR_POSTURE_UNHEALTHY', `The workload's posture check says unhealthy${posture.reason ? ` (${posture.reason.slice(0, 200)})` : ''}; no credentials are sent until it is healthy again`)
    }
  }

  // the default request's key, remembered while the binding and the context stay the same
  let defaultKey: { jkt: string | undefined; context: string; resource: string | undefined; key: string } | undefined
  const keyFor = (req: TokenRequest) => {
    if (req.resource === undefined && req.scope === undefined && req.extra === undefined) {
      const context = checkContext()
      if (defaultKey && defaultKey.jkt === dpop?.jkt && defaultKey.context === context && defaultKey.resource === defaultResource) return defaultKey.key
      const key = computeKey(req, context)
      defaultKey = { jkt: dpop?.jkt, context, resource: defaultResource, key }
      return key
    }
    return computeKey(req, checkContext())
  }
  const computeKey = (req: TokenRequest, context: string) => {
    const resource = req.resource ?? defaultResource
    const scope = req.scope ?? baseGrant.scope
    const extra = req.extra ? Object.fromEntries(Object.entries(req.extra).sort(([a], [b]) => (a < b ? -1 : 1))) : {}
    const cacheKey = JSON.stringify([resource ?? null, scope ?? null, extra, dpop?.jkt ?? null, context])
    if (!requests.has(cacheKey)) {
      if (requests.size >= 1000) requests.delete(requests.keys().next().value as string)
      requests.set(cacheKey, { resource, scope, extra })
    }
    return cacheKey
  }

  const offRotated = transport.clientCertificate?.events.on('rotated', ({ previous, current }) => {
    const tokensDropped = manager.dropWhere((t) => t.binding.x5t === previous.x5t)
    events.emit('certificate.rotated', { previousX5t: previous.x5t, x5t: current.x5t, subject: current.subject, tokensDropped })
  })

  /** RFC 7009: revokes `held` access tokens and, with `refreshToo`, the refresh token. Throws when some could not be. */
  const revokeHeld = async (held: BoundToken[], refreshToo = false, signal?: AbortSignal) => {
    const url = await endpoint('revocation_endpoint', signal).catch(() => undefined)
    if (!url) throw new BoundError('ERR_INVALID_CONFIG', 'the authorization server publishes no revocation_endpoint: nothing could be revoked')
    const timeout = AbortSignal.timeout((options.tokenRequestTimeout ?? 10) * 1000)
    const ctx = { endpoint: url, issuer, clientId: options.clientId, clientAuth, fetch: transport.fetch, clock, signal: signal ? AbortSignal.any([signal, timeout]) : timeout }
    const failures: unknown[] = []
    const rt = refreshToo ? refreshTokenValue : undefined
    if (refreshToo) refreshTokenValue = undefined
    if (rt !== undefined) await revokeToken(ctx, rt, 'refresh_token').then(() => events.emit('token.revoked', { label: 'refresh token', hint: 'refresh_token' }), (e: unknown) => failures.push(e))
    for (const token of held) {
      await revokeToken(ctx, token.value, 'access_token').then(() => events.emit('token.revoked', { label: token.label, hint: 'access_token' }), (e: unknown) => failures.push(e))
    }
    if (failures.length > 0) throw new BoundError('ERR_TOKEN_ENDPOINT', `${failures.length} token(s) could not be revoked`, { cause: failures[0] })
  }

  const close = async (closeOptions: { revoke?: boolean; signal?: AbortSignal; bestEffort?: boolean } = {}) => {
    if (closed) return
    closed = true
    offRotated?.()
    const held = manager.held()
    manager.close()
    try {
      if (closeOptions.revoke) await revokeHeld(held, true, closeOptions.signal).catch((err: unknown) => {
        if (!closeOptions.bestEffort) throw err
      })
    } finally {
      refreshTokenValue = undefined
      if (ownTransport) await transport.close()
    }
  }

  const session: Session = {
    clientId: options.clientId,
    get issuer() {
      return issuer
    },
    get ready() {
      return issuer !== undefined || options.tokenEndpoint !== undefined
    },
    dpop,
    transport,
    events,
    get resource() {
      return defaultResource
    },
    metadata,
    useResourceMetadata(prm) {
      const servers = prm.authorization_servers ?? []
      if (issuer === undefined && options.tokenEndpoint === undefined) {
        const first = servers[0]
        if (first === undefined) throw new BoundError('ERR_DISCOVERY', `The protected resource ${prm.resource} names no authorization server`)
        assertSecureUrl(first, 'authorization server from the protected resource metadata')
        issuer = first
      } else if (issuer !== undefined && servers.length > 0 && !servers.includes(issuer)) {
        throw new BoundError('ERR_DISCOVERY', `The protected resource ${prm.resource} trusts ${servers.slice(0, 5).join(', ')}, not this session's authorization server ${issuer}`)
      }
      if (prm.dpop_bound_access_tokens_required && !dpop) {
        throw new BoundError('ERR_INVALID_CONFIG', `The protected resource ${prm.resource} requires DPoP-bound tokens (RFC 9728 dpop_bound_access_tokens_required); give the session a DPoP key`)
      }
      if (dpop) dpop.assertAlgAccepted(prm.dpop_signing_alg_values_supported, `The protected resource ${prm.resource}`)
      if (prm.tls_client_certificate_bound_access_tokens && !transport.hasClientCertificate && !dpop) {
        throw new BoundError('ERR_INVALID_CONFIG', `The protected resource ${prm.resource} requires certificate-bound tokens (RFC 9728 tls_client_certificate_bound_access_tokens); give the session a client certificate`)
      }
      // RFC 8707: the resource indicator is the metadata's resource, verbatim
      if (defaultResource === undefined) defaultResource = prm.resource
    },
    token(req = {}) {
      // (the hot path: no posture check configured → no extra promise)
      if (!options.posture) return manager.get(keyFor(req), req.signal)
      return checkPosture().then(() => manager.get(keyFor(req), req.signal))
    },
    forceRefresh(req = {}) {
      return manager.forceRefresh(keyFor(req), req.signal)
    },
    accepts,
    putToken(req, response) {
      const parsed = parseTokenResponse(response, 'the token set given by the application', dpop !== undefined, options.acceptBearerDowngrade ?? false)
      const cacheKey = keyFor(req)
      const receivedAt = clock.now()
      const token = holdable(parsed.response, parsed.type, receivedAt, req, cacheKey, 0, parsed.type === 'DPoP' && dpop ? { jkt: dpop.jkt } : {})
      manager.put(cacheKey, token)
      return token
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
    async requestToken(grant, req = {}) {
      await checkPosture()
      const result = await request(grant, { resource: req.resource ?? defaultResource, scope: req.scope ?? baseGrant.scope, extra: req.extra }, req.signal)
      return { ...result.response, token_type: result.type }
    },
    async backchannelAuthenticate(params, signal) {
      await checkPosture()
      const url = await endpoint('backchannel_authentication_endpoint', signal)
      if (!url) throw new BoundError('ERR_DISCOVERY', `The authorization server ${issuer} publishes no backchannel_authentication_endpoint (CIBA)`)
      const body = new URLSearchParams(params)
      const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' }
      await clientAuth.apply({ clientId: options.clientId, issuer, endpoint: url, body, headers, now: Math.floor(clock.now() / 1000) })
      let res
      try {
        res = await transport.fetch(url, { method: 'POST', headers, body: body.toString(), redirect: 'manual', signal: signal ? AbortSignal.any([signal, AbortSignal.timeout(10_000)]) : AbortSignal.timeout(10_000) })
      } catch (err) {
        throw new BoundError('ERR_NETWORK', `The backchannel authentication endpoint ${url} could not be reached`, { cause: err })
      }
      const json = (await res.json().catch(() => undefined)) as Record<string, unknown> | undefined
      if (res.status !== 200 || typeof json?.auth_req_id !== 'string') {
        const error = typeof json?.error === 'string' ? json.error : 'unexpected_response'
        throw new TokenEndpointError({ error, error_description: typeof json?.error_description === 'string' ? json.error_description : undefined, status: res.status, endpoint: url })
      }
      return { auth_req_id: json.auth_req_id, expires_in: Number(json.expires_in ?? 120), ...(typeof json.interval === 'number' ? { interval: json.interval } : {}) }
    },
    async rotate() {
      if (!dpop) throw new BoundError('ERR_INVALID_CONFIG', 'rotate: this session has no DPoP key')
      const held = manager.held()
      session.rotateDpopKey(await generateDpopKey({ alg: dpop.key.alg }))
      manager.clear()
      await revokeHeld(held).catch(() => {}) // best effort: the old tokens are bound to a key nobody holds any more
    },
    close,
    // `await using session = createSession(…)`: the session ends with its scope, and what it held is revoked (best effort)
    [Symbol.asyncDispose]: () => close({ revoke: true, bestEffort: true }),
  }
  instrumentSession(session, options.telemetry)
  return session
}
