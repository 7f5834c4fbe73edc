import { redactedLabel } from '@bound/core'
import type { createSession, Session } from '@bound/oauth'
import { scrub, type Context } from './io.js'

/** An undici interceptor, as the session takes them (`interceptors`). */
type Interceptor = NonNullable<Parameters<typeof createSession>[0]['interceptors']>[number]
type Dispatch = Parameters<Interceptor>[0]
type DispatchOptions = Parameters<Dispatch>[0]
type Handler = Parameters<Dispatch>[1]
type AnyFunction = (...args: unknown[]) => unknown

const HANDLER_METHODS = ['onRequestStart', 'onRequestUpgrade', 'onResponseStart', 'onResponseData', 'onResponseEnd', 'onResponseError', 'onConnect', 'onUpgrade', 'onHeaders', 'onData', 'onComplete', 'onError', 'onBodySent', 'onRequestSent', 'onResponseStarted'] as const

/** A request header's value, whatever form undici was given the headers in (object, flat array, pairs). */
function headerOf(headers: DispatchOptions['headers'], name: string): string | undefined {
  if (headers == null) return undefined
  const value = (v: unknown) => (Array.isArray(v) ? String(v[0]) : v === undefined || v === null ? undefined : String(v))
  if (Array.isArray(headers)) {
    if (headers.length > 0 && Array.isArray(headers[0])) {
      for (const [k, v] of headers as unknown as [string, unknown][]) if (String(k).toLowerCase() === name) return value(v)
      return undefined
    }
    for (let i = 0; i + 1 < headers.length; i += 2) if (String(headers[i]).toLowerCase() === name) return value(headers[i + 1])
    return undefined
  }
  if (typeof (headers as Iterable<unknown>)[Symbol.iterator] === 'function') {
    for (const [k, v] of headers as Iterable<[string, unknown]>) if (String(k).toLowerCase() === name) return value(v)
    return undefined
  }
  for (const [k, v] of Object.entries(headers)) if (k.toLowerCase() === name) return value(v)
  return undefined
}

/**
 * What a request's headers carry, in words that never include a value: the token's redacted
 * label (the same `sha256:…` label the session reports), whether a DPoP proof and client
 * authentication go with it. (A client certificate is in the TLS handshake, not here: see `watch`.)
 */
function credentialsOf(headers: DispatchOptions['headers']): string {
  const parts: string[] = []
  const authorization = headerOf(headers, 'authorization')
  if (authorization !== undefined) {
    const space = authorization.indexOf(' ')
    const scheme = space < 0 ? authorization : authorization.slice(0, space)
    const lower = scheme.toLowerCase()
    if (lower === 'dpop' || lower === 'bearer') parts.push(`${lower === 'dpop' ? 'DPoP' : 'Bearer'} token ${redactedLabel(authorization.slice(space + 1).trim())}`)
    else parts.push(`${/^[A-Za-z][\w.+-]{0,20}$/.test(scheme) ? scheme : 'an'} Authorization`)
  }
  if (headerOf(headers, 'dpop') !== undefined) parts.push('a DPoP proof')
  if (headerOf(headers, 'oauth-client-attestation') !== undefined) parts.push('a client attestation')
  return parts.length > 0 ? ` with ${parts.join(', ')}` : ''
}

/** Whether response headers (undici's object form, or raw `[name, value, …]` buffers) carry a DPoP-Nonce. */
function hasNonce(headers: unknown): boolean {
  if (Array.isArray(headers)) {
    for (let i = 0; i + 1 < headers.length; i += 2) if (String(headers[i]).toLowerCase() === 'dpop-nonce') return true
    return false
  }
  return typeof headers === 'object' && headers !== null && (headers as Record<string, unknown>)['dpop-nonce'] !== undefined
}

/** `origin/path` without the query (it may carry secrets of its own). */
function urlOf(opts: DispatchOptions): string {
  const origin = String(opts.origin ?? '').replace(/\/$/, '')
  const path = String(opts.path ?? '/')
  const q = path.search(/[?#]/)
  return `${origin}${q < 0 ? path : path.slice(0, q)}`
}

/**
 * `--verbose`: an undici interceptor that writes one line per HTTP exchange (the AS's discovery and
 * token requests, and the API's) — method, URL without query, the credentials it carried (by
 * label), the status and whether a `DPoP-Nonce` came back — and a listener for the session's
 * token and challenge events. Lines go to stderr, start with `* `, and never hold a token, a
 * proof, a secret or a key: only header *names* and redacted labels are looked at.
 */
export function createVerbose(ctx: Context): { interceptor: Interceptor; watch(session: Session, binding: { jkt?: string | undefined; certificate?: boolean }): void } {
  const line = (text: string) => void ctx.stderr.write(`* ${scrub(text, ctx.secrets)}\n`)

  const interceptor: Interceptor = (dispatch: Dispatch) => (opts: DispatchOptions, handler: Handler) => {
    const what = `${opts.method} ${urlOf(opts)}${credentialsOf(opts.headers)}`
    let reported = false
    const response = (status: number, headers: unknown) => {
      if (reported) return
      reported = true
      line(`${what} → ${status}${hasNonce(headers) ? ', DPoP-Nonce received' : ''}`)
    }
    const failure = (err: unknown) => {
      if (reported) return
      reported = true
      const code = (err as { code?: unknown } | undefined)?.code
      line(`${what} → failed (${typeof code === 'string' ? code : err instanceof Error ? err.name : 'error'})`)
    }
    const h = handler as unknown as Record<string, AnyFunction | undefined>
    const wrapped: Record<string, AnyFunction> = {}
    // forwards every method the handler has (calls stay on the handler itself: its private state works)
    for (const name of HANDLER_METHODS) {
      const method = h[name]
      if (typeof method !== 'function') continue
      wrapped[name] =
        name === 'onResponseStart' ? (controller, status, headers, ...rest) => (response(Number(status), headers), method.call(h, controller, status, headers, ...rest))
          : name === 'onHeaders' ? (status, headers, ...rest) => (response(Number(status), headers), method.call(h, status, headers, ...rest))
            : name === 'onResponseError' ? (controller, err) => (failure(err), method.call(h, controller, err))
              : name === 'onError' ? (err) => (failure(err), method.call(h, err))
                : (...args) => method.apply(h, args)
    }
    return dispatch(opts, wrapped as unknown as Handler)
  }

  const watch = (session: Session, binding: { jkt?: string | undefined; certificate?: boolean }) => {
    if (binding.jkt !== undefined) line(`DPoP key ${binding.jkt} (jkt): each request carries a fresh proof signed with it`)
    if (binding.certificate) line('client certificate (--cert): presented in the TLS handshake to the authorization server and to the credential origins')
    const ev = session.events
    ev.on('nonce.challenge', (e) => {
      // (the API's nonce challenges are reported as challenges below)
      if (e.at === 'authorization-server') line(`DPoP-Nonce challenge from the authorization server ${e.origin}: the token request is sent again with its nonce`)
    })
    ev.on('token.acquired', (e) => line(`token acquired: ${e.type} ${e.label} (${e.grant}; expires ${new Date(e.expiresAt).toISOString()}; cache key ${e.cacheKey})`))
    ev.on('token.failed', (e) => line(`token request failed: ${e.code} (cache key ${e.cacheKey})`))
    ev.on('challenge.handled', (e) => line(`challenge ${e.kind} from ${e.origin}: ${e.outcome === 'answered' ? 'answered, the request is sent again' : 'returned to the caller'}`))
    ev.on('challenge.invalid_token', (e) => line(`invalid_token from ${e.origin} for ${e.label}: that token is dropped, a new one is earned`))
    ev.on('challenge.step_up', (e) => line(`step-up at ${e.origin}${e.acrValues ? ` (acr_values ${e.acrValues})` : ''}: ${e.outcome}`))
  }

  return { interceptor, watch }
}
