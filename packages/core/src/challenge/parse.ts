/**
 * One authentication challenge from a `WWW-Authenticate` field (RFC 9110 §11).
 *
 * @example
 * ```ts
 * const [challenge]: Challenge[] = parseChallenges('Bearer realm="api", error="invalid_token"')
 * challenge.params.error // 'invalid_token'
 * ```
 */
export interface Challenge {
  /** The auth-scheme, lower-cased (`bearer`, `dpop`, …). Schemes are case-insensitive (RFC 9110 §11.1). */
  scheme: string
  /** The token68 form (`Negotiate YIIB==`), when the challenge has one instead of parameters. */
  token68?: string
  /** Parameters by lower-cased name, values unescaped and kept as received. */
  params: Record<string, string>
  /**
   * Parameter names that appeared more than once. RFC 9110 §11.2 forbids that; such a parameter is
   * treated as absent (it is not in `params`) so no value is picked silently.
   */
  duplicateParams?: string[]
}

/**
 * Upper bounds that keep hostile headers cheap.
 *
 * @example
 * ```ts
 * parseChallenges(response.headers, { maxLength: 8_192, maxChallenges: 4 })
 * ```
 */
export interface ParseChallengesLimits {
  /** Characters read at most; the rest is ignored. Default 65,536. */
  maxLength?: number
  /** Challenges kept at most. Default 32. */
  maxChallenges?: number
  /** Parameters kept per challenge at most. Default 64. */
  maxParams?: number
}

const TCHAR = new Uint8Array(128)
for (const c of "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") TCHAR[c.charCodeAt(0)] = 1
const T68 = new Uint8Array(128)
for (const c of '-._~+/0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ') T68[c.charCodeAt(0)] = 1

const isTchar = (c: number) => c < 128 && TCHAR[c] === 1
const isT68 = (c: number) => c < 128 && T68[c] === 1
const isWs = (c: number) => c === 0x20 || c === 0x09

/**
 * Parses `WWW-Authenticate` field values into challenges (RFC 9110 §11.6.1), in order.
 *
 * Accepts one string, several field lines (an array, combined in order), or a `Headers` object.
 * Handles several challenges per line, token and quoted-string values with `\` escapes, token68,
 * case-insensitive names, optional whitespace and empty list elements. Runs in time linear in the
 * input, never throws: a malformed challenge is dropped and parsing resumes at the next one.
 *
 * @example
 * ```ts
 * parseChallenges('DPoP error="use_dpop_nonce", Bearer realm="api"')
 * // [{ scheme: 'dpop', params: { error: 'use_dpop_nonce' } }, { scheme: 'bearer', params: { realm: 'api' } }]
 * ```
 */
export function parseChallenges(
  input: string | readonly string[] | { get(name: string): string | null } | null | undefined,
  limits: ParseChallengesLimits = {},
): Challenge[] {
  let text: string
  if (input == null) return []
  if (typeof input === 'string') text = input
  else if (Array.isArray(input)) text = (input as readonly string[]).join(', ')
  else text = (input as { get(name: string): string | null }).get('www-authenticate') ?? ''
  const maxLength = limits.maxLength ?? 65_536
  const maxChallenges = limits.maxChallenges ?? 32
  const maxParams = limits.maxParams ?? 64
  if (text.length > maxLength) text = text.slice(0, maxLength)

  const out: Challenge[] = []
  const n = text.length
  let i = 0
  let current: Challenge | undefined
  let currentBroken = false
  let seen: Set<string> | undefined

  const finish = () => {
    if (current && !currentBroken && out.length < maxChallenges) {
      if (current.duplicateParams) for (const d of current.duplicateParams) delete current.params[d]
      out.push(current)
    }
    current = undefined
    currentBroken = false
  }
  // Skips to just after the next top-level comma (quoted strings respected), or to the end.
  const skipElement = () => {
    while (i < n) {
      const c = text.charCodeAt(i)
      if (c === 0x2c) { i++; return }
      if (c === 0x22) {
        i++
        while (i < n && text.charCodeAt(i) !== 0x22) i += text.charCodeAt(i) === 0x5c ? 2 : 1
        i++
      } else i++
    }
  }
  const skipWs = () => { while (i < n && isWs(text.charCodeAt(i))) i++ }
  const readToken = () => {
    const start = i
    while (i < n && isTchar(text.charCodeAt(i))) i++
    return text.slice(start, i)
  }
  // Reads a param value at i (token or quoted-string); undefined when malformed.
  const readValue = (): string | undefined => {
    if (text.charCodeAt(i) === 0x22) {
      i++
      let value = ''
      let chunk = i
      while (i < n) {
        const c = text.charCodeAt(i)
        if (c === 0x22) { value += text.slice(chunk, i); i++; return value }
        if (c === 0x5c) {
          value += text.slice(chunk, i)
          if (i + 1 >= n) break
          value += text[i + 1]
          i += 2
          chunk = i
        } else i++
      }
      return undefined // unterminated
    }
    const token = readToken()
    return token === '' ? undefined : token
  }
  const addParam = (name: string, value: string) => {
    if (!current) return
    const key = name.toLowerCase()
    seen ??= new Set()
    if (seen.has(key)) {
      if (!current.duplicateParams?.includes(key)) (current.duplicateParams ??= []).push(key)
      return
    }
    seen.add(key)
    if (Object.keys(current.params).length < maxParams) current.params[key] = value
  }
  // After a value: OWS then "," or end. Anything else makes the challenge malformed.
  const endElement = () => {
    skipWs()
    if (i >= n) return
    if (text.charCodeAt(i) === 0x2c) { i++; return }
    currentBroken = true
    skipElement()
  }

  while (i < n) {
    skipWs()
    if (i >= n) break
    if (text.charCodeAt(i) === 0x2c) { i++; continue }
    const start = i
    const name = readToken()
    if (name === '') { currentBroken = true; skipElement(); continue }
    const afterName = i
    skipWs()
    if (text.charCodeAt(i) === 0x3d && current && !current.token68) {
      // auth-param of the current challenge: name BWS "=" BWS value
      i++
      skipWs()
      const value = readValue()
      if (value === undefined) { currentBroken = true; skipElement(); continue }
      addParam(name, value)
      endElement()
      continue
    }
    if (text.charCodeAt(i) === 0x3d) {
      // a param with no challenge before it (or after a token68): malformed element
      i = start
      skipElement()
      continue
    }
    // a new challenge: auth-scheme [ 1*SP ( token68 / #auth-param ) ]
    finish()
    if (out.length >= maxChallenges) break
    current = { scheme: name.toLowerCase(), params: {} }
    seen = undefined
    i = afterName
    if (i >= n) break
    const c = text.charCodeAt(i)
    if (c === 0x2c) { i++; continue }
    if (!isWs(c)) { currentBroken = true; skipElement(); continue }
    skipWs()
    if (i >= n) break
    // Peek: token68 is a run of token68 chars, then "="s, then OWS and "," or end.
    const runStart = i
    let j = i
    while (j < n && isT68(text.charCodeAt(j))) j++
    let k = j
    while (k < n && text.charCodeAt(k) === 0x3d) k++
    let m = k
    while (m < n && isWs(text.charCodeAt(m))) m++
    if (j > runStart && (m >= n || text.charCodeAt(m) === 0x2c)) {
      current.token68 = text.slice(runStart, k)
      i = m < n ? m + 1 : m
      continue
    }
    // otherwise the loop reads the first auth-param (or a next scheme) from here
  }
  finish()
  return out
}
