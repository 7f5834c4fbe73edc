import { BoundError } from '@bound/core'

/** A request broken into the parts Bound needs to send it again. */
export interface PreparedRequest {
  url: URL
  method: string
  /** The request's headers: lower-cased names, values as `Headers` combines them. */
  headers: Record<string, string>
  /** A body that can be sent again (string / bytes), `null` for none, or a one-shot stream. */
  body: string | Uint8Array | null | ReadableStream<Uint8Array> | AsyncIterable<Uint8Array>
  replayable: boolean
  signal: AbortSignal | undefined
  redirect: 'follow' | 'manual' | 'error'
}

type Input = string | URL | { url: string; method: string; headers: Headers; body: ReadableStream<Uint8Array> | null; signal?: AbortSignal; redirect?: string; clone?: () => unknown; arrayBuffer?: () => Promise<ArrayBuffer> }

/** Normalises `fetch(input, init)` arguments. Replayable bodies are materialised once. */
export async function prepareRequest(input: Input, init: RequestInit | undefined): Promise<PreparedRequest> {
  const req = prepareRequestNow(input, init)
  if (req.pendingBody) req.body = await req.pendingBody
  return req
}

/**
 * {@link prepareRequest} without a promise when none is needed (the hot path: a URL and a string or
 * byte body). A body that must be read first (a `Request`'s, a `Blob`, a `FormData`) is left in
 * `pendingBody` for the caller to await into `body`.
 */
export function prepareRequestNow(input: Input, init: RequestInit | undefined): PreparedRequest & { pendingBody?: Promise<Uint8Array> } {
  let pendingBody: Promise<Uint8Array> | undefined
  let url: URL
  let method = 'GET'
  let headers: Headers | undefined
  let signal: AbortSignal | undefined
  let redirect: PreparedRequest['redirect'] = 'follow'
  let body: PreparedRequest['body'] = null
  let replayable = true
  const isRequest = typeof input === 'object' && !(input instanceof URL) && 'method' in input && 'headers' in input
  try {
    url = new URL(isRequest ? (input as { url: string }).url : String(input))
  } catch (err) {
    throw new BoundError('ERR_INVALID_INPUT', 'fetch: the URL is not absolute', { cause: err })
  }
  if (isRequest) {
    const req = input as Exclude<Input, string | URL>
    method = req.method
    headers = new Headers(req.headers)
    signal = req.signal
    redirect = (req.redirect as PreparedRequest['redirect']) ?? 'follow'
    if (req.body !== null && init?.body === undefined) {
      // A Request's body: read it once so it can be sent again.
      pendingBody = (req as { arrayBuffer(): Promise<ArrayBuffer> }).arrayBuffer().then((b) => new Uint8Array(b))
    }
  }
  if (init) {
    if (init.method !== undefined) method = init.method
    if (init.headers !== undefined) headers = new Headers(init.headers as ConstructorParameters<typeof Headers>[0])
    if (init.signal != null) signal = init.signal
    if (init.redirect !== undefined) redirect = init.redirect as PreparedRequest['redirect']
    if (init.body !== undefined && init.body !== null) {
      headers ??= new Headers()
      const b = init.body as unknown
      if (typeof b === 'string') {
        body = b
        if (!headers.has('content-type')) headers.set('content-type', 'text/plain;charset=UTF-8')
      }
      else if (b instanceof Uint8Array) body = b
      else if (b instanceof ArrayBuffer) body = new Uint8Array(b)
      else if (ArrayBuffer.isView(b)) body = new Uint8Array(b.buffer, b.byteOffset, b.byteLength)
      else if (b instanceof URLSearchParams) {
        body = b.toString()
        if (!headers.has('content-type')) headers.set('content-type', 'application/x-www-form-urlencoded;charset=UTF-8')
      } else if (typeof Blob !== 'undefined' && b instanceof Blob) {
        pendingBody = b.arrayBuffer().then((bytes) => new Uint8Array(bytes))
        if (b.type && !headers.has('content-type')) headers.set('content-type', b.type)
      } else if (typeof FormData !== 'undefined' && b instanceof FormData) {
        const encoded = new Response(b)
        const type = encoded.headers.get('content-type')
        if (type && !headers.has('content-type')) headers.set('content-type', type)
        pendingBody = encoded.arrayBuffer().then((bytes) => new Uint8Array(bytes))
      } else if (typeof (b as ReadableStream).getReader === 'function' || typeof (b as AsyncIterable<unknown>)[Symbol.asyncIterator] === 'function') {
        // a web stream, a Node Readable or an async iterable: sent once, never replayed
        body = b as ReadableStream<Uint8Array>
        replayable = false
      } else {
        throw new BoundError('ERR_INVALID_INPUT', `fetch: unsupported body type ${Object.prototype.toString.call(b)}`)
      }
    }
  }
  // (a check below may still refuse the request: a body read then must not become an unhandled rejection)
  pendingBody?.catch(() => {})
  method = normalizeMethod(method)
  // as fetch: a GET or HEAD request has no body (it would otherwise go out, or be dropped, silently)
  if ((body !== null || pendingBody !== undefined) && (method === 'GET' || method === 'HEAD')) throw new BoundError('ERR_INVALID_INPUT', `fetch: a ${method} request cannot have a body`)
  // one plain record (undici's form); `Headers` only when the caller gave headers to validate and combine
  const flat: Record<string, string> = Object.create(null)
  if (headers) for (const [name, value] of headers) flat[name] = value
  // what fetch adds when absent (it then decodes the response: see exchange.ts)
  flat.accept ??= '*/*'
  flat['accept-encoding'] ??= 'gzip, deflate, br'
  return pendingBody === undefined ? { url, method, headers: flat, body, replayable, signal, redirect } : { url, method, headers: flat, body, replayable, signal, redirect, pendingBody }
}

// The methods fetch normalises (PATCH is not one of them: fetch('…', { method: 'patch' }) sends "patch").
const UPPER = new Set(['DELETE', 'GET', 'HEAD', 'OPTIONS', 'POST', 'PUT'])

/** Fetch's method normalisation: the standard methods upper-cased, others kept as given. */
function normalizeMethod(method: string): string {
  const upper = method.toUpperCase()
  if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(method)) throw new BoundError('ERR_INVALID_INPUT', 'fetch: invalid HTTP method')
  return UPPER.has(upper) ? upper : method
}
