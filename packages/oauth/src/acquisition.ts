import { BoundError, TokenEndpointError, assertSecureUrl, isLoopbackHost, type Clock, type Emitter } from '@bound/core'
import type { Dpop } from '@bound/dpop'
import type { Transport } from '@bound/http'
import type { ClientAuth } from './client-auth.js'
import { discoverAuthorizationServer, type AuthorizationServerMetadata } from './discovery.js'
import { refreshWith, type Grant } from './grants.js'
import type { ProtectedResourceMetadata } from './protected-resource.js'
import { revokeToken } from './revocation.js'
import type { SessionEvents } from './session.js'
import { requestTokenFromEndpoint, type TokenEndpointResult } from './token-endpoint.js'
import type { Fleet } from './fleet.js'
import { waitFor } from './token-manager.js'
import type { BoundToken } from './token.js'

/** What one token request asks for. Everything here is sent to the AS as it is; nothing else is. */
export interface TokenParams {
  resource: string | undefined
  scope: string | undefined
  /** Further form parameters: a step-up level's (`acr_values`, `max_age`), a claims challenge's `claims`. */
  extra: Readonly<Record<string, string>>
}

/** What token acquisition needs from its session. */
export interface AcquisitionOptions {
  issuer: string | undefined
  tokenEndpoint: string | undefined
  revocationEndpoint: string | undefined
  trustedIssuers: readonly string[] | ((issuer: string) => boolean) | undefined
  clientId: string
  clientAuth: ClientAuth
  grant: Grant
  dpop: Dpop | undefined
  transport: Transport
  clock: Clock
  events: Emitter<SessionEvents>
  tokenRequestTimeoutMs: number
  acceptBearerDowngrade: boolean
  onRefreshToken: ((refreshToken: string) => void | Promise<void>) | undefined
  /** The fleet, when tokens are shared through a store: the refresh-token family is then the fleet's. */
  fleet?: Fleet | undefined
  /** The binding the refresh-token family belongs to (part of its store key). */
  familyKey?: (() => string) | undefined
}

type EndpointKind = 'token_endpoint' | 'revocation_endpoint' | 'backchannel_authentication_endpoint'

/** Tokens a session obtained that have not expired yet, revoked all together when asked. */
const MAX_TRACKED = 10_000

/**
 * The token side's talk with the authorization server: which AS (configured, or learned from
 * RFC 9728 metadata only where that is safe), its metadata and endpoints, one token request with
 * the session's client authentication and binding, the refresh-token family, revocation of every
 * token obtained, and CIBA's backchannel request.
 */
export function createAcquisition(options: AcquisitionOptions) {
  const { transport, dpop, clock, events, clientAuth, grant: baseGrant } = options
  const usesMtls = clientAuth.usesTlsClientCertificate || transport.hasClientCertificate
  let issuer = options.issuer

  // One refresh-token family per session, used by one request at a time (rotation would otherwise
  // trip the AS's reuse detection).
  let refreshTokenValue: string | undefined = (baseGrant as { initialRefreshToken?: string }).initialRefreshToken
  let refreshChain: Promise<unknown> = Promise.resolve()
  const withRefreshLock = <T>(task: () => Promise<T>): Promise<T> => {
    const run = refreshChain.then(task, task)
    refreshChain = run.catch(() => {})
    return run
  }

  /**
   * Whether this session sends anything an AS could misuse: a client secret or assertion, a client
   * certificate, a refresh token, a subject token or an assertion grant. Such a session uses only an
   * AS its configuration names (SEC: metadata alone never picks where credentials go).
   */
  const confidential = clientAuth.method !== 'none' || transport.hasClientCertificate || refreshTokenValue !== undefined || baseGrant.type !== 'client_credentials'
  const trusted = (candidate: string) => {
    const t = options.trustedIssuers
    if (t === undefined) return false
    return typeof t === 'function' ? t(candidate) === true : t.includes(candidate)
  }

  /** Takes the AS a protected resource names (RFC 9728), or refuses it before any credential leaves. */
  const learnIssuer = (prm: ProtectedResourceMetadata) => {
    const servers = prm.authorization_servers ?? []
    const resourceUrl = (() => {
      try {
        return new URL(prm.resource)
      } catch {
        return undefined
      }
    })()
    // the same guard as resource_metadata URLs: https (or loopback http), no userinfo, and no
    // loopback AS named by a resource that is not itself on loopback
    for (const as of servers) {
      const u = assertSecureUrl(as, `authorization server named by the protected resource ${resourceUrl?.origin ?? 'metadata'}`)
      if (isLoopbackHost(u.hostname) && !(resourceUrl && isLoopbackHost(resourceUrl.hostname))) {
        throw new BoundError('ERR_DISCOVERY', `The protected resource ${resourceUrl?.origin ?? ''} names an authorization server on a loopback address; not followed`)
      }
    }
    if (issuer !== undefined || options.tokenEndpoint !== undefined) {
      if (issuer !== undefined && servers.length > 0 && !servers.includes(issuer)) {
        throw new BoundError('ERR_DISCOVERY', `The protected resource ${prm.resource} trusts ${servers.slice(0, 5).join(', ')}, not this session's authorization server ${issuer}`)
      }
      return
    }
    if (servers.length === 0) throw new BoundError('ERR_DISCOVERY', `The protected resource ${prm.resource} names no authorization server`)
    const chosen = confidential ? servers.find(trusted) : servers[0]
    if (chosen === undefined) {
      throw new BoundError(
        'ERR_INVALID_CONFIG',
        `The protected resource ${resourceUrl?.origin ?? prm.resource} names the authorization server ${servers.slice(0, 3).join(', ')}, but this session sends credentials to its authorization server (${clientAuth.method !== 'none' ? clientAuth.method : transport.hasClientCertificate ? 'a client certificate' : `the ${baseGrant.type} grant`}) and so uses only one you name: set issuer, or list it in trustedIssuers`,
      )
    }
    issuer = chosen
  }

  let metadataPromise: Promise<AuthorizationServerMetadata> | undefined
  const metadata = async (signal?: AbortSignal) => {
    if (!issuer) return undefined
    // bounded like a token request: a metadata endpoint that never answers must not stall the first call
    metadataPromise ??= discoverAuthorizationServer(issuer, { fetch: transport.fetch, signal: AbortSignal.timeout(options.tokenRequestTimeoutMs) }).catch((err: unknown) => {
      metadataPromise = undefined // a failure is not cached
      throw err
    })
    return waitFor(metadataPromise, signal)
  }

  const endpoint = async (kind: EndpointKind, signal?: AbortSignal): Promise<string | undefined> => {
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

  /** One token request with `grant` and `params`: client authentication, DPoP proof, nonce retry, token-type check. */
  const request = async (grant: Grant, params: TokenParams, signal?: AbortSignal): Promise<TokenEndpointResult & { x5t: string | undefined }> => {
    const url = await endpoint('token_endpoint', signal)
    if (!url) throw new BoundError('ERR_DISCOVERY', `The metadata of ${issuer} has no token_endpoint`)
    if (dpop) dpop.assertAlgAccepted((await metadata(signal))?.dpop_signing_alg_values_supported, `The authorization server ${issuer ?? url}`)
    // Tokens earned over a client certificate are tied to it (RFC 8705 §3): a rotation drops them.
    const x5tBefore = transport.clientCertificate?.current().x5t
    const result = await requestTokenFromEndpoint({
      endpoint: url,
      issuer,
      clientId: options.clientId,
      clientAuth,
      grant,
      resource: params.resource,
      scope: params.scope,
      extra: params.extra,
      dpop,
      fetch: transport.fetch,
      clock,
      signal,
      acceptBearerDowngrade: options.acceptBearerDowngrade,
      timeoutMs: options.tokenRequestTimeoutMs,
      ...(clientAuth.method === 'attest_jwt_client_auth' ? { attestationChallenge: () => attestationChallenge(signal) } : {}),
      onResponse: ({ nonceRetry }) => {
        if (nonceRetry) events.emit('nonce.challenge', { origin: new URL(url).origin, at: 'authorization-server' })
      },
    })
    // rotated while in flight: the AS may have seen either certificate; tie it to the old one, so it is re-earned
    return { ...result, x5t: x5tBefore }
  }

  const ignoresRefreshTokens = baseGrant.refreshTokens === 'ignore'
  const keepRefreshToken = async (result: TokenEndpointResult) => {
    if (ignoresRefreshTokens) return
    const next = result.response.refresh_token
    if (next === undefined || next === refreshTokenValue) return
    refreshTokenValue = next // the old one is never sent again (GRANT-06)
    await options.onRefreshToken?.(next)
  }

  const initialRefreshToken = refreshTokenValue
  const { fleet } = options
  const familyKey = options.familyKey ?? (() => '')

  /** One refresh with `rt`: the result, or undefined when the AS refused it and the grant can take over. */
  const redeem = async (rt: string, params: TokenParams) => {
    try {
      const result = await request(refreshWith(rt, { resource: params.resource, scope: params.scope }), params)
      return { result, grant: 'refresh_token' }
    } catch (err) {
      if (err instanceof TokenEndpointError && err.error === 'invalid_grant' && baseGrant.type !== 'refresh_token' && baseGrant.retryable) return undefined
      throw err
    }
  }

  /** Earns with the fleet's refresh-token family when there is one this process may present, else with the grant. */
  const earnShared = async (fleet: Fleet, params: TokenParams) => {
    const outcome = await fleet.redeemFamily(familyKey(), initialRefreshToken, async (rt) => {
      const out = await redeem(rt, params)
      if (!out) return undefined
      const next = out.result.response.refresh_token
      if (next !== undefined && next !== rt) await options.onRefreshToken?.(next)
      return { value: out, next }
    })
    if (outcome) return outcome
    if (baseGrant.type === 'refresh_token') {
      throw new BoundError('ERR_TOKEN_UNAVAILABLE', 'No refresh token this process may present: the shared one was refused, or the token store cannot say which one is current (another process may have replaced it); held tokens keep serving')
    }
    const result = await request(baseGrant, params)
    const next = ignoresRefreshTokens ? undefined : result.response.refresh_token
    if (next !== undefined) {
      await fleet.startFamily(familyKey(), next)
      await options.onRefreshToken?.(next)
    }
    return { result, grant: baseGrant.type }
  }

  /** Earns with the refresh token when one is held, else with the configured grant (GRANT-09). */
  const earn = async (params: TokenParams): Promise<{ result: TokenEndpointResult & { x5t: string | undefined }; grant: string }> => {
    if (fleet) return earnShared(fleet, params)
    if (refreshTokenValue !== undefined) {
      const outcome = await withRefreshLock(async () => {
        const rt = refreshTokenValue
        if (rt === undefined) return undefined // dropped while waiting: use the grant
        const out = await redeem(rt, params).catch((err: unknown) => {
          if (err instanceof TokenEndpointError && err.error === 'invalid_grant' && refreshTokenValue === rt) refreshTokenValue = undefined
          throw err
        })
        if (!out) {
          if (refreshTokenValue === rt) refreshTokenValue = undefined
          return undefined // fall back to the session's own credentials
        }
        await keepRefreshToken(out.result)
        return out
      })
      if (outcome) return outcome
    }
    if (baseGrant.type === 'refresh_token') {
      throw new BoundError('ERR_TOKEN_UNAVAILABLE', 'The refresh token was refused and this session has no other way to earn tokens; sign in again')
    }
    const result = await request(baseGrant, params)
    await keepRefreshToken(result)
    return { result, grant: baseGrant.type }
  }

  // Every token obtained and not yet expired, in the order obtained: "revoke" means all of them,
  // including those a refresh superseded and those the cache let go.
  const obtained = new Set<BoundToken>()
  const track = (token: BoundToken) => {
    const now = clock.now()
    for (const t of obtained) if (t.expiresAt <= now) obtained.delete(t)
    if (obtained.size >= MAX_TRACKED) obtained.delete(obtained.values().next().value as BoundToken)
    obtained.add(token)
  }

  /**
   * RFC 7009: revokes every unexpired token obtained that `which` picks (default all) and, with
   * `refreshToo`, the refresh token. Throws when some could not be. With a shared store, only what
   * this process obtained: the fleet's refresh-token family and the tokens other processes earned
   * are the fleet's (revoking them would cut every process off).
   */
  const revoke = async (which: (token: BoundToken) => boolean = () => true, refreshToo = false, signal?: AbortSignal) => {
    const now = clock.now()
    const tokens = [...obtained].filter((t) => t.expiresAt > now && which(t))
    for (const t of tokens) obtained.delete(t)
    const rts = !refreshToo ? [] : fleet ? fleet.localRefreshTokens() : refreshTokenValue !== undefined ? [refreshTokenValue] : []
    if (refreshToo) refreshTokenValue = undefined
    if (tokens.length === 0 && rts.length === 0) return
    const url = await endpoint('revocation_endpoint', signal).catch(() => undefined)
    if (!url) throw new BoundError('ERR_INVALID_CONFIG', 'the authorization server publishes no revocation_endpoint: nothing could be revoked')
    const timeout = AbortSignal.timeout(options.tokenRequestTimeoutMs)
    const ctx = { endpoint: url, issuer, clientId: options.clientId, clientAuth, fetch: transport.fetch, clock, signal: signal ? AbortSignal.any([signal, timeout]) : timeout }
    const failures: unknown[] = []
    for (const rt of rts) await revokeToken(ctx, rt, 'refresh_token').then(() => events.emit('token.revoked', { label: 'refresh token', hint: 'refresh_token' }), (e: unknown) => failures.push(e))
    for (const token of tokens) {
      await revokeToken(ctx, token.value, 'access_token').then(() => {
        events.emit('token.revoked', { label: token.label, hint: 'access_token' })
        fleet?.invalidate(token) // the processes that took it from the store drop it too
      }, (e: unknown) => failures.push(e))
    }
    if (failures.length > 0) throw new BoundError('ERR_TOKEN_ENDPOINT', `${failures.length} token(s) could not be revoked`, { cause: failures[0] })
  }

  /** CIBA: POSTs `params` to the backchannel authentication endpoint with the session's client authentication. */
  const backchannelAuthenticate = async (params: Record<string, string>, signal?: AbortSignal) => {
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
  }

  return {
    get issuer() {
      return issuer
    },
    get ready() {
      return issuer !== undefined || options.tokenEndpoint !== undefined
    },
    learnIssuer,
    metadata,
    request,
    earn,
    track,
    revoke,
    backchannelAuthenticate,
    /** Forgets the refresh token (the session closed). */
    forget() {
      refreshTokenValue = undefined
      obtained.clear()
    },
  }
}

/** A session's token acquisition (see {@link createAcquisition}). */
export type Acquisition = ReturnType<typeof createAcquisition>
