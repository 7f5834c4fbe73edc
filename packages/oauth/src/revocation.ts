import { BoundError, type Clock } from '@bound/core'
import type { TransportFetch } from '@bound/http'
import type { ClientAuth } from './client-auth.js'
import { networkError } from './http.js'

/**
 * What {@link revokeToken} needs.
 *
 * @example
 * ```ts
 * const ctx: RevocationContext = { endpoint: 'https://as.example.com/revoke', issuer: 'https://as.example.com', clientId, clientAuth, fetch: transport.fetch, clock: systemClock }
 * ```
 */
export interface RevocationContext {
  /** The revocation endpoint URL. */
  endpoint: string
  /** The AS issuer identifier (the `aud` of `private_key_jwt` assertions). */
  issuer: string | undefined
  /** The client id. */
  clientId: string
  /** How the client authenticates. */
  clientAuth: ClientAuth
  /** The fetch to use. */
  fetch: TransportFetch
  /** The clock client assertions read. */
  clock: Clock
  /** Aborts the request (there is no timeout otherwise). */
  signal?: AbortSignal | undefined
}

/**
 * RFC 7009 token revocation. Resolves when the AS answered 200 (which it also does for a token it
 * does not know); throws `ERR_TOKEN_ENDPOINT` on any other status and `ERR_NETWORK` when the
 * endpoint cannot be reached. The token is never echoed.
 *
 * @example
 * ```ts
 * await revokeToken(ctx, refreshTokenValue, 'refresh_token')
 * ```
 */
export async function revokeToken(ctx: RevocationContext, token: string, hint?: 'access_token' | 'refresh_token'): Promise<void> {
  // (a token of another type, an ID-JAG, goes without a hint: RFC 7009 §2.1 makes it optional)
  const body = new URLSearchParams(hint === undefined ? { token } : { token, token_type_hint: hint })
  const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' }
  await ctx.clientAuth.apply({ clientId: ctx.clientId, issuer: ctx.issuer, endpoint: ctx.endpoint, body, headers, now: Math.floor(ctx.clock.now() / 1000) })
  let res
  try {
    res = await ctx.fetch(ctx.endpoint, { method: 'POST', headers, body: body.toString(), redirect: 'manual', ...(ctx.signal ? { signal: ctx.signal } : {}) })
  } catch (err) {
    throw networkError(err, `revocation endpoint ${ctx.endpoint}`, ctx.signal)
  }
  await res.body?.cancel().catch(() => {})
  if (res.status !== 200) throw new BoundError('ERR_TOKEN_ENDPOINT', `The revocation endpoint ${ctx.endpoint} answered HTTP ${res.status}`)
}
