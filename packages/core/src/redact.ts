import { createHash } from 'node:crypto'

/**
 * Keeps only the characters RFC 6749 / RFC 6750 allow in `error`, `error_description` and `error_uri`
 * (%x20-21 / %x23-5B / %x5D-7E) and caps the length, so server-chosen text cannot inject
 * control characters or huge strings into messages and logs.
 *
 * @example
 * ```ts
 * sanitizeProtocolText('bad\r\nSet-Cookie: x', 200) // 'badSet-Cookie: x'
 * ```
 */
export function sanitizeProtocolText(value: string, max = 200): string {
  let out = ''
  for (let i = 0; i < value.length && out.length < max; i++) {
    const c = value.charCodeAt(i)
    if (c === 0x20 || c === 0x21 || (c >= 0x23 && c <= 0x5b) || (c >= 0x5d && c <= 0x7e)) out += value[i]
  }
  return value.length > max && out.length >= max ? `${out}…` : out
}

/**
 * A short, non-reversible label for a secret (token, proof, key) that is safe to log:
 * `sha256:` followed by 8 base64url characters of its SHA-256.
 *
 * @example
 * ```ts
 * log.info({ token: redactedLabel(accessToken) }, 'token acquired') // token: 'sha256:F847sOIv'
 * ```
 */
export function redactedLabel(secret: string): string {
  return `sha256:${createHash('sha256').update(secret).digest('base64url').slice(0, 8)}`
}
