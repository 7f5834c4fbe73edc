import type { IncomingHttpHeaders } from 'node:http'
import { BoundError } from '@bound/core'
import type { Dispatcher } from 'undici'
import { createChallengeEngine, type BoundOptions, type EngineExchange } from './engine.js'
import type { HeadersView } from './exchange.js'

type Controller = Dispatcher.DispatchController
type Handler = Dispatcher.DispatchHandler

/**
 * An undici interceptor that gives `undici.request`, `Client`, `Pool` and `Agent` users the same
 * bound session as the fetch wrapper — the same engine answers the same challenges. Compose it
 * inside a retry interceptor so every retry gets a fresh proof:
 *
 * @example
 * ```ts
 * import { Agent, interceptors, request } from 'undici'
 * import { boundInterceptor } from '@bound/fetch'
 * const dispatcher = new Agent().compose(boundInterceptor({ session, origins: ['https://api.example.com'] }), interceptors.retry())
 * const { statusCode, body } = await request('https://api.example.com/orders', { dispatcher })
 * ```
 *
 * The interceptor adds the bound credentials; the TLS channel is the dispatcher's (for mTLS-bound
 * sessions, compose it onto `session.transport.dispatcher`).
 */
export function boundInterceptor(options: BoundOptions): Dispatcher.DispatcherComposeInterceptor {
  const engine = createChallengeEngine(options)
  return (dispatch) => (opts, handler: Handler) => {
    let url: URL
    try {
      url = new URL(opts.path, opts.origin as string | URL)
    } catch {
      return dispatch(opts, handler)
    }
    if (!engine.isCredentialOrigin(url.origin)) {
      if (engine.otherOrigins !== 'error') return dispatch(opts, handler)
      const outer = new OuterController()
      handler.onRequestStart?.(outer, {})
      handler.onResponseError?.(outer, new BoundError('ERR_ORIGIN_NOT_ALLOWED', `${url.origin} is not one of the origins this bound dispatcher sends credentials to`))
      return true
    }
    const method = opts.method
    const body = opts.body
    const replayable = body === null || body === undefined || typeof body === 'string' || body instanceof Uint8Array
    const outer = new OuterController()
    handler.onRequestStart?.(outer, {})
    engine
      // (no signal for the engine: an abort reaches the request under way through the controller;
      // a wait for a token or a step-up completes, then the aborted attempt ends at once)
      .run(url, { method, replayable, signal: undefined }, async (token, retry) => {
        const headers = withoutCredentials(opts.headers)
        if (token) Object.assign(headers, await engine.credentials(token, method, url, retry.nonce))
        return attempt(dispatch, { ...opts, headers }, outer, handler)
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
            held.length = 0
            if (ended) return Promise.resolve()
            return new Promise<void>((done) => {
              finished = done
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
      },
      onResponseEnd(_c, trailers) {
        ended = true
        if (mode === 'deliver') target!.onResponseEnd?.(outer, trailers)
        else if (mode === 'hold') held.push({ kind: 'end', trailers })
        finished?.()
      },
      onResponseError(_c, error) {
        ended = true
        if (!started) return reject(error)
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

/** The caller's headers as a plain object, minus any `Authorization` / `DPoP` (Bound sets those). */
function withoutCredentials(headers: Dispatcher.DispatchOptions['headers']): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {}
  const add = (name: string, value: unknown) => {
    const key = name.toLowerCase()
    if (key === 'authorization' || key === 'dpop' || value === undefined || value === null) return
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
