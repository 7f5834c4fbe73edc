/**
 * `@bound/axios`: an axios adapter that sends every request through Bound — the session's bound
 * token and a fresh DPoP proof (or its client certificate) to the configured origins only, the
 * servers' challenges answered — with axios's own config, interceptors, transforms and errors.
 *
 * @packageDocumentation
 * @module @bound/axios
 */
import { Readable, Transform } from 'node:stream'
import axios, { AxiosError, AxiosHeaders, CanceledError, type AxiosAdapter, type AxiosInstance, type AxiosResponse, type CreateAxiosDefaults, type InternalAxiosRequestConfig } from 'axios'
import { BoundError } from '@bound/core'
import { getChallenges as challengesOf, type BoundOptions, type ResponseChallenge } from '@bound/fetch'
import { createBoundSender, decodedHeaderRecord, systemCodeOf } from '@bound/fetch/internal'

/**
 * Options of {@link boundAdapter}: where credentials go and how challenges are answered, as for
 * `createBoundFetch`. Redirect limits, timeouts, cancellation, `validateStatus`, `responseType`
 * and `maxContentLength` come from each request's axios config.
 *
 * @example
 * ```ts
 * const options: BoundAxiosOptions = { session, origins: ['https://api.example.com'], otherOrigins: 'error' }
 * ```
 */
export type BoundAxiosOptions = BoundOptions

/**
 * axios settings that would send the request some other way than through the session's transport
 * (its trust anchors, client-certificate routing and egress proxy). They are refused rather than
 * silently ignored: each has a session-side equivalent named in the error.
 */
const REFUSED: ReadonlyArray<readonly [key: string, instead: string]> = [
  ['httpAgent', 'give TLS and pool settings to the session (createSession({ ca, transport }))'],
  ['httpsAgent', 'give TLS and pool settings to the session (createSession({ ca, clientCertificate, transport }))'],
  ['socketPath', 'Unix sockets are not supported by the bound adapter'],
  ['lookup', 'use an undici DNS interceptor on the session (createSession({ interceptors: [interceptors.dns()] }))'],
  ['beforeRedirect', 'Bound follows redirects itself: credentials never cross origins'],
  ['http2Options', 'HTTP/2 is the session transport’s decision'],
]

// (axios's typings give CanceledError AxiosError's constructor; at run time it takes (message, config, request))
const canceled = (config: InternalAxiosRequestConfig, request: object): AxiosError => new (CanceledError as unknown as new (message: undefined, config: unknown, request: unknown) => AxiosError)(undefined, config, request)

const responses = new WeakMap<object, ResponseChallenge[]>()

/**
 * Creates an axios adapter that sends each request through Bound: the bound token and a fresh DPoP
 * proof go to `origins` only (a request elsewhere goes without credentials, or is refused with
 * `otherOrigins: 'error'`), DPoP nonce, `invalid_token`, step-up, claims and scope challenges are
 * answered once each, redirects are followed by Bound (a new proof per hop, no credentials across
 * origins, never from https down to http), and a streamed body is sent once and never replayed.
 *
 * The request goes out on the session's transport — its trust anchors, client certificate and
 * egress proxy — so axios's `proxy`, `httpAgent`/`httpsAgent`, `socketPath`, `lookup` and
 * `beforeRedirect` are refused with `ERR_INVALID_CONFIG`. Everything else axios does (interceptors,
 * `transformRequest`/`transformResponse`, `validateStatus`, `timeout`, `signal`, `maxRedirects`,
 * `maxContentLength`, `maxBodyLength`, `responseType`) works as usual. Bound's errors reach the
 * caller as an `AxiosError` with the same `code` (`ERR_ORIGIN_NOT_ALLOWED`, …) and the
 * `BoundError` as its `cause`.
 *
 * @example
 * ```ts
 * import axios from 'axios'
 * import { boundAdapter } from '@bound/axios'
 * const api = axios.create({ baseURL: 'https://api.example.com', adapter: boundAdapter({ session, origins: ['https://api.example.com'] }) })
 * const { data } = await api.get('/orders')
 * ```
 */
export function boundAdapter(options: BoundAxiosOptions): AxiosAdapter {
  const send = createBoundSender(options, 'boundAdapter')
  return async (config) => {
    for (const [key, instead] of REFUSED) {
      if ((config as unknown as Record<string, unknown>)[key] != null) throw new BoundError('ERR_INVALID_CONFIG', `axios option ${key} is not used by the bound adapter: ${instead}`)
    }
    if (config.proxy) throw new BoundError('ERR_INVALID_CONFIG', 'axios option proxy is not used by the bound adapter: give the proxy to the session (createSession({ proxy })); HTTPS_PROXY and NO_PROXY are followed by default')
    // the same URL axios's own adapter would request: baseURL + url (absolute urls as allowAbsoluteUrls says) + params
    let url: URL
    try {
      url = new URL(axios.getUri(config))
    } catch (err) {
      throw AxiosError.from(err as Error, AxiosError.ERR_INVALID_URL, config)
    }
    const request = { method: (config.method ?? 'get').toUpperCase(), url: url.href, responseURL: url.href }
    const headers = outgoingHeaders(config)
    const body = requestBody(config, headers, request)

    // timeout, the caller's signal and a CancelToken each abort the request; which one says what is thrown
    const controller = new AbortController()
    let why: 'timeout' | 'cancel' | undefined
    const cancel = (reason?: unknown) => {
      why ??= 'cancel'
      controller.abort(reason)
    }
    const callerSignal = config.signal as AbortSignal | undefined
    if (callerSignal?.aborted) throw canceled(config, request)
    const onAbort = () => cancel()
    callerSignal?.addEventListener?.('abort', onAbort, { once: true })
    config.cancelToken?.promise.then((reason) => cancel(reason), () => {})
    const timer = config.timeout && config.timeout > 0
      ? setTimeout(() => {
        why ??= 'timeout'
        controller.abort()
      }, config.timeout)
      : undefined
    const failure = (err: unknown, response?: AxiosResponse) => {
      if (why === 'cancel') return canceled(config, request)
      if (why === 'timeout') {
        const message = config.timeoutErrorMessage ?? `timeout of ${config.timeout}ms exceeded`
        return new AxiosError(message, config.transitional?.clarifyTimeoutError ? AxiosError.ETIMEDOUT : AxiosError.ECONNABORTED, config, request, response)
      }
      if (err instanceof AxiosError) return err
      // a network failure keeps its system code (ECONNREFUSED…), as with axios's own adapter; Bound's errors keep theirs
      const code = systemCodeOf(err) ?? (err instanceof BoundError ? err.code : AxiosError.ERR_NETWORK)
      return AxiosError.from(err as Error, code, config, request, response)
    }

    try {
      const res = await send(
        url,
        { method: request.method, headers, body: body as NonNullable<RequestInit['body']> | null, signal: controller.signal, redirect: config.maxRedirects === 0 ? 'manual' : 'follow', duplex: 'half' } as RequestInit,
        { maxRedirects: config.maxRedirects ?? 21 },
      )
      request.responseURL = res.url
      const response: AxiosResponse = {
        data: undefined,
        status: res.status,
        statusText: res.statusText,
        headers: responseHeaders(res),
        config,
        request,
      }
      responses.set(response, challengesOf(res))
      response.data = await responseData(res, config, (err) => failure(err, response), request, response)
      const valid = config.validateStatus
      if (!valid || valid(response.status)) return response
      throw new AxiosError(`Request failed with status code ${response.status}`, response.status >= 400 && response.status < 500 ? AxiosError.ERR_BAD_REQUEST : AxiosError.ERR_BAD_RESPONSE, config, request, response)
    } catch (err) {
      throw failure(err)
    } finally {
      clearTimeout(timer)
      // (a long-lived signal shared by many requests must not collect one listener per request)
      callerSignal?.removeEventListener?.('abort', onAbort)
    }
  }
}

/**
 * An axios instance whose adapter is {@link boundAdapter}: `createBoundAxios({ session, origins },
 * { baseURL })` is `axios.create({ baseURL, adapter: boundAdapter({ session, origins }) })`.
 *
 * @example
 * ```ts
 * const api = createBoundAxios({ session, origins: ['https://api.example.com'] }, { baseURL: 'https://api.example.com' })
 * const { data } = await api.post('/orders', { item: 'tea' })
 * ```
 */
export function createBoundAxios(options: BoundAxiosOptions, defaults: CreateAxiosDefaults = {}): AxiosInstance {
  return axios.create({ ...defaults, adapter: boundAdapter(options) })
}

/**
 * The parsed, classified `WWW-Authenticate` challenges of a response the bound adapter returned —
 * or of the response an `AxiosError` carries — with the typed error Bound attached when it could
 * not answer one (`ERR_STEP_UP_REQUIRED`, `ERR_SESSION_REVOKED`, …). Empty when there were none.
 *
 * @example
 * ```ts
 * try { await api.get('/admin') } catch (err) {
 *   const refusal = getChallenges(err).find((c) => c.boundError)
 *   if (refusal?.boundError?.code === 'ERR_STEP_UP_REQUIRED') askTheUser(refusal.acrValues)
 * }
 * ```
 */
export function getChallenges(responseOrError: AxiosResponse | AxiosError | unknown): ResponseChallenge[] {
  const response = responseOrError instanceof AxiosError || (responseOrError as { isAxiosError?: boolean })?.isAxiosError ? (responseOrError as AxiosError).response : responseOrError
  return (response && typeof response === 'object' ? responses.get(response) : undefined) ?? []
}

/** axios's headers as a plain record (`auth` becomes Basic, as axios's own adapter does). */
function outgoingHeaders(config: InternalAxiosRequestConfig): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [name, value] of Object.entries(AxiosHeaders.from(config.headers as never).toJSON())) {
    if (value === undefined || value === null || (value as unknown) === false) continue
    out[name.toLowerCase()] = Array.isArray(value) ? value.join(', ') : String(value)
  }
  if (config.auth) out.authorization = `Basic ${Buffer.from(`${config.auth.username ?? ''}:${config.auth.password ?? ''}`).toString('base64')}`
  if (config.decompress === false && out['accept-encoding'] === undefined) out['accept-encoding'] = 'identity'
  return out
}

/** `config.data` after axios's transforms, as a fetch body; `maxBodyLength` enforced when the size is known. */
function requestBody(config: InternalAxiosRequestConfig, headers: Record<string, string>, request: object): unknown {
  const data: unknown = config.data
  if (data === undefined || data === null) return null
  let size: number | undefined
  let body: unknown
  if (typeof data === 'string') {
    body = data
    size = Buffer.byteLength(data)
  } else if (data instanceof ArrayBuffer) {
    body = new Uint8Array(data)
    size = data.byteLength
  } else if (ArrayBuffer.isView(data)) {
    body = new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
    size = data.byteLength
  } else if (data instanceof URLSearchParams) {
    body = data.toString()
    size = Buffer.byteLength(body as string)
    headers['content-type'] ??= 'application/x-www-form-urlencoded;charset=utf-8'
  } else if (typeof FormData !== 'undefined' && data instanceof FormData) {
    // the encoder chooses the boundary: a content-type without one would not match the body
    if (!/boundary=/i.test(headers['content-type'] ?? '')) delete headers['content-type']
    delete headers['content-length']
    body = data
  } else if (typeof Blob !== 'undefined' && data instanceof Blob) {
    body = data
    size = data.size
  } else if (data instanceof Readable || typeof (data as AsyncIterable<unknown>)[Symbol.asyncIterator] === 'function') {
    // a stream: sent once; a challenge on it is returned, never answered by sending it again
    body = data
  } else {
    throw new AxiosError('Data after transformation must be a string, an ArrayBuffer, a Buffer, a FormData, a Blob or a Stream', AxiosError.ERR_BAD_REQUEST, config, request)
  }
  const limit = config.maxBodyLength ?? -1
  if (size !== undefined && limit > -1 && size > limit) throw new AxiosError('Request body larger than maxBodyLength limit', AxiosError.ERR_BAD_REQUEST, config, request)
  return body
}

/** The response's headers for axios. The body arrives decoded, so its coding and length headers go. */
function responseHeaders(res: Response): AxiosHeaders {
  return new AxiosHeaders(decodedHeaderRecord(res))
}

/** The body as axios's Node adapter gives it: a stream, a Buffer (`arraybuffer`) or a string; never more than `maxContentLength`. */
async function responseData(res: Response, config: InternalAxiosRequestConfig, fail: (err: unknown) => unknown, request: object, response: AxiosResponse): Promise<unknown> {
  const limit = config.maxContentLength ?? -1
  const tooLarge = () => new AxiosError(`maxContentLength size of ${limit} exceeded`, AxiosError.ERR_BAD_RESPONSE, config, request, response)
  const source = res.body ? Readable.fromWeb(res.body as never) : Readable.from([])
  if (config.responseType === 'stream') {
    if (limit < 0) return source
    let seen = 0
    const counted = new Transform({
      transform(chunk: Buffer, _enc, done) {
        seen += chunk.length
        done(seen > limit ? tooLarge() : null, chunk)
      },
    })
    source.on('error', (err) => counted.destroy(fail(err) as Error))
    return source.pipe(counted)
  }
  const chunks: Buffer[] = []
  let seen = 0
  try {
    for await (const chunk of source) {
      seen += (chunk as Buffer).length
      if (limit > -1 && seen > limit) {
        source.destroy()
        throw tooLarge()
      }
      chunks.push(chunk as Buffer)
    }
  } catch (err) {
    throw fail(err)
  }
  const all = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)
  if (config.responseType === 'arraybuffer') return all
  const encoding = (config.responseEncoding ?? 'utf8') as BufferEncoding
  const text = all.toString(encoding)
  return encoding === 'utf8' && text.charCodeAt(0) === 0xfeff ? text.slice(1) : text
}
