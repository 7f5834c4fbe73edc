import { assertSecureUrl, BoundError } from '@bound/core'
import { generateDpopKey, importDpopKey, type DpopKey, type DpopKeyInput } from '@bound/dpop'
import {
  clientCredentials,
  clientSecretBasic,
  clientSecretPost,
  createSession,
  fromEnv,
  fromFile,
  noClientAuth,
  privateKeyJwt,
  selfSignedTlsClientAuth,
  tlsClientAuth,
  tokenExchange,
  TOKEN_TYPES,
  type ClientAuth,
  type Grant,
  type Session,
  type SessionOptions,
  type TokenSource,
} from '@bound/oauth'
import { parseSeconds } from './args.js'
import { usage } from './errors.js'
import type { Context } from './io.js'

/** The `parseArgs` options shared by `bound token` and `bound fetch`. */
export const credentialOptions = {
  issuer: { type: 'string' },
  'token-endpoint': { type: 'string' },
  'client-id': { type: 'string' },
  'client-secret': { type: 'string' },
  'client-secret-env': { type: 'string' },
  auth: { type: 'string' },
  'client-key': { type: 'string' },
  kid: { type: 'string' },
  'dpop-key': { type: 'string' },
  cert: { type: 'string' },
  key: { type: 'string' },
  ca: { type: 'string', multiple: true },
  resource: { type: 'string' },
  scope: { type: 'string' },
  'subject-token-file': { type: 'string' },
  'subject-token-env': { type: 'string' },
  'subject-token-type': { type: 'string' },
  timeout: { type: 'string' },
} as const

/** The parsed values of {@link credentialOptions}. */
export interface CredentialValues {
  issuer?: string | undefined
  'token-endpoint'?: string | undefined
  'client-id'?: string | undefined
  'client-secret'?: string | undefined
  'client-secret-env'?: string | undefined
  auth?: string | undefined
  'client-key'?: string | undefined
  kid?: string | undefined
  'dpop-key'?: string | undefined
  cert?: string | undefined
  key?: string | undefined
  ca?: string[] | undefined
  resource?: string | undefined
  scope?: string | undefined
  'subject-token-file'?: string | undefined
  'subject-token-env'?: string | undefined
  'subject-token-type'?: string | undefined
  timeout?: string | undefined
}

type AuthMethod = 'client_secret_basic' | 'client_secret_post' | 'private_key_jwt' | 'tls_client_auth' | 'self_signed_tls_client_auth' | 'none'

const AUTH_NAMES: Record<string, AuthMethod> = {
  basic: 'client_secret_basic',
  client_secret_basic: 'client_secret_basic',
  post: 'client_secret_post',
  client_secret_post: 'client_secret_post',
  private_key_jwt: 'private_key_jwt',
  jwt: 'private_key_jwt',
  tls: 'tls_client_auth',
  tls_client_auth: 'tls_client_auth',
  self_signed_tls: 'self_signed_tls_client_auth',
  self_signed_tls_client_auth: 'self_signed_tls_client_auth',
  none: 'none',
}

const SUBJECT_TOKEN_TYPES: Record<string, string> = {
  jwt: TOKEN_TYPES.jwt,
  id_token: TOKEN_TYPES.idToken,
  access_token: TOKEN_TYPES.accessToken,
}

/** A session built from the command line, and what the command needs to know about it. */
export interface BuiltSession {
  session: Session
  /** The DPoP key, when the session is DPoP-bound. */
  dpop: DpopKey | undefined
  /** Whole-command time limit, in milliseconds. */
  timeoutMs: number
  /** The client authentication method in use. */
  auth: AuthMethod
}

const checkUrl = (value: string, flag: string): URL => {
  try {
    return assertSecureUrl(value, flag)
  } catch (err) {
    throw usage(`${flag}: ${err instanceof Error ? err.message : String(err)}`)
  }
}

/** Reads a key file: a JWK (JSON) or PEM. */
export async function readKey(ctx: Context, path: string, flag: string): Promise<DpopKeyInput> {
  const text = (await ctx.readFile(path, flag)).toString('utf8')
  if (!text.trimStart().startsWith('{')) return text
  try {
    const jwk: unknown = JSON.parse(text)
    if (typeof jwk === 'object' && jwk !== null && !Array.isArray(jwk)) return jwk as DpopKeyInput
  } catch {
    // fall through
  }
  throw new BoundError('ERR_DPOP_KEY_INVALID', `${flag} ${path}: ${path === '-' ? 'standard input' : 'the file'} is neither a JWK (JSON object) nor PEM`)
}

/** Re-throws a key error with the flag and file it came from in its message (same code). */
export const keyError = (err: unknown, flag: string, path: string): never => {
  if (err instanceof BoundError && !err.message.startsWith(flag)) throw new BoundError(err.code, `${flag} ${path}: ${err.message}`)
  throw err
}

/**
 * Builds a session from the credential flags: client authentication (secret from a variable,
 * private key, client certificate), the binding (DPoP key and/or client certificate), trust anchors
 * and the grant (client credentials, or token exchange with a subject token).
 */
export async function buildSession(ctx: Context, v: CredentialValues, options: { command: string; ephemeralDpop: boolean; requireIssuer: boolean; interceptors?: SessionOptions['interceptors'] }): Promise<BuiltSession> {
  const clientId = v['client-id']
  if (!clientId) throw usage(`${options.command}: --client-id is required`)
  if (v.issuer !== undefined) checkUrl(v.issuer, '--issuer')
  if (v['token-endpoint'] !== undefined) checkUrl(v['token-endpoint'], '--token-endpoint')
  if (options.requireIssuer && v.issuer === undefined && v['token-endpoint'] === undefined) {
    throw usage(`${options.command}: --issuer (or --token-endpoint) is required`)
  }
  if (v.resource !== undefined) {
    let u: URL
    try {
      u = new URL(v.resource)
    } catch {
      throw usage('--resource must be an absolute URI')
    }
    if (u.hash) throw usage('--resource must not have a fragment (RFC 8707)')
  }
  const timeoutMs = parseSeconds(v.timeout, '--timeout', 30) * 1000

  // The client secret: from a variable (preferred) or the command line (visible in `ps`).
  if (v['client-secret'] !== undefined && v['client-secret-env'] !== undefined) throw usage('give --client-secret or --client-secret-env, not both')
  let secret: string | undefined
  if (v['client-secret-env'] !== undefined) {
    const name = v['client-secret-env']
    secret = ctx.env[name]
    if (secret === undefined || secret === '') throw usage(`--client-secret-env: the environment variable ${name} is not set or empty`)
    ctx.secrets.add(secret)
  } else if (v['client-secret'] !== undefined) {
    secret = v['client-secret']
    if (secret === '') throw usage('--client-secret is empty')
    ctx.secrets.add(secret)
    ctx.warn('--client-secret puts the secret on the command line, where other users see it (ps, /proc/<pid>/cmdline) and shells keep it in their history; prefer --client-secret-env NAME')
  }

  if ((v.cert === undefined) !== (v.key === undefined)) throw usage('--cert and --key go together')

  let auth: AuthMethod
  if (v.auth !== undefined) {
    const named = AUTH_NAMES[v.auth]
    if (!named) throw usage(`--auth must be one of basic, post, private_key_jwt, tls, self_signed_tls, none (got ${JSON.stringify(v.auth.slice(0, 40))})`)
    auth = named
  } else {
    auth = secret !== undefined ? 'client_secret_basic' : v['client-key'] !== undefined ? 'private_key_jwt' : v.cert !== undefined ? 'tls_client_auth' : 'none'
  }
  const usesSecret = auth === 'client_secret_basic' || auth === 'client_secret_post'
  if (usesSecret && secret === undefined) throw usage(`--auth ${auth} needs --client-secret-env NAME (or --client-secret)`)
  if (!usesSecret && secret !== undefined) throw usage(`a client secret is not used with --auth ${auth}`)
  if (auth === 'private_key_jwt' && v['client-key'] === undefined) throw usage('--auth private_key_jwt needs --client-key FILE')
  if (auth !== 'private_key_jwt' && v['client-key'] !== undefined) throw usage(`--client-key is not used with --auth ${auth}`)
  if ((auth === 'tls_client_auth' || auth === 'self_signed_tls_client_auth') && v.cert === undefined) throw usage(`--auth ${auth} needs --cert FILE and --key FILE`)

  let clientAuth: ClientAuth
  switch (auth) {
    case 'client_secret_basic':
      clientAuth = clientSecretBasic(secret!)
      break
    case 'client_secret_post':
      clientAuth = clientSecretPost(secret!)
      break
    case 'private_key_jwt': {
      const path = v['client-key']!
      const input = await readKey(ctx, path, '--client-key')
      // checked now, so a bad key fails before any request
      await importDpopKey(input).catch((err: unknown) => keyError(err, '--client-key', path))
      const kid = v.kid ?? (typeof (input as { kid?: unknown }).kid === 'string' ? (input as { kid: string }).kid : undefined)
      clientAuth = privateKeyJwt(input, kid !== undefined ? { kid } : {})
      break
    }
    case 'tls_client_auth':
      clientAuth = tlsClientAuth()
      break
    case 'self_signed_tls_client_auth':
      clientAuth = selfSignedTlsClientAuth()
      break
    case 'none':
      clientAuth = noClientAuth()
      break
  }

  // The binding: a DPoP key and/or the client certificate.
  let dpop: DpopKey | undefined
  if (v['dpop-key'] !== undefined) {
    const path = v['dpop-key']
    dpop = await importDpopKey(await readKey(ctx, path, '--dpop-key')).catch((err: unknown) => keyError(err, '--dpop-key', path))
  } else if (options.ephemeralDpop && v.cert === undefined) {
    dpop = await generateDpopKey()
  }
  const clientCertificate = v.cert !== undefined ? { cert: await ctx.readFile(v.cert, '--cert'), key: await ctx.readFile(v.key!, '--key') } : undefined
  const ca = await Promise.all((v.ca ?? []).map((p) => ctx.readFile(p, '--ca')))

  // The grant.
  if (v['subject-token-file'] !== undefined && v['subject-token-env'] !== undefined) throw usage('give --subject-token-file or --subject-token-env, not both')
  let subjectToken: TokenSource | undefined
  if (v['subject-token-file'] === '-') {
    // read once, now (a file is read on every use, so a rotated projected token is picked up)
    const text = (await ctx.readFile('-', '--subject-token-file')).toString('utf8').trim()
    if (text.length >= 4) ctx.secrets.add(text)
    subjectToken = () => text
  } else if (v['subject-token-file'] !== undefined) {
    subjectToken = fromFile(ctx.path(v['subject-token-file']))
  } else if (v['subject-token-env'] !== undefined) {
    subjectToken = fromEnv(v['subject-token-env'], ctx.env as NodeJS.ProcessEnv)
  }
  if (subjectToken === undefined && v['subject-token-type'] !== undefined) throw usage('--subject-token-type needs --subject-token-file or --subject-token-env')
  const grantOptions = { ...(v.resource !== undefined ? { resource: v.resource } : {}), ...(v.scope !== undefined ? { scope: v.scope } : {}) }
  let grant: Grant
  if (subjectToken) {
    const type = v['subject-token-type']
    const subjectTokenType = type === undefined ? undefined : (SUBJECT_TOKEN_TYPES[type] ?? (type.startsWith('urn:') ? type : undefined))
    if (type !== undefined && subjectTokenType === undefined) throw usage('--subject-token-type must be jwt, id_token, access_token or a token type URN')
    grant = tokenExchange({ subjectToken, ...(subjectTokenType ? { subjectTokenType } : {}), ...grantOptions })
  } else {
    grant = clientCredentials(grantOptions)
  }

  const session = createSession({
    ...(v.issuer !== undefined ? { issuer: v.issuer } : {}),
    ...(v['token-endpoint'] !== undefined ? { tokenEndpoint: v['token-endpoint'] } : {}),
    clientId,
    clientAuth,
    grant,
    ...(dpop ? { dpop } : {}),
    ...(clientCertificate ? { clientCertificate } : {}),
    ...(ca.length > 0 ? { ca } : {}),
    tokenRequestTimeoutMs: Math.max(100, Math.min(10_000, Math.round(timeoutMs))),
    ...(options.interceptors ? { interceptors: options.interceptors } : {}),
  })
  return { session, dpop, timeoutMs, auth }
}
