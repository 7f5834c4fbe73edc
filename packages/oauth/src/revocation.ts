import { BoundError, type Clock } from '@bound/core'
import type { TransportFetch } from '@bound/mtls'
import type { ClientAuth } from './client-auth.js'
import { networkError } from './http.js'

/** What {@link revokeToken} needs. */
export interface RevocationContext {
  endpoint: string
  issuer: string | undefined
  clientId: string
  clientAuth: ClientAuth
  fetch: TransportFetch
  clock: Clock
  signal?: AbortSignal | undefined
}

/**
 * RFC 7009 token revocation. Resolves when the AS answered 200 (which it also does for a token it
 * does not know); throws `ERR_TOKEN_ENDPOINT`-style errors otherwise. The token is never echoed.
 */
export async function revokeToken(ctx: RevocationContext, token: string, hint: 'access_token' | 'refresh_token'): Promise<void> {
  const body = new URLSearchParams({ token, token_type_hint: hint })
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
