import { BoundError } from '@bound/core'

/**
 * The `htu` of a request (RFC 9449 §4.2): scheme and host lower-cased, default port dropped,
 * userinfo, query and fragment removed, IDNA host in A-label form, and the path exactly as the
 * WHATWG URL parser puts it on the request line (no decoding, no added or removed slash).
 *
 * @example
 * ```ts
 * normalizeHtu('https://API.example.com:443/a/b?q=1#f') // 'https://api.example.com/a/b'
 * ```
 */
export function normalizeHtu(url: string | URL): string {
  let u: URL
  try {
    u = typeof url === 'string' ? new URL(url) : url
  } catch (err) {
    throw new BoundError('ERR_INVALID_INPUT', 'DPoP htu: not an absolute URL', { cause: err })
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:') {
    throw new BoundError('ERR_INVALID_INPUT', `DPoP htu: unsupported scheme ${u.protocol}`)
  }
  return `${u.protocol}//${u.host}${u.pathname}`
}

/**
 * The origin (`scheme://host[:port]`) nonces are kept under.
 *
 * @example
 * ```ts
 * originOf('https://API.example.com:443/orders?x=1') // 'https://api.example.com'
 * ```
 */
export function originOf(url: string | URL): string {
  return (typeof url === 'string' ? new URL(url) : url).origin
}
