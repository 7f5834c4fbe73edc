import { assertSecureUrl } from '@bound/core'
import { accessTokenHash, createProofBuilder, importDpopKey, isValidNonce, normalizeHtu } from '@bound/dpop'
import { parseCommand } from '../args.js'
import { keyError, readKey } from '../credentials.js'
import { usage } from '../errors.js'
import type { Context } from '../io.js'

const METHOD = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/
/** An access token: visible ASCII, no spaces (RFC 6750 b64token and the JWTs in practice). */
const ACCESS_TOKEN = /^[\x21-\x7e]{1,65536}$/

/** The access token of `--token VALUE|-` or `--token-env NAME`, or undefined without either. */
async function accessToken(ctx: Context, value: string | undefined, env: string | undefined): Promise<string | undefined> {
  if (value !== undefined && env !== undefined) throw usage('give --token or --token-env, not both')
  let token: string | undefined
  let from: string
  if (env !== undefined) {
    token = ctx.env[env]
    from = `the environment variable ${env}`
    if (token === undefined || token === '') throw usage(`--token-env: the environment variable ${env} is not set or empty`)
  } else if (value === '-') {
    token = (await ctx.readFile('-', '--token')).toString('utf8')
    from = 'standard input'
  } else {
    token = value
    from = '--token'
  }
  if (token === undefined) return undefined
  token = token.trim()
  if (token.length >= 4) ctx.secrets.add(token)
  // (never echoed: it is a credential)
  if (!ACCESS_TOKEN.test(token)) throw usage(`${from} does not hold an access token (empty, or has spaces or control characters)`)
  return token
}

/**
 * `bound proof <METHOD> <URL>`: one DPoP proof (RFC 9449) signed with `--dpop-key`, on stdout — for
 * curl and other clients: `curl -H "Authorization: DPoP $T" -H "DPoP: $(bound proof GET $URL --token-env T …)"`.
 * With an access token, the proof carries its `ath`; with `--nonce`, the server's nonce.
 */
export async function proof(args: readonly string[], ctx: Context): Promise<number> {
  const { values, positionals } = parseCommand('proof', args, {
    'dpop-key': { type: 'string' },
    token: { type: 'string' },
    'token-env': { type: 'string' },
    nonce: { type: 'string' },
  })
  // (a stray argument is not echoed: it may be a token that lost its flag)
  if (positionals.length !== 2) throw usage(`proof takes two arguments, METHOD and URL (got ${positionals.length})`)
  const [method, target] = positionals as [string, string]
  if (!METHOD.test(method)) throw usage(`proof: ${JSON.stringify(method.slice(0, 20))} is not an HTTP method`)
  let url: URL
  try {
    url = assertSecureUrl(target, 'URL')
  } catch (err) {
    throw usage(`proof: ${err instanceof Error ? err.message : String(err)}`)
  }
  const path = values['dpop-key']
  if (path === undefined) throw usage('proof: --dpop-key FILE is required (a key from bound keygen)')
  const nonce = values.nonce
  if (nonce !== undefined && !isValidNonce(nonce)) throw usage('--nonce is not a valid DPoP nonce (RFC 9449 §8.1: printable ASCII without spaces, quotes or backslashes)')
  const token = await accessToken(ctx, values.token, values['token-env'])
  const key = await importDpopKey(await readKey(ctx, path, '--dpop-key')).catch((err: unknown) => keyError(err, '--dpop-key', path))
  const jwt = await createProofBuilder(key).build({
    htm: method,
    htu: normalizeHtu(url),
    iat: Math.floor(Date.now() / 1000),
    ...(token !== undefined ? { ath: accessTokenHash(token) } : {}),
    ...(nonce !== undefined ? { nonce } : {}),
  })
  ctx.stdout.write(`${jwt}\n`)
  return 0
}
