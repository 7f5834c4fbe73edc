import { STATUS_CODES } from 'node:http'
import { assertSecureUrl, isBoundError } from '@bound/core'
import { createBoundFetch, getChallenges } from '@bound/fetch'
import { parseCommand } from '../args.js'
import { buildSession, credentialOptions } from '../credentials.js'
import { CliError, EXIT_CODES, networkDetail, usage } from '../errors.js'
import { closeWithin, scrub, writeAll, type Context } from '../io.js'
import { createVerbose } from '../verbose.js'

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/
/** Headers Bound sets itself on credential origins. */
const RESERVED = new Set(['authorization', 'dpop'])

function parseHeaders(lines: readonly string[]): Headers {
  const headers = new Headers()
  for (const line of lines) {
    const colon = line.indexOf(':')
    const name = colon < 0 ? '' : line.slice(0, colon).trim()
    if (!TOKEN.test(name)) throw usage(`-H expects 'Name: value' (got ${JSON.stringify(line.slice(0, 40))})`)
    if (RESERVED.has(name.toLowerCase())) throw usage(`-H ${name}: bound fetch sets Authorization and DPoP itself`)
    try {
      headers.append(name, line.slice(colon + 1).trim())
    } catch {
      throw usage(`-H ${name}: the value is not a valid header value`)
    }
  }
  return headers
}

/** `METHOD origin/path`, without query or fragment (they may carry secrets of their own). */
const shown = (method: string, url: URL) => `${method} ${url.origin}${url.pathname}`

const JSON_TYPE = /^application\/(?:[\w.+-]+\+)?json\s*(?:;|$)/i

/**
 * `--json`: `{ status, url, headers, body }` — `url` the final one (after redirects); `headers` by
 * lower-case name (`set-cookie` a list); `body` parsed when the response says it is JSON and
 * parses, else the text (UTF-8), or null when there is none.
 */
async function asJson(res: Response): Promise<{ status: number; url: string; headers: Record<string, string | string[]>; body: unknown }> {
  const headers: Record<string, string | string[]> = {}
  for (const [name, value] of res.headers) if (name !== 'set-cookie') headers[name] = value
  const cookies = res.headers.getSetCookie()
  if (cookies.length > 0) headers['set-cookie'] = cookies
  const text = res.body ? await res.text() : null
  let body: unknown = text
  if (text !== null && JSON_TYPE.test(res.headers.get('content-type') ?? '')) {
    try {
      body = JSON.parse(text)
    } catch {
      // not JSON after all: the text
    }
  }
  return { status: res.status, url: res.url, headers, body }
}

/**
 * `bound fetch <url>`: one request through a bound fetch (the URL's origin receives the
 * credentials; challenges answered), the body on stdout; exit 22 for HTTP status >= 400.
 */
export async function fetchCommand(args: readonly string[], ctx: Context): Promise<number> {
  const { values, positionals } = parseCommand('fetch', args, {
    ...credentialOptions,
    request: { type: 'string', short: 'X' },
    header: { type: 'string', short: 'H', multiple: true },
    data: { type: 'string', short: 'd' },
    'data-file': { type: 'string' },
    include: { type: 'boolean', short: 'i' },
    origin: { type: 'string', multiple: true },
    'resource-match': { type: 'string' },
    json: { type: 'boolean' },
    verbose: { type: 'boolean', short: 'v' },
  })
  if (positionals.length !== 1) throw usage(`fetch takes exactly one URL (got ${positionals.length} arguments)`)
  let url: URL
  try {
    url = assertSecureUrl(positionals[0]!, 'URL')
  } catch (err) {
    throw usage(`fetch: ${err instanceof Error ? err.message : String(err)}`)
  }
  const origins = [url.origin]
  for (const o of values.origin ?? []) {
    try {
      origins.push(assertSecureUrl(o, '--origin').origin)
    } catch (err) {
      throw usage(`--origin: ${err instanceof Error ? err.message : String(err)}`)
    }
  }
  const match = values['resource-match']
  if (match !== undefined && match !== 'exact' && match !== 'prefix') throw usage(`--resource-match must be exact or prefix (got ${JSON.stringify(match.slice(0, 20))})`)
  if (values.json && values.include) throw usage('give -i or --json, not both (--json has the status and headers)')
  const headers = parseHeaders(values.header ?? [])
  if (values.data !== undefined && values['data-file'] !== undefined) throw usage('give -d or --data-file, not both')
  const method = values.request ?? (values.data !== undefined || values['data-file'] !== undefined ? 'POST' : 'GET')
  if (!TOKEN.test(method)) throw usage(`-X: ${JSON.stringify(method.slice(0, 20))} is not an HTTP method`)
  let body: string | Buffer | undefined
  if (values.data !== undefined) body = values.data
  else if (values['data-file'] !== undefined) body = await ctx.readFile(values['data-file'], '--data-file')
  if (body !== undefined && (method.toUpperCase() === 'GET' || method.toUpperCase() === 'HEAD')) throw usage(`a ${method.toUpperCase()} request has no body (use -X POST, PUT…)`)
  // like curl -d
  if (body !== undefined && !headers.has('content-type')) headers.set('content-type', 'application/x-www-form-urlencoded')

  const verbose = values.verbose ? createVerbose(ctx) : undefined
  const { session, dpop, timeoutMs } = await buildSession(ctx, values, { command: 'fetch', ephemeralDpop: true, requireIssuer: false, ...(verbose ? { interceptors: [verbose.interceptor] } : {}) })
  verbose?.watch(session, { jkt: dpop?.jkt, certificate: values.cert !== undefined })
  const signal = AbortSignal.timeout(timeoutMs)
  const timedOut = () => new CliError('ERR_TIMEOUT', `${shown(method, url)}: no complete answer within ${timeoutMs / 1000} s (--timeout)`)
  try {
    const boundFetch = createBoundFetch({ session, origins, ...(match !== undefined ? { resourceMetadata: { match } } : {}) })
    let res: Response
    try {
      res = await boundFetch(url.href, { method, headers, ...(body !== undefined ? { body } : {}), signal })
    } catch (err) {
      if (signal.aborted) throw timedOut()
      if (isBoundError(err) || err instanceof CliError) throw err
      throw new CliError('ERR_NETWORK', `${shown(method, url)} failed (${networkDetail(err)})`, { cause: err })
    }
    if (values.include) {
      let head = `HTTP/1.1 ${res.status} ${res.statusText || STATUS_CODES[res.status] || ''}`.trimEnd() + '\n'
      for (const [name, value] of res.headers) head += `${name}: ${value}\n`
      await writeAll(ctx.stdout, `${head}\n`)
    }
    try {
      if (values.json) await writeAll(ctx.stdout, `${JSON.stringify(await asJson(res))}\n`)
      else if (res.body) for await (const chunk of res.body) await writeAll(ctx.stdout, chunk)
    } catch (err) {
      if (signal.aborted) throw timedOut()
      throw new CliError('ERR_NETWORK', `${shown(method, url)}: the response body could not be read (${networkDetail(err)})`, { cause: err })
    }
    if (res.status >= 400) {
      const challenge = getChallenges(res).find((c) => c.error !== undefined)
      const detail = challenge ? `; ${challenge.scheme === 'dpop' ? 'DPoP' : challenge.scheme === 'bearer' ? 'Bearer' : challenge.scheme} error="${challenge.error}"${challenge.errorDescription ? ` (${challenge.errorDescription})` : ''}` : ''
      const code = challenge?.boundError?.code ?? 'ERR_HTTP_STATUS'
      ctx.stderr.write(`bound: ${code}: ${scrub(`${shown(method, url)} answered HTTP ${res.status}${res.statusText ? ` ${res.statusText}` : ''}${detail}`, ctx.secrets)}\n`)
      return EXIT_CODES.httpError
    }
    return EXIT_CODES.ok
  } finally {
    await closeWithin(session)
  }
}
