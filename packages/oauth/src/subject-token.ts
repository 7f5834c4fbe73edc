import { readFile } from 'node:fs/promises'
import { BoundError } from '@bound/core'
import { functionRule, optionsChecker, z } from '@bound/core/internal'

/**
 * Where a subject token or assertion comes from. Read afresh for every token request, so a file
 * rotated on disk (Kubernetes projected service-account tokens) or a refreshed variable is picked up.
 *
 * @example
 * ```ts
 * const fromVault: TokenSource = async () => (await vault.read('identity/oidc/token/ci')).data.token
 * tokenExchange({ subjectToken: fromVault, resource })
 * ```
 */
export type TokenSource = () => string | Promise<string>

const checkToken = (value: unknown, what: string): string => {
  if (typeof value !== 'string') throw new BoundError('ERR_INVALID_INPUT', `${what} did not yield a string`)
  const token = value.trim()
  if (token.length === 0) throw new BoundError('ERR_INVALID_INPUT', `${what} is empty`)
  if (token.length > 65_536 || /[\s\u0000-\u001f]/.test(token)) throw new BoundError('ERR_INVALID_INPUT', `${what} does not look like a token`)
  return token
}

/**
 * A token read from a file on every use (e.g. `/var/run/secrets/tokens/token`).
 *
 * @example
 * ```ts
 * tokenExchange({ subjectToken: fromFile('/var/run/secrets/tokens/bound'), resource })
 * ```
 */
export function fromFile(path: string): TokenSource {
  if (typeof path !== 'string' || path.length === 0) throw new BoundError('ERR_INVALID_CONFIG', 'fromFile needs a path')
  return async () => {
    let text: string
    try {
      text = await readFile(path, 'utf8')
    } catch (err) {
      throw new BoundError('ERR_INVALID_INPUT', `The token file ${path} could not be read (${(err as { code?: string }).code ?? 'error'})`, { cause: err })
    }
    return checkToken(text, `The token file ${path}`)
  }
}

/**
 * A token read from an environment variable on every use.
 *
 * @example
 * ```ts
 * jwtBearer({ assertion: fromEnv('CI_JOB_JWT'), resource })
 * ```
 */
export function fromEnv(name: string, env: NodeJS.ProcessEnv = process.env): TokenSource {
  if (typeof name !== 'string' || name.length === 0) throw new BoundError('ERR_INVALID_CONFIG', 'fromEnv needs a variable name')
  return () => {
    const value = env[name]
    if (value === undefined) throw new BoundError('ERR_INVALID_INPUT', `The environment variable ${name} is not set`)
    return checkToken(value, `The environment variable ${name}`)
  }
}

const checkGitHubActions = optionsChecker('fromGitHubActions', {
  audience: z.string().min(1).optional(),
  env: z.custom((v) => typeof v === 'object' && v !== null, 'must be an environment object').optional(),
  fetch: functionRule('must be a fetch function').optional(),
})

/** Normalises a source given as a string (a literal token), a function, or a source. */
export function toTokenSource(source: string | TokenSource, what: string): TokenSource {
  if (typeof source === 'string') {
    const token = checkToken(source, what)
    return () => token
  }
  if (typeof source !== 'function') throw new BoundError('ERR_INVALID_CONFIG', `${what} must be a string, fromFile(…), fromEnv(…) or a function`)
  return async () => checkToken(await source(), what)
}

/**
 * A GitHub Actions job's OIDC token, asked for on every use from the runner's endpoint
 * (`ACTIONS_ID_TOKEN_REQUEST_URL` with `ACTIONS_ID_TOKEN_REQUEST_TOKEN`; the job needs
 * `permissions: id-token: write`), for `audience`.
 *
 * @example
 * ```ts
 * tokenExchange({ subjectToken: fromGitHubActions({ audience: 'https://as.example.com' }), resource })
 * ```
 */
export function fromGitHubActions(options: { audience?: string; env?: NodeJS.ProcessEnv; fetch?: typeof globalThis.fetch } = {}): TokenSource {
  checkGitHubActions(options)
  const env = options.env ?? process.env
  const fetchFn = options.fetch ?? globalThis.fetch
  return async () => {
    const url = env.ACTIONS_ID_TOKEN_REQUEST_URL
    const bearer = env.ACTIONS_ID_TOKEN_REQUEST_TOKEN
    if (!url || !bearer) {
      throw new BoundError('ERR_INVALID_INPUT', 'ACTIONS_ID_TOKEN_REQUEST_URL / ACTIONS_ID_TOKEN_REQUEST_TOKEN are not set: run inside GitHub Actions with `permissions: id-token: write`')
    }
    const target = new URL(url)
    if (options.audience) target.searchParams.set('audience', options.audience)
    let res: Response
    try {
      res = await fetchFn(target, { headers: { authorization: `Bearer ${bearer}`, accept: 'application/json' }, signal: AbortSignal.timeout(10_000) })
    } catch (err) {
      throw new BoundError('ERR_NETWORK', `The GitHub Actions OIDC endpoint ${target.origin} could not be reached`, { cause: err })
    }
    if (!res.ok) {
      await res.body?.cancel().catch(() => {})
      throw new BoundError('ERR_INVALID_INPUT', `The GitHub Actions OIDC endpoint answered HTTP ${res.status}`)
    }
    const body = (await res.json().catch(() => undefined)) as { value?: unknown } | undefined
    return checkToken(body?.value, 'The GitHub Actions OIDC token')
  }
}
