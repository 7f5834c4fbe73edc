import { z } from 'zod'
import { BoundError, TokenEndpointError, type Clock } from '@bound/core'
import type { Dpop } from '@bound/dpop'
import type { TransportFetch } from '@bound/http'
import type { ClientAuth } from './client-auth.js'
import type { Grant } from './grants.js'
import { networkError, readCappedText } from './http.js'

/**
 * The parsed, validated token endpoint response (RFC 6749 §5.1).
 *
 * @example
 * ```ts
 * const { response }: { response: TokenResponse } = await requestTokenFromEndpoint(ctx)
 * response.expires_in // seconds, when the AS said
 * ```
 */
export interface TokenResponse {
  /** The access token (a b64token, at most 65,536 characters). */
  access_token: string
  /** As sent by the AS (compare case-insensitively). */
  token_type: string
  /** Lifetime in seconds, when the AS sent it. */
  expires_in?: number
  /** The granted scope, when the AS sent it. */
  scope?: string
  /** A refresh token, when the AS issued one. */
  refresh_token?: string
  /** RFC 8693: the type of the issued token. */
  issued_token_type?: string
}

const tokenResponseSchema = z.object({
  // RFC 6750 §2.1 b64token: anything else could not be sent unaltered in a header (AT-02).
  access_token: z.string().min(1).max(65_536).regex(/^[A-Za-z0-9\-._~+/]+=*$/, 'not a b64token'),
  token_type: z.string().min(1).max(64),
  expires_in: z
    .union([z.number(), z.string().regex(/^\d{1,10}$/).transform(Number)])
    .pipe(z.number().int().positive().max(10 * 365 * 24 * 3600)) // 0 would be expired on arrival
    .optional(),
  scope: z.string().max(8192).optional(),
  refresh_token: z.string().min(1).max(65_536).optional(),
  issued_token_type: z.string().max(256).optional(),
})

/**
 * Everything one token request needs.
 *
 * @example
 * ```ts
 * const ctx: TokenRequestContext = {
 *   endpoint: 'https://as.example.com/token', issuer: 'https://as.example.com', clientId: 'orders-worker',
 *   clientAuth: clientSecretBasic(secret), grant: clientCredentials(), resource: 'https://api.example.com', scope: undefined,
 *   extra: {}, dpop: createDpop({ key: await generateDpopKey() }), fetch: createTransport().fetch, clock: systemClock,
 * }
 * ```
 */
export interface TokenRequestContext {
  endpoint: string
  issuer: string | undefined
  clientId: string
  clientAuth: ClientAuth
  grant: Grant
  resource: string | undefined
  scope: string | undefined
  extra: Readonly<Record<string, string>>
  dpop: Dpop | undefined
  fetch: TransportFetch
  clock: Clock
  signal?: AbortSignal | undefined
  /** Largest response accepted, in bytes. Default 1 MiB. */
  maxBytes?: number
  /** Accept `token_type: Bearer` for a DPoP request (a downgrade). Default false. */
  acceptBearerDowngrade?: boolean
  /** Fetches a fresh attestation challenge (for attestation-based client authentication). */
  attestationChallenge?: () => Promise<string | undefined>
  /** Give up on an attempt that has not answered within this many milliseconds. Default 10,000. */
  timeoutMs?: number
  /** Called after every response (for telemetry). */
  onResponse?: (info: { status: number; nonceRetry: boolean }) => void
}

/**
 * What one token request produced.
 *
 * @example
 * ```ts
 * const { response, type, attempts, jkt }: TokenEndpointResult = await requestTokenFromEndpoint(ctx)
 * ```
 */
export interface TokenEndpointResult {
  /** The validated response. */
  response: TokenResponse
  /** 'DPoP' or 'Bearer', normalised. */
  type: 'DPoP' | 'Bearer'
  /** How many HTTP requests it took (2 after a nonce challenge). */
  attempts: number
  /** Thumbprint of the DPoP key that signed the successful request's proof. */
  jkt: string | undefined
}

/**
 * POSTs one token request: grant parameters, client authentication minted afresh for each
 * attempt, a DPoP proof when the session has a key. An AS `use_dpop_nonce` challenge is answered
 * once (a new proof with the nonce and a new client assertion); a second one is returned as the
 * error it is. The response is parsed and its `token_type` checked against the binding.
 *
 * @example
 * ```ts
 * const { response, type } = await requestTokenFromEndpoint(ctx) // a session does this for you
 * ```
 */
export async function requestTokenFromEndpoint(ctx: TokenRequestContext): Promise<TokenEndpointResult> {
  const from = `the token endpoint ${ctx.endpoint}`
  const { value, attempts, jkt } = await exchange(ctx, (json) => parseTokenResponse(json, from, { dpop: ctx.dpop !== undefined, acceptBearerDowngrade: ctx.acceptBearerDowngrade ?? false }))
  return { response: value.response, type: value.type, attempts, jkt }
}

/** What {@link requestIssuedToken} got: a token that is not an access token (RFC 8693 §2.2.1). */
export interface IssuedToken {
  /** The issued token (the response's `access_token` member). */
  token: string
  /** Its lifetime in seconds, when the server said. */
  expiresIn: number | undefined
  /** The scope granted, when the server said. */
  scope: string | undefined
  /** HTTP requests it took. */
  attempts: number
  /** Thumbprint of the DPoP key whose proof the successful request carried. */
  jkt: string | undefined
}

const issuedTokenSchema = z.object({
  access_token: z.string().min(1).max(65_536).regex(/^[A-Za-z0-9\-._~+/]+=*$/, 'not a compact token'),
  issued_token_type: z.string().max(256),
  token_type: z.string().max(64).optional(),
  expires_in: z
    .union([z.number(), z.string().regex(/^\d{1,10}$/).transform(Number)])
    .pipe(z.number().int().positive().max(10 * 365 * 24 * 3600))
    .optional(),
  scope: z.string().max(8192).optional(),
})

/**
 * An RFC 8693 token exchange whose answer is not an access token (`token_type` `N_A`), such as an
 * ID-JAG from an enterprise IdP: the same request pipeline as {@link requestTokenFromEndpoint}
 * (client authentication, DPoP proof and nonce retry, timeouts, capped bodies), an answer whose
 * `issued_token_type` must be `issuedTokenType`, and refusals thrown as `refusal` (a
 * {@link TokenEndpointError} class) with `hint` appended. Internal to `@bound/oauth`.
 */
export async function requestIssuedToken(
  ctx: TokenRequestContext,
  options: { issuedTokenType: string; what: string; refusal: typeof TokenEndpointError; hint?: (error: { error: string; error_description?: string | undefined }) => string | undefined },
): Promise<IssuedToken> {
  const from = `${options.what} ${ctx.endpoint}`
  const { value, attempts, jkt } = await exchange(ctx, (json) => {
    const parsed = issuedTokenSchema.safeParse(json)
    if (!parsed.success) {
      const issue = parsed.error.issues[0]
      throw new BoundError('ERR_TOKEN_RESPONSE_INVALID', `${capitalise(from)} gave an invalid token exchange response (${issue ? `${issue.path.join('.') || 'body'}: ${issue.code}` : 'malformed'})`)
    }
    if (parsed.data.issued_token_type !== options.issuedTokenType) {
      throw new BoundError('ERR_TOKEN_RESPONSE_INVALID', `${capitalise(from)} issued a token of type ${JSON.stringify(parsed.data.issued_token_type.slice(0, 100))}, not ${options.issuedTokenType}`)
    }
    return parsed.data
  }, { what: options.what, refusal: options.refusal, ...(options.hint ? { hint: options.hint } : {}) })
  return { token: value.access_token, expiresIn: value.expires_in, scope: value.scope, attempts, jkt }
}

/**
 * The request loop both share: one token-endpoint exchange, retried once for an AS nonce, once
 * for a clock correction, and once when the grant asks after a refusal; `accept` validates a 200
 * answer. Refusals are thrown as `refusal`.
 */
async function exchange<T>(
  ctx: TokenRequestContext,
  accept: (json: unknown) => T,
  how: { what: string; refusal: typeof TokenEndpointError; hint?: (error: { error: string; error_description?: string | undefined }) => string | undefined } = { what: 'token endpoint', refusal: TokenEndpointError },
): Promise<{ value: T; attempts: number; jkt: string | undefined }> {
  const maxBytes = ctx.maxBytes ?? 1_048_576
  const timeoutMs = ctx.timeoutMs ?? 10_000
  const transport = { fetch: ctx.fetch, dpop: ctx.dpop, clock: ctx.clock, timeoutMs, signal: ctx.signal }
  let nonceRetried = false
  let skewRetried = false
  let grantRetried = false
  for (let attempt = 1; ; attempt++) {
    const now = Math.floor(ctx.clock.now() / 1000)
    const body = new URLSearchParams()
    await ctx.grant.params(body, { resource: ctx.resource, scope: ctx.scope, extra: ctx.extra, now, attempt, issuer: ctx.issuer, clientId: ctx.clientId, transport })
    const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' }
    await ctx.clientAuth.apply({ clientId: ctx.clientId, issuer: ctx.issuer, endpoint: ctx.endpoint, body, headers, now, ...(ctx.attestationChallenge ? { attestationChallenge: ctx.attestationChallenge } : {}) })
    const jkt = ctx.dpop?.jkt
    if (ctx.dpop) headers.dpop = await ctx.dpop.proof('POST', ctx.endpoint)

    const timeout = AbortSignal.timeout(timeoutMs)
    const signal = ctx.signal ? AbortSignal.any([ctx.signal, timeout]) : timeout
    const timedOut = () => new BoundError('ERR_NETWORK', `The ${how.what} ${ctx.endpoint} did not answer within ${timeoutMs / 1000} s`)
    let res
    let text: string
    try {
      res = await ctx.fetch(ctx.endpoint, { method: 'POST', headers, body: body.toString(), redirect: 'manual', signal })
    } catch (err) {
      if (timeout.aborted && !ctx.signal?.aborted) throw timedOut()
      throw networkError(err, `${how.what} ${ctx.endpoint}`, ctx.signal)
    }
    const nonce = ctx.dpop ? ctx.dpop.observe(ctx.endpoint, res.headers) : 'none'
    try {
      text = await readCappedText(res, maxBytes, 'ERR_TOKEN_RESPONSE_INVALID', `${how.what} response from ${ctx.endpoint}`)
    } catch (err) {
      if (timeout.aborted && !ctx.signal?.aborted) throw timedOut()
      if (ctx.signal?.aborted) throw ctx.signal.reason
      throw err
    }
    let json: unknown
    try {
      json = JSON.parse(text)
    } catch {
      json = undefined
    }

    if (res.status !== 200) {
      const error = isErrorBody(json) ? json : undefined
      // DPOP-16/21: decide on the error code (and the nonce header), whatever the status.
      const nonceChallenge = error?.error === 'use_dpop_nonce'
      ctx.onResponse?.({ status: res.status, nonceRetry: nonceChallenge && !nonceRetried })
      if (nonceChallenge && ctx.dpop) {
        if (nonce === 'none' || nonce === 'invalid') {
          throw new BoundError('ERR_DPOP_NONCE_INVALID', `The ${how.what} ${ctx.endpoint} asked for a DPoP nonce but sent ${nonce === 'none' ? 'no' : 'an invalid'} DPoP-Nonce header`)
        }
        if (!nonceRetried) {
          nonceRetried = true
          continue
        }
      }
      // DPOP-23/32: a proof rejected (often for its iat): learn the AS clock from Date, retry once.
      if (error?.error === 'invalid_dpop_proof' && ctx.dpop && !skewRetried) {
        const date = Date.parse(res.headers.get('date') ?? '')
        if (ctx.dpop.learnClockSkew(ctx.endpoint, date)) {
          skewRetried = true
          continue
        }
      }
      if (error) {
        const hint = how.hint?.(error) ?? refusalHint(error, ctx.dpop !== undefined, ctx.grant.type)
        const refusal = new how.refusal({ error: error.error, error_description: error.error_description, error_uri: error.error_uri, status: res.status, endpoint: ctx.endpoint, retryAfter: retryAfterSeconds(res.headers, ctx.clock), hint })
        if (res.status < 500 && res.status !== 429 && error.error !== 'temporarily_unavailable' && error.error !== 'server_error') {
          // a grant whose credential may be refused on its second use gets one fresh try
          if (ctx.grant.refused?.(refusal, body) === 'retry' && !grantRetried) {
            grantRetried = true
            continue
          }
        }
        throw refusal
      }
      throw new how.refusal({ error: res.status >= 500 ? 'server_error' : res.status === 429 ? 'rate_limited' : 'unexpected_status', status: res.status, endpoint: ctx.endpoint, retryAfter: retryAfterSeconds(res.headers, ctx.clock) })
    }
    ctx.onResponse?.({ status: res.status, nonceRetry: false })

    if (json === undefined) throw new BoundError('ERR_TOKEN_RESPONSE_INVALID', `The ${how.what} ${ctx.endpoint} answered 200 with a body that is not JSON (content-type ${res.headers.get('content-type') ?? 'none'})`)
    const value = accept(json)
    ctx.grant.succeeded?.(body)
    return { value, attempts: attempt, jkt }
  }
}

/**
 * Validates a token response (RFC 6749 §5.1) and its `token_type` against the binding: a DPoP
 * session accepts only `DPoP` (case-insensitive; `Bearer` only with the explicit downgrade opt-in),
 * a session without a key only `Bearer`. Throws `ERR_TOKEN_RESPONSE_INVALID` or
 * `ERR_TOKEN_TYPE_MISMATCH`; the token is never echoed.
 *
 * @example
 * ```ts
 * const { response, type } = parseTokenResponse(await res.json(), 'the token endpoint', { dpop: true })
 * ```
 */
export function parseTokenResponse(json: unknown, from: string, { dpop, acceptBearerDowngrade = false }: { dpop: boolean; acceptBearerDowngrade?: boolean }): { response: TokenResponse; type: 'DPoP' | 'Bearer' } {
  const parsed = tokenResponseSchema.safeParse(json)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]
    throw new BoundError('ERR_TOKEN_RESPONSE_INVALID', `${capitalise(from)} gave an invalid token response (${issue ? `${issue.path.join('.') || 'body'}: ${issue.code}` : 'malformed'})`)
  }
  const response = parsed.data as TokenResponse
  const type = response.token_type.toLowerCase()
  if (dpop) {
    if (type !== 'dpop' && !(type === 'bearer' && acceptBearerDowngrade)) {
      throw new BoundError('ERR_TOKEN_TYPE_MISMATCH', `${capitalise(from)} answered a DPoP token request with token_type ${JSON.stringify(response.token_type.slice(0, 20))}; Bound does not downgrade a DPoP session to an unbound token`)
    }
  } else if (type !== 'bearer') {
    throw new BoundError('ERR_TOKEN_TYPE_MISMATCH', `${capitalise(from)} issued token_type ${JSON.stringify(response.token_type.slice(0, 20))}, which this session cannot present (no DPoP key configured)`)
  }
  return { response, type: type === 'dpop' ? 'DPoP' : 'Bearer' }
}

const capitalise = (s: string) => s.charAt(0).toUpperCase() + s.slice(1)

function isErrorBody(json: unknown): json is { error: string; error_description?: string; error_uri?: string } {
  if (typeof json !== 'object' || json === null) return false
  const j = json as Record<string, unknown>
  return typeof j.error === 'string' && (j.error_description === undefined || typeof j.error_description === 'string') && (j.error_uri === undefined || typeof j.error_uri === 'string')
}

/**
 * `Retry-After` (RFC 9110 §10.2.3) in seconds: delay-seconds or an HTTP-date; undefined when absent or unreadable.
 *
 * @example
 * ```ts
 * retryAfterSeconds(new Headers({ 'retry-after': '120' }), systemClock) // 120
 * ```
 */
export function retryAfterSeconds(headers: { get(name: string): string | null }, clock: Clock): number | undefined {
  const value = headers.get('retry-after')?.trim()
  if (!value) return undefined
  if (/^\d{1,9}$/.test(value)) return Number(value)
  const at = Date.parse(value)
  return Number.isFinite(at) ? Math.max(0, Math.ceil((at - clock.now()) / 1000)) : undefined
}

/** What to check for the refusals new users meet first (DPoP required without a key, a client the AS does not accept…). */
function refusalHint(error: { error: string; error_description?: string | undefined }, hasDpop: boolean, grantType: string): string | undefined {
  const about = `${error.error} ${error.error_description ?? ''}`
  const needKey = 'createSession({ dpop: await generateDpopKey() })'
  if (!hasDpop && /dpop/i.test(about)) return `the AS requires DPoP for this client and the session has no DPoP key: ${needKey}`
  // (client credentials carry no grant that could be invalid: oidc-provider, for one, says invalid_grant when DPoP is required)
  if (!hasDpop && error.error === 'invalid_grant' && grantType === 'client_credentials') return `if the client is registered for DPoP-bound tokens (dpop_bound_access_tokens), the AS requires DPoP for this client and the session has no DPoP key: ${needKey}`
  switch (error.error) {
    case 'invalid_client':
      return 'the AS did not accept the client authentication: check clientId, the secret or key, and that the client is registered at the AS for this method (client_secret_basic, client_secret_post, private_key_jwt, tls_client_auth…)'
    case 'unauthorized_client':
      return 'the client is not allowed this grant type: enable it for the client at the AS'
    case 'invalid_target':
      return 'the AS does not accept the resource indicator: check `resource` (some ASes name the API with `audience` instead)'
    case 'invalid_scope':
      return 'the AS does not grant this scope to the client: check `scope`'
    default:
      return undefined
  }
}
