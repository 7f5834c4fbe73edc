import { publishLog } from '@bound/core'
import type { Session, SessionEvents } from './session.js'

/**
 * A pino-compatible logger (`logger.info(fields, message)`); any subset of the levels. Bound is
 * silent without one. Fields never carry tokens, proofs, secrets or keys — only redacted labels.
 *
 * @example
 * ```ts
 * const logger: Logger = { warn: (fields, message) => console.warn(message, fields) } // warnings only
 * createSession({ …, telemetry: { logger } })
 * ```
 */
export interface Logger {
  /** Debug lines (nonce challenges, token waits, challenges handled). */
  debug?(fields: object, message: string): void
  /** Info lines (tokens acquired, invalidated, revoked; rotations; step-ups). */
  info?(fields: object, message: string): void
  /** Warnings (failed token requests and refreshes, back-off). */
  warn?(fields: object, message: string): void
  /** Errors. */
  error?(fields: object, message: string): void
}

/**
 * Telemetry options of a session.
 *
 * @example
 * ```ts
 * import pino from 'pino'
 * createSession({ …, telemetry: { logger: pino(), openTelemetry: false } })
 * ```
 */
export interface TelemetryOptions {
  /** Where log lines go. Default: nowhere. */
  logger?: Logger
  /**
   * OpenTelemetry: `'auto'` (default) uses `@opentelemetry/api` when it is installed (an optional
   * peer dependency: no SDK is needed, and without one it is a no-op); `false` turns it off.
   */
  openTelemetry?: 'auto' | false
}

type Level = 'debug' | 'info' | 'warn' | 'error'
const LINES: { [K in keyof SessionEvents]?: [Level, string] } = {
  'token.acquired': ['info', 'token acquired'],
  'token.failed': ['warn', 'token request failed'],
  'token.refresh_failed': ['warn', 'background refresh failed; the held token keeps serving'],
  'token.backoff': ['warn', 'backing off the authorization server'],
  'token.invalidated': ['info', 'token dropped after invalid_token'],
  'token.revoked': ['info', 'token revoked'],
  'token.wait': ['debug', 'waited for a token'],
  'nonce.challenge': ['debug', 'DPoP nonce challenge answered'],
  'challenge.invalid_token': ['info', 'invalid_token: earning a new token'],
  'challenge.handled': ['debug', 'challenge handled'],
  'challenge.step_up': ['info', 'step-up'],
  'origin.unlisted': ['warn', 'a request went without credentials to an origin that is not in origins (a typo?)'],
  'key.rotated': ['info', 'DPoP key rotated'],
  'certificate.rotated': ['info', 'client certificate rotated'],
  'token.shared': ['debug', 'token taken from the shared store (another process earned it)'],
  'store.degraded': ['warn', 'token store unavailable: working alone (own cache and single-flight) until it answers again'],
  'store.recovered': ['info', 'token store answers again: fleet coordination resumed'],
  'store.wait_exceeded': ['warn', 'waited on the token store longer than its bound: earned here'],
}

interface OtelApi {
  metrics: { getMeter(name: string, version?: string): OtelMeter }
  trace: { getTracer(name: string, version?: string): OtelTracer }
  SpanStatusCode: { ERROR: number }
}
interface OtelMeter {
  createCounter(name: string, options?: { description?: string; unit?: string }): { add(value: number, attributes?: Record<string, string | number>): void }
  createHistogram(name: string, options?: { description?: string; unit?: string }): { record(value: number, attributes?: Record<string, string | number>): void }
}
interface OtelTracer {
  startSpan(name: string, options?: { startTime?: number; attributes?: Record<string, string | number> }): { setStatus(s: { code: number; message?: string }): void; end(endTime?: number): void }
}

/**
 * Sends a session's events to its logger and, when `@opentelemetry/api` is installed, to
 * OpenTelemetry metrics and spans. `createSession` calls it; it is exported for sessions made
 * elsewhere.
 *
 * Metrics: `bound.token.requests` (counter; `grant`, `outcome`), `bound.token.refresh_failures`
 * (counter), `bound.dpop.nonce_retries` (counter; `at`), `bound.challenges` (counter; `kind`,
 * `outcome`), `bound.step_ups` (counter; `outcome`), `bound.token.wait` (histogram, ms). Spans:
 * `bound.token.acquire` per token request.
 *
 * @example
 * ```ts
 * instrumentSession(session, { logger: pino() })
 * ```
 */
export function instrumentSession(session: Pick<Session, 'events'>, options: TelemetryOptions = {}): void {
  const { logger } = options
  for (const [type, [level, message]] of Object.entries(LINES) as [keyof SessionEvents, [Level, string]][]) {
    session.events.on(type, (event) => {
      publishLog(level, message, event)
      logger?.[level]?.({ event: type, ...event }, message)
    })
  }
  if (options.openTelemetry === false) return
  loadOtel().then((api) => {
    if (api) wireOtel(session, api)
  }, () => {})
}

let otel: Promise<OtelApi | undefined> | undefined
function loadOtel(): Promise<OtelApi | undefined> {
  // an optional peer: absent → no-op (the import is attempted once per process)
  otel ??= import('@opentelemetry/api' as string).then((m: { default?: OtelApi } & OtelApi) => (m.metrics ? m : m.default), () => undefined)
  return otel
}

function wireOtel(session: Pick<Session, 'events'>, api: OtelApi): void {
  const meter = api.metrics.getMeter('@bound/oauth', '0.1.0')
  const tracer = api.trace.getTracer('@bound/oauth', '0.1.0')
  const requests = meter.createCounter('bound.token.requests', { description: 'Token requests by grant and outcome' })
  const refreshFailures = meter.createCounter('bound.token.refresh_failures', { description: 'Background refreshes that failed while a valid token kept serving' })
  const nonceRetries = meter.createCounter('bound.dpop.nonce_retries', { description: 'Requests retried after a DPoP nonce challenge' })
  const challenges = meter.createCounter('bound.challenges', { description: 'Server challenges by kind and outcome' })
  const stepUps = meter.createCounter('bound.step_ups', { description: 'Step-up challenges by outcome' })
  const wait = meter.createHistogram('bound.token.wait', { description: 'Time callers waited for a token', unit: 'ms' })
  session.events.on('token.acquired', (e) => {
    requests.add(1, { grant: e.grant, outcome: 'success', reason: e.reason })
    const end = Date.now()
    tracer.startSpan('bound.token.acquire', { startTime: end - e.waitMs, attributes: { 'bound.grant': e.grant, 'bound.token_type': e.type, 'bound.attempts': e.attempts, 'bound.reason': e.reason } }).end(end)
  })
  session.events.on('token.failed', (e) => {
    requests.add(1, { grant: 'unknown', outcome: e.code })
    const span = tracer.startSpan('bound.token.acquire', { attributes: { 'bound.error_code': e.code } })
    span.setStatus({ code: api.SpanStatusCode.ERROR, message: e.code })
    span.end()
  })
  session.events.on('token.refresh_failed', (e) => refreshFailures.add(1, { code: e.code }))
  session.events.on('nonce.challenge', (e) => nonceRetries.add(1, { at: e.at }))
  session.events.on('challenge.handled', (e) => challenges.add(1, { kind: e.kind, outcome: e.outcome }))
  session.events.on('challenge.step_up', (e) => stepUps.add(1, { outcome: e.outcome }))
  session.events.on('token.wait', (e) => wait.record(e.ms))
}
