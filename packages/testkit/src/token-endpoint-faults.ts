import type { IncomingMessage, ServerResponse } from 'node:http'

/**
 * A fault the authorization server's token endpoint (on both listeners) injects instead of, or
 * before, its real answer. See {@link AuthorizationServer.setFault}.
 *
 * @example
 * ```ts
 * const fault: TokenEndpointFault = { kind: 'status', status: 429, retryAfter: 5 }
 * kit.as.setFault(fault)
 * ```
 */
export type TokenEndpointFault =
  /** Accept the request and never answer, until the fault is changed/cleared (then it is answered for real) or the server stops. */
  | { kind: 'hang' }
  /** Wait `ms` milliseconds, then answer for real. */
  | { kind: 'slow'; ms: number }
  /**
   * Answer with this HTTP status. `body` defaults to a JSON OAuth error (`server_error` for 500,
   * otherwise `temporarily_unavailable`), `contentType` to `application/json`; `retryAfter` sets
   * `Retry-After` (seconds or an HTTP date).
   */
  | { kind: 'status'; status: number; retryAfter?: number | string; body?: string; contentType?: string }
  /** `200 text/html`: a captive-portal style page. */
  | { kind: 'html' }
  /** `200 application/json` whose complete body is `{"access_token":"abc","tok` (invalid JSON). */
  | { kind: 'truncated' }
  /**
   * `200 application/json` with a syntactically valid token response of exactly `bytes` bytes
   * (minimum 58), streamed in 64 KiB chunks; chunked unless `contentLength` is true.
   */
  | { kind: 'huge'; bytes: number; contentLength?: boolean }
  /** `200 application/json` with exactly `JSON.stringify(json)`, e.g. `{ access_token: 'x', token_type: 'DPoP', expires_in: -1 }`. */
  | { kind: 'body'; json: unknown }
  /** Read the request, then destroy the socket without answering. */
  | { kind: 'drop' }

/**
 * Options of {@link AuthorizationServer.setFault}.
 *
 * @example
 * ```ts
 * kit.as.setFault({ kind: 'drop' }, { times: 2 }) // the next two token requests fail, then it clears itself
 * ```
 */
export interface TokenEndpointFaultOptions {
  /** Fault only the next `times` token requests, then clear automatically; default unlimited. */
  times?: number
}

const HTML = '<!doctype html><html><head><title>Sign in to the network</title></head>'
  + '<body><h1>Sign in to the network</h1><form method="post"><input name="user"></form></body></html>'

const TRUNCATED = '{"access_token":"abc","tok'

const CHUNK = Buffer.alloc(64 * 1024, 0x41)

function defaultStatusBody(status: number): string {
  return JSON.stringify({
    error: status === 500 ? 'server_error' : 'temporarily_unavailable',
    error_description: `test fault: HTTP ${status}`,
  })
}

/** Reads and discards the request body, then calls `then` (not at all when the request aborts). */
function afterBody(req: IncomingMessage, then: () => void): void {
  if (req.readableEnded) {
    then()
    return
  }
  req.once('end', then)
  req.resume()
}

function send(res: ServerResponse, status: number, contentType: string, body: string, extra: Record<string, string> = {}): void {
  res.writeHead(status, {
    ...extra,
    'content-type': contentType,
    'cache-control': 'no-store',
    'content-length': Buffer.byteLength(body),
  })
  res.end(body)
}

function waitForDrain(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      res.off('drain', done)
      res.off('close', done)
      resolve()
    }
    res.once('drain', done)
    res.once('close', done)
  })
}

async function streamHuge(res: ServerResponse, bytes: number, contentLength: boolean): Promise<void> {
  const prefix = '{"token_type":"Bearer","expires_in":300,"access_token":"'
  const suffix = '"}'
  const padding = Math.max(0, Math.floor(bytes) - prefix.length - suffix.length)
  const total = prefix.length + padding + suffix.length
  res.writeHead(200, {
    'content-type': 'application/json',
    'cache-control': 'no-store',
    ...(contentLength ? { 'content-length': String(total) } : {}),
  })
  res.write(prefix)
  let remaining = padding
  // Bounded: one iteration per 64 KiB, stops as soon as the client goes away.
  while (remaining > 0 && !res.destroyed) {
    const size = Math.min(remaining, CHUNK.length)
    remaining -= size
    if (!res.write(size === CHUNK.length ? CHUNK : CHUNK.subarray(0, size))) await waitForDrain(res)
  }
  if (!res.destroyed) res.end(suffix)
}

/**
 * Answers a token request with a terminal fault (every kind except `hang` and `slow`, which the
 * authorization server handles because they end in a real answer).
 */
export function answerWithFault(fault: Exclude<TokenEndpointFault, { kind: 'hang' } | { kind: 'slow' }>, req: IncomingMessage, res: ServerResponse): void {
  afterBody(req, () => {
    switch (fault.kind) {
      case 'status': {
        const body = fault.body ?? defaultStatusBody(fault.status)
        const extra: Record<string, string> = fault.retryAfter === undefined ? {} : { 'retry-after': String(fault.retryAfter) }
        send(res, fault.status, fault.contentType ?? 'application/json', body, extra)
        return
      }
      case 'html':
        send(res, 200, 'text/html; charset=utf-8', HTML)
        return
      case 'truncated':
        send(res, 200, 'application/json', TRUNCATED)
        return
      case 'huge':
        streamHuge(res, fault.bytes, fault.contentLength ?? false).catch(() => res.destroy())
        return
      case 'body':
        send(res, 200, 'application/json', JSON.stringify(fault.json) ?? 'null')
        return
      case 'drop':
        req.socket.destroy()
        return
    }
  })
}

/** Throws a TypeError for a malformed fault (checked when it is set, not when it fires). */
export function validateFault(fault: TokenEndpointFault): void {
  switch (fault.kind) {
    case 'hang':
    case 'html':
    case 'truncated':
    case 'body':
    case 'drop':
      return
    case 'slow':
      if (!Number.isFinite(fault.ms) || fault.ms < 0) throw new TypeError('slow fault: ms must be a non-negative number')
      return
    case 'status':
      if (!Number.isInteger(fault.status) || fault.status < 200 || fault.status > 599) {
        throw new TypeError('status fault: status must be an integer in 200..599')
      }
      return
    case 'huge':
      if (!Number.isFinite(fault.bytes) || fault.bytes < 0) throw new TypeError('huge fault: bytes must be a non-negative number')
      return
    default:
      throw new TypeError(`unknown fault kind ${(fault as { kind?: unknown }).kind as string}`)
  }
}
