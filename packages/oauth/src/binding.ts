import { BoundError, type Clock } from '@bound/core'
import type { Dpop } from '@bound/dpop'
import type { Transport } from '@bound/http'
import type { BoundToken } from './token.js'

/** A posture answer. */
export interface PostureAnswer {
  healthy: boolean
  reason?: string
  claims?: Record<string, unknown>
}

/** What the binding needs from its session. */
export interface BindingOptions {
  dpop: Dpop | undefined
  transport: Transport
  clock: Clock
  context?: { workloadId?: string | (() => string); fingerprint?: () => string } | undefined
  posture?: (() => Promise<PostureAnswer> | PostureAnswer) | undefined
  /** Seconds a posture answer is reused. */
  postureIntervalMs: number
  /** A context element changed: every token of the old context must go. */
  onContextChanged(element: 'workload-id' | 'fingerprint'): void
  /** The posture check changed its answer. */
  onPostureChanged(healthy: boolean, reason: string | undefined): void
}

/**
 * What makes a session's tokens unusable by anyone else, and the context they were issued under:
 * the DPoP key, the client certificate, the workload identity and fingerprint, the posture. It
 * knows nothing of grants or the AS.
 */
export interface Binding {
  /** Part of every cache key: the key thumbprint and the context (read on every call). */
  key(): string
  /** Whether `token` may still be sent: its DPoP key and certificate are the current ones. */
  isCurrent(token: BoundToken): boolean
  /** The current certificate's `x5t#S256`, when there is one. */
  x5t(): string | undefined
  /**
   * Resolves while the posture is healthy; rejects with `ERR_POSTURE_UNHEALTHY` otherwise.
   * `undefined` when no posture check is configured (the hot path makes no promise).
   */
  checkPosture(): Promise<void> | undefined
}

/** Creates the {@link Binding} of a session. */
export function createBinding(options: BindingOptions): Binding {
  const { dpop, transport, clock } = options
  const x5t = () => transport.clientCertificate?.current().x5t

  // The context element values tokens were last issued under (key and certificate have their own events).
  let last: { workloadId: string | undefined; fingerprint: string | undefined } | undefined
  let lastKey = ''
  const contextKey = (): string => {
    if (!options.context && !transport.clientCertificate) return ''
    const id = options.context?.workloadId
    const now = {
      workloadId: typeof id === 'function' ? id() : (id ?? transport.clientCertificate?.current().spiffeId),
      fingerprint: options.context?.fingerprint?.(),
    }
    if (last && last.workloadId === now.workloadId && last.fingerprint === now.fingerprint) return lastKey
    if (last) options.onContextChanged(now.workloadId !== last.workloadId ? 'workload-id' : 'fingerprint')
    last = now
    lastKey = JSON.stringify([now.workloadId ?? null, now.fingerprint ?? null])
    return lastKey
  }

  // Posture: cached answers, re-asked at most every postureIntervalMs, one check at a time.
  let posture: { healthy: boolean; reason: string | undefined; at: number } | undefined
  let flight: Promise<void> | undefined
  const ask = async () => {
    let answer: PostureAnswer
    try {
      answer = await options.posture!()
    } catch (err) {
      answer = { healthy: false, reason: `the posture check failed (${err instanceof Error ? err.message.slice(0, 200) : 'error'})` }
    }
    const changed = posture === undefined || posture.healthy !== (answer.healthy === true)
    posture = { healthy: answer.healthy === true, reason: answer.reason, at: clock.now() }
    if (changed) options.onPostureChanged(posture.healthy, posture.reason)
  }
  const checkPosture = async () => {
    if (!posture || clock.now() - posture.at >= options.postureIntervalMs) {
      flight ??= ask().finally(() => {
        flight = undefined
      })
      await flight
    }
    if (posture && !posture.healthy) {
      throw new BoundError('ERR_POSTURE_UNHEALTHY', `The workload's posture check says unhealthy${posture.reason ? ` (${posture.reason.slice(0, 200)})` : ''}; no credentials are sent until it is healthy again`)
    }
  }

  return {
    key: () => `${dpop?.jkt ?? ''}|${contextKey()}`,
    isCurrent: (token) => (token.type !== 'DPoP' || token.binding.jkt === dpop?.jkt) && (token.binding.x5t === undefined || token.binding.x5t === x5t()),
    x5t,
    checkPosture: options.posture ? checkPosture : () => undefined,
  }
}
