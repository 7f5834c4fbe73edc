import { channel } from 'node:diagnostics_channel'

/**
 * Bound's diagnostics channels (node:diagnostics_channel): free when nobody listens. Tests and
 * tools subscribe to see everything Bound reports — events (`bound:event`), log lines
 * (`bound:log`) and every error it creates (`bound:error`) — e.g. to scan them for secrets.
 *
 * @example
 * ```ts
 * import { subscribe } from 'node:diagnostics_channel'
 * subscribe('bound:event', (message) => console.log(message))
 * ```
 */
export const DIAGNOSTICS_CHANNELS = Object.freeze({ event: 'bound:event', log: 'bound:log', error: 'bound:error' })

const event = channel(DIAGNOSTICS_CHANNELS.event)
const log = channel(DIAGNOSTICS_CHANNELS.log)
const error = channel(DIAGNOSTICS_CHANNELS.error)

/**
 * Publishes a session event on `bound:event` (when anyone listens).
 *
 * @example
 * ```ts
 * publishEvent('token.acquired', { label: 'sha256:F847sOIv', cacheKey })
 * ```
 */
export function publishEvent(type: string, payload: object): void {
  if (event.hasSubscribers) event.publish({ type, payload })
}

/**
 * Publishes a log line on `bound:log` (when anyone listens).
 *
 * @example
 * ```ts
 * publishLog('warn', 'backing off the authorization server', { until })
 * ```
 */
export function publishLog(level: string, message: string, fields: object): void {
  if (log.hasSubscribers) log.publish({ level, message, fields })
}

/**
 * Publishes an error Bound created on `bound:error` (when anyone listens). `BoundError` does it
 * for every instance, a microtask after construction.
 *
 * @example
 * ```ts
 * publishError(new BoundError('ERR_NETWORK', 'Could not reach the token endpoint'))
 * ```
 */
export function publishError(err: Error): void {
  if (error.hasSubscribers) error.publish(err)
}
