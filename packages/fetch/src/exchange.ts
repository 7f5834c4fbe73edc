import { STATUS_CODES } from 'node:http'
import { Readable, Transform } from 'node:stream'
import { constants, createBrotliDecompress, createGunzip, createInflate, createInflateRaw } from 'node:zlib'
import type { Dispatcher } from 'undici'

/**
 * A `get(name)` view over undici's raw response headers (lower-cased names, repeated fields joined
 * with `, `).
 *
 * @example
 * ```ts
 * const headers: HeadersView = { get: (name) => rawHeaders[name.toLowerCase()] ?? null }
 * headers.get('WWW-Authenticate')
 * ```
 */
export interface HeadersView {
  get(name: string): string | null
}

/** One HTTP exchange on the fast path, before (or instead of) becoming a `Response`. */
export interface Exchange {
  readonly status: number
  readonly headers: HeadersView
  /** Drops the body without reading it (for a response Bound answers and does not return). */
  discard(): Promise<void>
  /** Drops the response at once, closing its connection. */
  abandon(): void
  /** The global `Response` the caller gets, streaming the body (decoded as fetch does). */
  toResponse(url: URL, redirected: boolean, method: string): Response
}

const NULL_BODY = new Set([101, 103, 204, 205, 304])

/** Wraps undici's `ResponseData` as an {@link Exchange}. */
export function toExchange(data: Dispatcher.ResponseData): Exchange {
  const raw = data.headers
  const headers: HeadersView = {
    get(name) {
      const v = raw[name.toLowerCase()]
      return v === undefined ? null : Array.isArray(v) ? v.join(', ') : v
    },
  }
  return {
    status: data.statusCode,
    headers,
    // bounded like the interceptor's: 64 KiB, and a few seconds (then the connection goes)
    discard: () => data.body.dump({ limit: 65_536, signal: AbortSignal.timeout(5_000) }).catch(() => {}),
    abandon: () => void data.body.destroy(),
    toResponse(url, redirected, method) {
      let body: Readable | null = data.body
      if (NULL_BODY.has(data.statusCode) || method === 'HEAD') {
        void data.body.dump().catch(() => {})
        body = null
      } else {
        body = decode(data.body, headers.get('content-encoding'))
      }
      // a response's url never has the fragment, as fetch's ('#' in a serialized URL starts it)
      const hash = url.href.indexOf('#')
      return new BoundResponse(body, data.statusCode, raw, hash === -1 ? url.href : url.href.slice(0, hash), redirected) as unknown as Response
    },
  }
}

/** undici's raw response headers as a `Headers` (repeated fields appended one by one). */
function toHeaders(raw: Dispatcher.ResponseData['headers']): Headers {
  const out = new Headers()
  for (const name in raw) {
    const value = raw[name]
    if (value === undefined) continue
    if (Array.isArray(value)) for (const v of value) out.append(name, v)
    else out.append(name, value)
  }
  return out
}

type FastBody = Readable & { text?: () => Promise<string>; json?: () => Promise<unknown>; arrayBuffer?: () => Promise<ArrayBuffer> }

/**
 * The global `Response`, reading its body straight from undici's stream: the web `ReadableStream`
 * is only made if `body` is asked for, so `json()`/`text()`/`arrayBuffer()` skip the web-streams
 * machinery that dominates fetch's cost. Everything else is the platform's own Response.
 */
// (typed against a minimal base: the DOM typings declare Response's accessors and methods as
// properties, which a subclass may not redefine in TypeScript; at run time it is the real Response)
const PlatformResponse = globalThis.Response as unknown as new (body: null, init: ResponseInit) => { readonly status: number; readonly statusText: string }

class BoundResponse extends PlatformResponse {
  #source: FastBody | null
  #stream: ReadableStream<Uint8Array> | null = null
  #used = false
  readonly #url: string
  readonly #redirected: boolean
  // the headers become a `Headers` when first asked for (most callers read a body and no header)
  #raw: Dispatcher.ResponseData['headers'] | null
  #headers: Headers | null = null

  constructor(source: Readable | null, status: number, raw: Dispatcher.ResponseData['headers'], url: string, redirected: boolean) {
    super(null, { status, statusText: STATUS_CODES[status] ?? '' })
    this.#source = source
    this.#raw = raw
    this.#url = url
    this.#redirected = redirected
  }

  get headers(): Headers {
    if (this.#headers === null) {
      this.#headers = toHeaders(this.#raw!)
      this.#raw = null
    }
    return this.#headers
  }

  get url(): string {
    return this.#url
  }

  get redirected(): boolean {
    return this.#redirected
  }

  get body(): ReadableStream<Uint8Array> | null {
    if (this.#source === null) return null
    this.#stream ??= Readable.toWeb(this.#source) as unknown as ReadableStream<Uint8Array>
    return this.#stream
  }

  /** As fetch's: the body was read (or its stream disturbed), not merely locked by a reader. */
  get bodyUsed(): boolean {
    return this.#used || (this.#stream !== null && Readable.isDisturbed(this.#stream as unknown as Readable))
  }

  #take(): FastBody | null {
    if (this.bodyUsed || this.#stream?.locked) throw new TypeError('Body is unusable: Body has already been read')
    this.#used = true
    return this.#stream === null ? this.#source : null
  }

  /** Reads the whole body through the web stream (when one was made) with the platform's Response. */
  #viaStream(): Response {
    return new Response(this.#stream, { headers: this.headers })
  }

  async arrayBuffer(): Promise<ArrayBuffer> {
    const stream = this.#stream
    const source = this.#take()
    if (source === null) return stream ? this.#viaStream().arrayBuffer() : new ArrayBuffer(0)
    if (typeof source.arrayBuffer === 'function') return source.arrayBuffer()
    const chunks: Buffer[] = []
    for await (const chunk of source) chunks.push(chunk as Buffer)
    const all = Buffer.concat(chunks)
    return all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength) as ArrayBuffer
  }

  async bytes(): Promise<Uint8Array> {
    return new Uint8Array(await this.arrayBuffer())
  }

  async text(): Promise<string> {
    const source = this.#source
    if (source !== null && this.#stream === null && typeof source.text === 'function' && !this.bodyUsed) {
      this.#used = true
      return source.text()
    }
    return new TextDecoder().decode(await this.arrayBuffer())
  }

  async json(): Promise<unknown> {
    return JSON.parse(await this.text())
  }

  async blob(): Promise<Blob> {
    return new Blob([await this.arrayBuffer()], { type: this.headers.get('content-type') ?? '' })
  }

  async formData(): Promise<FormData> {
    const bytes = await this.arrayBuffer()
    return new Response(bytes, { headers: this.headers }).formData()
  }

  clone(): Response {
    if (this.bodyUsed || this.#stream?.locked) throw new TypeError('Response.clone: Body has already been consumed.')
    const stream = this.body
    let other: ReadableStream<Uint8Array> | null = null
    if (stream) {
      const [a, b] = stream.tee()
      this.#stream = a
      other = b
    }
    const copy = new Response(other, { status: this.status, statusText: this.statusText, headers: this.headers })
    Object.defineProperty(copy, 'url', { value: this.#url })
    if (this.#redirected) Object.defineProperty(copy, 'redirected', { value: true })
    return copy
  }
}

/**
 * Undoes `Content-Encoding` the way fetch does (gzip, deflate, br; several in order), tolerating a
 * truncated tail (sync flush at the end, as fetch and cURL do).
 */
function decode(body: Readable, encoding: string | null): Readable {
  if (!encoding) return body
  const codings = encoding.toLowerCase().split(',').map((c) => c.trim()).filter((c) => c && c !== 'identity')
  const decoders: Transform[] = []
  for (const coding of codings.reverse()) {
    const decoder =
      coding === 'gzip' || coding === 'x-gzip' ? createGunzip({ finishFlush: constants.Z_SYNC_FLUSH })
        : coding === 'deflate' ? createDeflateAuto()
          : coding === 'br' ? createBrotliDecompress({ finishFlush: constants.BROTLI_OPERATION_FLUSH })
            : undefined
    // unknown coding: hand the bytes over as they are, none of the codings undone, as fetch does
    if (!decoder) {
      for (const d of decoders) d.destroy()
      return body
    }
    decoders.push(decoder)
  }
  let stream: Readable = body
  for (const decoder of decoders) {
    stream.on('error', (err) => decoder.destroy(err))
    stream = stream.pipe(decoder)
  }
  return stream
}

/** `deflate` is zlib-wrapped per RFC 9110, but some servers send raw deflate: look at the first byte. */
function createDeflateAuto(): Transform {
  let inner: Transform | undefined
  return new Transform({
    transform(chunk: Buffer, _encoding, done) {
      if (!inner) {
        inner = (chunk[0]! & 0x0f) === 0x08 ? createInflate({ finishFlush: constants.Z_SYNC_FLUSH }) : createInflateRaw({ finishFlush: constants.Z_SYNC_FLUSH })
        inner.on('data', (d: Buffer) => this.push(d))
        inner.on('error', (e) => this.destroy(e))
      }
      inner.write(chunk, () => done())
    },
    flush(done) {
      if (!inner) return done()
      inner.once('end', () => done())
      inner.end()
    },
  })
}
