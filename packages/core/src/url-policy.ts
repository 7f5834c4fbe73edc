import { BoundError } from './errors/bound-error.js'

/**
 * True for `localhost`, `*.localhost`, 127.0.0.0/8 and `[::1]`.
 *
 * @example
 * ```ts
 * isLoopbackHost(new URL('http://127.0.0.1:8080').hostname) // true
 * isLoopbackHost('api.example.com')                          // false
 * ```
 */
export function isLoopbackHost(hostname: string): boolean {
  const h = hostname.toLowerCase()
  if (h === 'localhost' || h.endsWith('.localhost')) return true
  if (h === '[::1]' || h === '::1') return true
  return /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h)
}

/**
 * Parses `url` and checks it may carry credentials: `https:`, or `http:` on a loopback host only,
 * and no user information (`user:secret@`). Throws `ERR_INVALID_INPUT` for anything unparsable,
 * `ERR_INVALID_CONFIG` for user information (the message never repeats it) and
 * `ERR_INSECURE_TRANSPORT` for plain HTTP elsewhere.
 *
 * @example
 * ```ts
 * const u = assertSecureUrl('https://as.example.com/token', 'token endpoint')
 * ```
 */
export function assertSecureUrl(url: string | URL, what: string): URL {
  let u: URL
  try {
    u = typeof url === 'string' ? new URL(url) : url
  } catch (err) {
    throw new BoundError('ERR_INVALID_INPUT', `The ${what} is not an absolute URL`, { cause: err })
  }
  refuseUserinfo(u, what)
  if (u.protocol === 'https:') return u
  if (u.protocol === 'http:') {
    if (isLoopbackHost(u.hostname)) return u
    throw new BoundError('ERR_INSECURE_TRANSPORT', `Refusing to send credentials to the ${what} over plain http: (${u.origin}); use https (plain http is allowed for loopback only)`)
  }
  throw new BoundError('ERR_INVALID_INPUT', `The ${what} must be an https: URL (got ${u.protocol})`)
}

/** SEC: a secret in a URL would reach logs, messages and events: refused, and never echoed. */
function refuseUserinfo(u: URL, what: string): void {
  if (u.username !== '' || u.password !== '') {
    throw new BoundError('ERR_INVALID_CONFIG', `The ${what} (${u.protocol}//${u.host}) carries user information (user:password@); put credentials in the client authentication options, never in a URL`)
  }
}

/**
 * Checks a configured resource indicator (RFC 8707 §2): an absolute URI without a fragment and
 * without user information. Throws `ERR_INVALID_CONFIG` (the message never repeats the value).
 *
 * @example
 * ```ts
 * assertResourceIndicator('https://api.example.com', 'grant resource')
 * ```
 */
export function assertResourceIndicator(resource: string, what: string): string {
  let u: URL
  try {
    u = new URL(resource)
  } catch (err) {
    throw new BoundError('ERR_INVALID_CONFIG', `The ${what} must be an absolute URI`, { cause: err })
  }
  if (u.hash) throw new BoundError('ERR_INVALID_CONFIG', `The ${what} must not have a fragment (RFC 8707 §2)`)
  refuseUserinfo(u, what)
  return resource
}
