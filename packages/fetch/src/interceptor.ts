import type { IncomingHttpHeaders } from 'node:http'
import { BoundError } from '@bound/core'
import type { Dispatcher } from 'undici'
import { createChallengeEngine, type BoundOptions, type EngineExchange } from './engine.js'
import type { HeadersView } from './exchange.js'

type Controller = Dispatcher.DispatchController
type Handler = Dispatcher.DispatchHandler

/** A request that never reaches the network: the caller's handler gets `err`. */
function refuse(handler: Handler, err: Error): true {
  const outer = new OuterController()
  handler.onRequestStart?.(outer, {})
  handler.onResponseError?.(outer, err)
  return true
}

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
    // htu is the origin undici connects to plus the path, never what the path alone might name
    const url = new URL(`${origin}${opts.path}`)
    const method = opts.method
    const body = opts.body
    const replayable = body === null || body === undefined || typeof body === 'string' || body instanceof Uint8Array
    // the certificate only with credentials, on the session's own connection
    const send: Dispatcher.Dispatch = session.transport.hasClientCertificate ? (o, h) => session.transport.dispatch(o, h) : dispatch
    const outer = new OuterController()
    handler.onRequestStart?.(outer, {})
    engine
      // (no signal for the engine: an abort reaches the request under way through the controller;
      // a wait for a token or a step-up completes, then the aborted attempt ends at once)
      .run(url, { method, replayable, signal: undefined }, async (token, retry) => {
        const headers = withoutCredentials(opts.headers, false)
        if (token) {
          const pending = engine.credentials(token, method, url, retry.nonce)
          Object.assign(headers, pending instanceof Promise ? await pending : pending)
        }
        // maxRedirections 0: a redirect interceptor inside this one cannot see origins change, so it does not follow
        return attempt(send, { ...opts, headers, maxRedirections: 0 } as Dispatcher.DispatchOptions, outer, handler)
      })
      .then(
        ({ res }) => res.deliver(handler),
        (err: unknown) => {
          if (!outer.aborted) handler.onResponseError?.(outer, err instanceof Error ? err : new Error(String(err)))
        },
      )
    return true
  }
}

/** The controller the caller's handler gets: it reaches whichever attempt is under way. */
class OuterController implements Controller {
  #inner: Controller | undefined
  // made on first use: most requests never abort, and an AbortController per request costs
  #aborts: AbortController | undefined
  #reason: Error | null = null
  #paused = false
  get signal(): AbortSignal {
    this.#aborts ??= new AbortController()
    if (this.#reason && !this.#aborts.signal.aborted) this.#aborts.abort(this.#reason)
    return this.#aborts.signal
  }
  set inner(controller: Controller) {
    this.#inner = controller
    if (this.#reason) controller.abort(this.#reason)
    else if (this.#paused) controller.pause()
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
    this.#inner?.abort(reason)
  }
  pause(): void {
    this.#paused = true
    this.#inner?.pause()
  }
  resume(): void {
    this.#paused = false
    this.#inner?.resume()
  }
}

interface PendingExchange extends EngineExchange {
  deliver(handler: Handler): void
}

/**
 * Dispatches once and resolves at the response's start with an exchange that holds the response
 * (paused) until the engine decides: deliver it to the caller's handler, or discard it.
 */
function attempt(dispatch: Dispatcher.Dispatch, opts: Dispatcher.DispatchOptions, outer: OuterController, caller: Handler): Promise<PendingExchange> {
  return new Promise<PendingExchange>((resolve, reject) => {
    let controller: Controller | undefined
    let started = false
    let mode: 'hold' | 'deliver' | 'discard' = 'hold'
    let target: Handler | undefined
    const held: ({ kind: 'data'; chunk: Buffer } | { kind: 'end'; trailers: IncomingHttpHeaders } | { kind: 'error'; error: Error })[] = []
    let finished: (() => void) | undefined
    let ended = false
    let discarded = 0
    let cutOff = false
    /** Stops reading a discarded body that is too large or too slow: the connection goes, the wait ends. */
    const cut = () => {
      if (ended || cutOff) return
      cutOff = true
      controller?.abort(new Error('a discarded response body was too large or too slow'))
      finished?.()
    }
    const inner: Handler = {
      onRequestStart(c) {
        controller = c
        outer.inner = c
      },
      onResponseStart(c, statusCode, headers, statusMessage) {
        if (statusCode < 200) return // 1xx: informational
        started = true
        // Only 400/401/403 can carry a challenge the engine answers: anything else streams to the caller at once.
        const challengeable = statusCode === 401 || statusCode === 403 || statusCode === 400
        if (!challengeable) {
          mode = 'deliver'
          target = caller
          caller.onResponseStart?.(outer, statusCode, headers, statusMessage)
        } else c.pause() // hold the body until the engine decides
        const view: HeadersView = {
          get(name) {
            const v = headers[name.toLowerCase()]
            return v === undefined ? null : Array.isArray(v) ? v.join(', ') : String(v)
          },
        }
        resolve({
          status: statusCode,
          headers: view,
          discard() {
            mode = 'discard'
            for (const event of held) if (event.kind === 'data') discarded += event.chunk.length
            held.length = 0
            if (ended) return Promise.resolve()
            return new Promise<void>((done) => {
              // bounded like the fetch path's: 64 KiB, and a few seconds
              const timer = setTimeout(cut, DISCARD_MS)
              timer.unref()
              finished = () => {
                clearTimeout(timer)
                done()
              }
              if (controller && !outer.aborted) controller.resume()
            })
          },
          deliver(handler) {
            if (mode === 'deliver') return // already streaming to the caller
            mode = 'deliver'
            target = handler
            handler.onResponseStart?.(outer, statusCode, headers, statusMessage)
            for (const event of held.splice(0)) {
              if (event.kind === 'data') handler.onResponseData?.(outer, event.chunk)
              else if (event.kind === 'end') handler.onResponseEnd?.(outer, event.trailers)
              else handler.onResponseError?.(outer, event.error)
            }
            if (!outer.paused) controller?.resume()
          },
        })
      },
      onResponseData(_c, chunk) {
        if (mode === 'deliver') target!.onResponseData?.(outer, chunk)
        else if (mode === 'hold') held.push({ kind: 'data', chunk })
        else if ((discarded += chunk.length) > DISCARD_BYTES) cut()
      },
      onResponseEnd(_c, trailers) {
        if (cutOff) return
        ended = true
        if (mode === 'deliver') target!.onResponseEnd?.(outer, trailers)
        else if (mode === 'hold') held.push({ kind: 'end', trailers })
        finished?.()
      },
      onResponseError(_c, error) {
        if (!started) return reject(error)
        if (cutOff) return
        ended = true
        if (mode === 'deliver') target!.onResponseError?.(outer, error)
        else if (mode === 'hold') held.push({ kind: 'error', error })
        finished?.()
      },
    }
    try {
      dispatch(opts, inner)
    } catch (err) {
      reject(err)
    }
  })
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
