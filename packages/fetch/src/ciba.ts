import { TokenEndpointError } from '@bound/core'
import { ciba, type Session } from '@bound/oauth'
import { durationMs, functionRule, optionsChecker, z } from '@bound/core/internal'
import type { StepUpChallenge, StepUpResult } from './engine.js'

/** Options of {@link cibaStepUp}. */
export interface CibaStepUpOptions {
  /** The user whose approval is asked (`login_hint`), or a function of the challenge. */
  loginHint: string | ((challenge: StepUpChallenge) => string)
  /** Text shown on the user's device (`binding_message`; keep it short: ASs often allow 20 characters). */
  bindingMessage?: string | ((challenge: StepUpChallenge) => string | undefined)
  /** Scope of the CIBA request. Default `openid`. */
  scope?: string
  /** Longest wait for the user, in milliseconds. Default: the request's `expires_in`, at most 300,000 (5 minutes). */
  maxWaitMs?: number
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    const timer = setTimeout(resolve, ms)
    signal?.addEventListener('abort', () => {
      clearTimeout(timer)
      reject(signal.reason)
    }, { once: true })
  })

/**
 * A ready-made `onStepUp` for OpenID CIBA (Client-Initiated Backchannel Authentication, poll
 * mode): the agent asks the AS to get a named user's approval (`login_hint`, `binding_message`,
 * the challenge's `acr_values`), polls with back-off honouring `interval` and `slow_down`, and
 * hands the approved token to the retry. A denial (or expiry) declines the step-up: the caller gets
 * the response with an `ERR_STEP_UP_REQUIRED` challenge, and nothing loops.
 *
 * @example
 * ```ts
 * const fetch = createBoundFetch({ session, origins: [api], onStepUp: cibaStepUp(session, { loginHint: 'alice', bindingMessage: 'refund 42' }) })
 * ```
 */
const checkCiba = optionsChecker('cibaStepUp', {
  loginHint: z.union([z.string().min(1), functionRule()], { error: 'must be a user hint or a function of the challenge' }),
  bindingMessage: z.union([z.string(), functionRule()]).optional(),
  scope: z.string().min(1).optional(),
  maxWaitMs: durationMs(1_000, 3_600_000).optional(),
})

export function cibaStepUp(session: Session, options: CibaStepUpOptions): (challenge: StepUpChallenge) => Promise<StepUpResult> {
  checkCiba(options)
  return async (challenge) => {
    const params: Record<string, string> = {
      scope: options.scope ?? 'openid',
      login_hint: typeof options.loginHint === 'function' ? options.loginHint(challenge) : options.loginHint,
    }
    const message = typeof options.bindingMessage === 'function' ? options.bindingMessage(challenge) : options.bindingMessage
    if (message) params.binding_message = message
    if (challenge.acrValues?.length) params.acr_values = challenge.acrValues.join(' ')
    const resource = challenge.resource ?? session.resource
    if (resource) params.resource = resource
    const started = await session.backchannelAuthenticate(params)
    const deadline = Date.now() + Math.min(started.expires_in * 1000, options.maxWaitMs ?? 300_000)
    let interval = Math.max(1, started.interval ?? 5) * 1000
    for (let polls = 0; Date.now() < deadline && polls < 1000; polls++) {
      await sleep(Math.min(interval, Math.max(0, deadline - Date.now())))
      try {
        const tokens = await session.requestToken(ciba(started.auth_req_id))
        return { access_token: tokens.access_token, token_type: tokens.token_type, ...(tokens.expires_in !== undefined ? { expires_in: tokens.expires_in } : {}), ...(tokens.scope ? { scope: tokens.scope } : {}) }
      } catch (err) {
        if (!(err instanceof TokenEndpointError)) throw err
        if (err.error === 'authorization_pending') continue
        if (err.error === 'slow_down') {
          interval += 5_000 // CIBA §11: increase the interval by at least 5 seconds
          continue
        }
        if (err.error === 'access_denied' || err.error === 'expired_token') return false
        throw err
      }
    }
    return false // the user did not answer in time
  }
}
