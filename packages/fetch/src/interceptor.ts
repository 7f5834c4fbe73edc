import type { IncomingHttpHeaders } from 'node:http'
import { BoundError } from '@bound/core'
import type { Dispatcher } from 'undici'
import type { BoundToken } from '@bound/oauth'
import { createChallengeEngine, isChallengeable, type BoundOptions, type Credentials, type EngineExchange } from './engine.js'
import type { HeadersView } from './exchange.js'

type Controller = Dispatcher.DispatchController
type Handler = Dispatcher.DispatchHandler

/**
 * The caller's own handler under the wrappers undici's interceptors put around it (`handler`
 * links: a redirect interceptor re-dispatches the same RedirectHandler for each hop, wrapped anew
 * by each retry interceptor inside it), so every hop of one request maps to one object.
 */
function rootOf(handler: Handler): object {
  let h = handler as { handler?: unknown }
  for (let depth = 0; depth < 8 && typeof h.handler === 'object' && h.handler !== null; depth++) h = h.handler as { handler?: unknown }
  return h
}

/** Whether `path` is origin-form (RFC 9112 §3.2.1): `/…`, never `//host…`, a backslash or an absolute URL. */
const isOriginForm = (path: unknown): path is string => typeof path === 'string' && path.startsWith('/') && !path.startsWith('//') && !path.includes('\\')

/**
 * An undici interceptor that gives `undici.request`, `Client`, `Pool` and `Agent` users the same
 * bound session as the fetch wrapper — the same engine answers the same challenges.
 *
 * Where a request goes is decided by `origin` alone (what undici connects to); the `path` of a
 * credentialed request must be origin-form (`/orders?x=1`), or the request is refused with
 * `ERR_INVALID_INPUT` before any network call. A session with a client certificate sends
 * credentialed requests over its own certificate connection (the current generation, after every
 * rotation) and everything else through the dispatcher you composed onto, which presents none.
 * Credentials never follow a change of origin, whatever the compose order: a hop of a redirect
 * (or a retry) to another origin is sent without them, and a redirect interceptor composed inside
 * Bound's is turned off for credentialed requests (compose `interceptors.redirect` after Bound's).
 *
 * @example
 * ```ts
 * import { Agent, interceptors, request } from 'undici'
 * import { boundInterceptor } from '@bound/fetch'
 * const dispatcher = new Agent().compose(boundInterceptor({ session, origins: ['https://api.example.com'] }), interceptors.retry(), interceptors.redirect())
 * const { statusCode, body } = await request('https://api.example.com/orders', { dispatcher })
 * ```
 */
export function boundInterceptor(options: BoundOptions): Dispatcher.DispatcherComposeInterceptor {
  const engine = createChallengeEngine(options, 'boundInterceptor')
  const { session } = engine
  // the first origin each request was dispatched to: a later dispatch of the same request to
  // another origin is a redirect hop that crossed origins
  const firstOrigin = new WeakMap<object, string>()
  // the last origin parsed (a dispatcher sees the same opts.origin string request after request)
  let lastInput: string | undefined
  let lastOrigin = ''
  // a session with a client certificate sends credentialed requests over its own certificate connection
  const viaCertificate: Dispatcher.Dispatch | undefined = session.transport.hasClientCertificate ? (o, h) => session.transport.dispatch(o, h) : undefined
  // the last request URL built (the same path again and again is the common case)
  let lastUrl: URL | undefined
  let lastHref = ''
  return (dispatch) => (opts, handler: Handler) => {
    let origin: string
    const input = String(opts.origin)
    if (input === lastInput) origin = lastOrigin
    else {
      try {
        origin = new URL(input).origin
      } catch {
        return dispatch(opts, handler)
      }
      lastInput = input
      lastOrigin = origin
    }
    const request = rootOf(handler)
    const first = firstOrigin.get(request)
    if (first === undefined) firstOrigin.set(request, origin)
    const crossed = first !== undefined && first !== origin
    if (!engine.isCredentialOrigin(origin) || crossed) {
      if (engine.otherOrigins === 'error' && !engine.isCredentialOrigin(origin)) {
        return refuse(handler, new BoundError('ERR_ORIGIN_NOT_ALLOWED', `${origin} is not one of the origins this bound dispatcher sends credentials to`))
      }
      // DPOP-29: no credential of Bound's, or carried over from another origin, goes here
      return dispatch(crossed ? { ...opts, headers: withoutCredentials(opts.headers, true) } : opts, handler)
    }
    if (!isOriginForm(opts.path)) {
      return refuse(handler, new BoundError('ERR_INVALID_INPUT', `A request for ${origin} has a path that is not origin-form (it must start with a single "/"); refused before sending credentials`))
    }
    if (opts.upgrade || opts.method === 'CONNECT') {
      return refuse(handler, new BoundError('ERR_INVALID_INPUT', `An upgrade or CONNECT request for ${origin}: the bound interceptor carries credentials on HTTP requests only (their responses can be challenges it answers)`))
    }
    // htu is the origin undici connects to plus the path, never what the path alone might name
    const href = `${origin}${opts.path}`
    const url = href === lastHref && lastUrl ? lastUrl : (lastUrl = new URL(href))
    lastHref = href
    // the certificate only with credentials, on the session's own connection
    const send = viaCertificate ?? dispatch
    const call = new Call(handler)
    call.begin()
    const body = opts.body
    if (body === null || body === undefined || typeof body === 'string' || body instanceof Uint8Array) sendBound(call, send, opts, url, true)
    else if (isAsyncIterable(body) && (declaredLength(opts.headers) ?? Infinity) <= BUFFERED_BODY_BYTES) {
      // What undici's fetch sends for a string, bytes or a form: small and whole, so read before
      // sending, and sent again if a challenge is answered. (A stream of unknown length is sent once.)
      readWhole(body).then((bytes) => call.reason === null && sendBound(call, send, { ...opts, body: bytes }, url, true), (err: unknown) => call.fail(err))
    } else sendBound(call, send, opts, url, false)
    return true
  }

  /** Sends `opts` for `call` with the session's credentials: at once when a token is at hand, else through the engine. */
  function sendBound(call: Call, send: Dispatcher.Dispatch, opts: Dispatcher.DispatchOptions, url: URL, replayable: boolean): void {
    const method = opts.method
    /** One attempt with `credentials`, settled at its response's start (or its failure before). */
    const attempt = (credentials: Credentials | undefined, settle: Settle) => {
      const headers = withoutCredentials(opts.headers, false)
      if (credentials) {
        headers.authorization = credentials.authorization
        if (credentials.dpop) headers.dpop = credentials.dpop
      }
      // maxRedirections 0: a redirect interceptor inside this one cannot see origins change, so it does not follow
      call.send(send, { ...opts, headers, maxRedirections: 0 } as Dispatcher.DispatchOptions, settle)
    }
    // (no signal for the engine: an abort reaches the caller at once through the call; a wait for a
    // token or a step-up completes, then no further attempt is made)
    const answer = (first?: { token: BoundToken; res: Attempt }) =>
      engine
        .run(
          url,
          { method, replayable, signal: undefined },
          async (token, retry) => {
            if (call.reason) throw call.reason
            let credentials: Credentials | undefined
            if (token) {
              const pending = engine.credentials(token, method, url, retry.nonce)
              credentials = pending instanceof Promise ? await pending : pending
            }
            return new Promise<Attempt>((resolve, reject) => attempt(credentials, (err, res) => (err ? reject(err) : resolve(res!))))
          },
          first,
        )
        .then(({ res }) => res.deliver())
        .catch((err: unknown) => call.fail(err))

    // The fast path: a token at hand goes out now; only a challenge (400, 401, 403) needs the engine.
    const token = engine.ready(url)
    if (token === undefined) return void answer()
    const fast = (credentials: Credentials) =>
      attempt(credentials, (err, res) => {
        if (err) call.fail(err)
        else if (!isChallengeable(res!.status)) engine.observe(url, token, res!)
        else void answer({ token, res: res! })
      })
    let credentials
    try {
      credentials = engine.credentials(token, method, url)
    } catch (err) {
      return call.fail(err)
    }
    if (credentials instanceof Promise) credentials.then(fast, (err: unknown) => call.fail(err))
    else fast(credentials)
  }
}

/** The largest request body of known length (`content-length`) read whole before sending, so that it can be sent again. */
const BUFFERED_BODY_BYTES = 65_536

const isAsyncIterable = (body: unknown): body is AsyncIterable<unknown> => typeof (body as AsyncIterable<unknown> | null)?.[Symbol.asyncIterator] === 'function'

/** The request's `content-length`, when it declares one. */
function declaredLength(headers: Dispatcher.DispatchOptions['headers']): number | undefined {
  const value = withoutCredentials(headers, false)['content-length']
  const n = Number(Array.isArray(value) ? value[0] : value)
  return value !== undefined && Number.isSafeInteger(n) && n >= 0 ? n : undefined
}

/** All of a (small, declared-length) body's bytes. */
async function readWhole(body: AsyncIterable<unknown>): Promise<Buffer> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of body) {
    const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : Buffer.from(chunk as Uint8Array)
    if ((size += bytes.length) > BUFFERED_BODY_BYTES) throw new BoundError('ERR_INVALID_INPUT', `The request body is longer than its content-length says (more than ${BUFFERED_BODY_BYTES} bytes)`)
    chunks.push(bytes)
  }
  return Buffer.concat(chunks)
}

/** Called once per attempt: at its response's start (status ≥ 200), or with the error that ended it before. */
type Settle = (err: Error | null, res?: Attempt) => void

/** A request that never reaches the network: the caller's handler gets `err`. */
function refuse(handler: Handler, err: Error): true {
  const call = new Call(handler)
  call.begin()
  call.fail(err)
  return true
}

/**
 * Whether `handler` is undici ≤ 7's WrapHandler: a handler written to the callback interface
 * (`onConnect`, `onHeaders`…: what `undici.request`, `stream` and `fetch` make), wrapped by
 * `compose` for the interceptors. Its callbacks are called directly, and the attempts under it
 * speak the same interface to the dispatcher, so no headers are converted on the way (each
 * conversion costs undici a Buffer per header and a parse). Undici 8 has no such handler (it
 * speaks the controller interface only), and neither does any other handler: both get the
 * controller interface.
 */
function speaksCallbacks(handler: Handler): boolean {
  const ctor = (handler as { constructor?: unknown }).constructor
  if (ctor === wrapHandlerClass) return true
  const h = handler as Record<string, unknown>
  const yes =
    typeof ctor === 'function' && ctor.name === 'WrapHandler' &&
    typeof h.onConnect === 'function' && typeof h.onHeaders === 'function' && typeof h.onData === 'function' && typeof h.onComplete === 'function' && typeof h.onError === 'function'
  if (yes) wrapHandlerClass = ctor
  return yes
}
let wrapHandlerClass: unknown

const noop = () => {}

const asError = (err: unknown): Error => (err instanceof Error ? err : new Error(String(err)))

/**
 * One request of the caller's. It is the one controller the caller's handler sees (reaching
 * whichever attempt is under way behind it) and the one place that handler is called from: one
 * start, then exactly one end or error — an abort included, whatever is under way.
 */
class Call implements Controller {
  readonly handler: Handler
  readonly callbacks: boolean
  /** The attempt under way, or the last one. */
  attempt: Attempt | undefined
  #reason: Error | null = null
  #paused = false
  #done = false
  // made on first use: most requests never abort, and an AbortController per request costs
  #aborts: AbortController | undefined

  constructor(handler: Handler) {
    this.handler = handler
    this.callbacks = speaksCallbacks(handler)
  }

  begin(): void {
    if (this.callbacks) (this.handler.onConnect as (abort: (reason?: Error) => void, context: object) => void)((reason) => this.abort(reason ?? new DOMException('This operation was aborted', 'AbortError')), {})
    else this.handler.onRequestStart?.(this, {})
  }

  /** Dispatches one attempt. */
  send(dispatch: Dispatcher.Dispatch, opts: Dispatcher.DispatchOptions, settle: Settle): void {
    if (this.#done) return settle(this.#reason ?? new Error('the request is over')) // (aborted: nothing more goes out)
    const attempt = this.callbacks ? new CallbackAttempt(this, settle) : new ControllerAttempt(this, settle)
    this.attempt = attempt
    try {
      dispatch(opts, attempt as unknown as Handler)
    } catch (err) {
      attempt.failed(asError(err))
    }
  }

  // The caller's handler: response start, data, end, error (the first end or error is the last call).
  /** Whether to go on reading. */
  start(res: Attempt, statusCode: number, headers: unknown, statusText: string): boolean {
    if (this.#done) return false
    if (this.callbacks) return this.handler.onHeaders!(statusCode, headers as Buffer[], res.resumer, statusText) !== false
    this.handler.onResponseStart?.(this, statusCode, headers as IncomingHttpHeaders, statusText)
    return !this.#paused
  }
  data(chunk: Buffer): boolean {
    if (this.#done) return false
    if (this.callbacks) return this.handler.onData!(chunk) !== false
    this.handler.onResponseData?.(this, chunk)
    return !this.#paused
  }
  end(trailers: unknown): void {
    if (this.#done) return
    // (done once the handler returns: one that throws — undici's retry handler does, to retry —
    // is then told the error undici reports for it, as undici itself would)
    if (this.callbacks) this.handler.onComplete!(trailers as string[] | null)
    else this.handler.onResponseEnd?.(this, trailers as IncomingHttpHeaders)
    this.#done = true
  }
  fail(err: unknown): void {
    if (this.#done) return
    this.#done = true
    const error = asError(err)
    // a response nobody will read (held for the engine, which gave up) lets its connection go
    if (this.attempt && !this.attempt.ended) this.attempt.abort(error)
    if (this.callbacks) this.handler.onError!(error)
    else this.handler.onResponseError?.(this, error)
  }

  // The controller the caller's handler gets.
  get signal(): AbortSignal {
    this.#aborts ??= new AbortController()
    if (this.#reason && !this.#aborts.signal.aborted) this.#aborts.abort(this.#reason)
    return this.#aborts.signal
  }
  get aborted(): boolean {
    return this.#reason !== null
  }
  get paused(): boolean {
    return this.#paused
  }
  get reason(): Error | null {
    return this.#reason
  }
  abort(reason: Error): void {
    if (this.#reason) return
    this.#reason = reason
    this.#aborts?.abort(reason)
    // the caller hears now, whatever is under way (a request, a token request, a step-up)
    this.fail(reason)
  }
  pause(): void {
    this.#paused = true
    this.attempt?.pauseWire()
  }
  resume(): void {
    this.#paused = false
    this.attempt?.resumeWire()
  }
}

type HeldEvent = { kind: 'data'; chunk: Buffer } | { kind: 'end'; trailers: unknown } | { kind: 'error'; error: Error }

/**
 * One dispatch of the request (the first, or a retry the engine decided). A response that may be a
 * challenge is held (paused) until the engine decides — deliver it to the caller, or discard it —
 * and any other streams straight to the caller. The two subclasses are the two interfaces undici
 * calls a handler through.
 */
abstract class Attempt implements EngineExchange {
  status = 0
  /** Its response ended (completed, failed, or cut off). */
  ended = false
  readonly call: Call
  #settle: Settle | undefined
  #mode: 'hold' | 'deliver' | 'discard' = 'hold'
  #held: HeldEvent[] | undefined
  #statusText = ''
  #finished: (() => void) | undefined
  #discarded = 0
  #cutOff = false
  protected rawHeaders: unknown
  /** Why it was aborted before its request started (the start aborts it). */
  protected aborting: Error | undefined

  constructor(call: Call, settle: Settle) {
    this.call = call
    this.#settle = settle
  }

  abstract abort(reason: Error): void
  abstract pauseWire(): void
  abstract resumeWire(): void
  /** What a callback-speaking caller calls to resume this attempt's response. */
  abstract get resumer(): () => void
  /** One response header (lower-case name; repeated fields joined with `, `). */
  abstract get(name: string): string | null
  get headers(): HeadersView {
    return this
  }

  /** The response started; whether to go on reading. */
  protected started(statusCode: number, headers: unknown, statusText: string): boolean {
    const settle = this.#settle
    if (!settle) return false // aborted before it started
    this.#settle = undefined
    this.status = statusCode
    this.rawHeaders = headers
    this.#statusText = statusText
    if (isChallengeable(statusCode)) {
      // held (paused: this returns false) until the engine decides; it hears once the pause holds
      queueMicrotask(() => settle(null, this))
      return false
    }
    this.#mode = 'deliver'
    const go = this.call.start(this, statusCode, headers, statusText)
    settle(null, this)
    return go
  }
  protected received(chunk: Buffer): boolean {
    if (this.#mode === 'deliver') return this.call.data(chunk)
    if (this.#mode === 'hold') (this.#held ??= []).push({ kind: 'data', chunk })
    else if ((this.#discarded += chunk.length) > DISCARD_BYTES) this.#cut()
    return this.#mode !== 'hold'
  }
  protected completed(trailers: unknown): void {
    if (this.#cutOff || this.ended) return
    if (this.#mode === 'deliver') {
      this.call.end(trailers) // (if the caller's handler throws, undici reports the error to failed(), which passes it on)
      this.ended = true
      return
    }
    this.ended = true
    if (this.#mode === 'hold') (this.#held ??= []).push({ kind: 'end', trailers })
    this.#finished?.()
  }
  failed(error: Error): void {
    if (this.#cutOff || this.ended) return
    this.ended = true
    const settle = this.#settle
    this.#settle = undefined
    if (settle) return settle(error) // before the response started: the engine (or the fast path) decides
    if (this.#mode === 'deliver') this.call.fail(error)
    else if (this.#mode === 'hold') (this.#held ??= []).push({ kind: 'error', error })
    this.#finished?.()
  }

  /** Stops reading a discarded body that is too large or too slow: the connection goes, the wait ends. */
  #cut(): void {
    if (this.ended || this.#cutOff) return
    this.#cutOff = true
    this.abort(new Error('a discarded response body was too large or too slow'))
    this.#finished?.()
  }

  discard(): Promise<void> {
    this.#mode = 'discard'
    for (const event of this.#held ?? []) if (event.kind === 'data') this.#discarded += event.chunk.length
    this.#held = undefined
    if (this.ended || this.#cutOff) return Promise.resolve()
    return new Promise<void>((done) => {
      // bounded like the fetch path's: 64 KiB, and a few seconds
      const timer = setTimeout(() => this.#cut(), DISCARD_MS)
      timer.unref()
      this.#finished = () => {
        clearTimeout(timer)
        done()
      }
      if (!this.call.aborted) this.resumeWire()
    })
  }

  abandon(): void {
    if (!this.ended) this.abort(new Error('the response was abandoned'))
  }

  /** Hands the response to the caller (held events first). */
  deliver(): void {
    if (this.#mode === 'deliver') return // already streaming to the caller
    this.#mode = 'deliver'
    let go = this.call.start(this, this.status, this.rawHeaders, this.#statusText)
    for (const event of this.#held?.splice(0) ?? []) {
      if (event.kind === 'data') go = this.call.data(event.chunk) && go
      else if (event.kind === 'end') this.call.end(event.trailers)
      else this.call.fail(event.error)
    }
    if (go && !this.ended) this.resumeWire()
  }
}

/** An attempt under a callback-speaking caller (undici ≤ 7): `onConnect`, `onHeaders`, `onData`… with raw headers. */
class CallbackAttempt extends Attempt {
  #abort: ((reason?: Error) => void) | undefined
  #resume: (() => void) | undefined
  // (undici's own resume function for this response: the caller resumes it directly)
  get resumer(): () => void {
    return this.#resume ?? noop
  }

  onConnect(abort: (reason?: Error) => void): void {
    this.#abort = abort
    const reason = this.aborting ?? this.call.reason
    if (reason) abort(reason)
  }
  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void, statusText: string): boolean {
    if (statusCode < 200) return true // 1xx: informational
    this.#resume = resume
    return this.started(statusCode, rawHeaders, statusText)
  }
  onData(chunk: Buffer): boolean {
    return this.received(chunk)
  }
  onComplete(trailers: string[] | null): void {
    this.completed(trailers)
  }
  onError(error: Error): void {
    this.failed(error)
  }

  abort(reason: Error): void {
    if (this.#abort) return this.#abort(reason)
    // not started yet: it ends now, and onConnect aborts it when it comes
    this.aborting = reason
    this.failed(reason)
  }
  pauseWire(): void {
    // (a callback-speaking caller pauses through its return values, which this attempt passes on)
  }
  resumeWire(): void {
    this.#resume?.()
  }
  get(name: string): string | null {
    const raw = this.rawHeaders as Buffer[] | undefined
    if (!raw) return null
    let out: string | null = null
    for (let i = 0; i + 1 < raw.length; i += 2) {
      const key = raw[i]!
      if (key.length !== name.length || key.toString('latin1').toLowerCase() !== name) continue
      const value = raw[i + 1]!.toString('latin1')
      out = out === null ? value : `${out}, ${value}`
    }
    return out
  }
}

/** An attempt under a controller-speaking caller: `onRequestStart`, `onResponseStart`… with a headers object. */
class ControllerAttempt extends Attempt implements Handler {
  #controller: Controller | undefined
  get resumer(): () => void {
    return () => this.resumeWire()
  }

  onRequestStart(controller: Controller): void {
    this.#controller = controller
    const reason = this.aborting ?? this.call.reason
    if (reason) controller.abort(reason)
    else if (this.call.paused) controller.pause()
  }
  onResponseStart(controller: Controller, statusCode: number, headers: IncomingHttpHeaders, statusMessage?: string): void {
    if (statusCode < 200) return // 1xx: informational
    if (!this.started(statusCode, headers, statusMessage ?? '')) controller.pause()
  }
  onResponseData(controller: Controller, chunk: Buffer): void {
    if (!this.received(chunk)) controller.pause()
  }
  onResponseEnd(_controller: Controller, trailers: IncomingHttpHeaders): void {
    this.completed(trailers)
  }
  onResponseError(_controller: Controller, error: Error): void {
    this.failed(error)
  }

  abort(reason: Error): void {
    if (this.#controller) return this.#controller.abort(reason)
    this.aborting = reason
    this.failed(reason)
  }
  pauseWire(): void {
    this.#controller?.pause()
  }
  resumeWire(): void {
    this.#controller?.resume()
  }
  get(name: string): string | null {
    const v = (this.rawHeaders as IncomingHttpHeaders | undefined)?.[name]
    return v === undefined ? null : Array.isArray(v) ? v.join(', ') : String(v)
  }
}

/** The longest a discarded (answered) response body is read, in bytes and milliseconds. */
const DISCARD_BYTES = 65_536
const DISCARD_MS = 5_000

/**
 * The caller's headers as a plain object, minus any `Authorization` / `DPoP` (Bound sets those) —
 * and, for a hop that crossed origins, minus `Cookie` and `Proxy-Authorization` too.
 */
function withoutCredentials(headers: Dispatcher.DispatchOptions['headers'], crossed: boolean): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {}
  const add = (name: string, value: unknown) => {
    const key = name.toLowerCase()
    if (key === 'authorization' || key === 'dpop' || value === undefined || value === null) return
    if (crossed && (key === 'cookie' || key === 'proxy-authorization')) return
    out[key] = Array.isArray(value) ? value.map(String) : String(value)
  }
  if (!headers) return out
  if (Array.isArray(headers)) {
    if (headers.length > 0 && Array.isArray(headers[0])) for (const [k, v] of headers as unknown as [string, string][]) add(k, v)
    else for (let i = 0; i + 1 < headers.length; i += 2) add(String(headers[i]), headers[i + 1])
  } else if (typeof (headers as Iterable<unknown>)[Symbol.iterator] === 'function') {
    for (const [k, v] of headers as Iterable<[string, string]>) add(k, v)
  } else {
    for (const [k, v] of Object.entries(headers as Record<string, unknown>)) add(k, v)
  }
  return out
}
