import { createLru, createSingleFlight } from '@bound/core/internal'
import type { Session, StepUpApproval } from '@bound/oauth'
import { waitFor } from '@bound/oauth/internal'
import type { ResponseChallenge } from './challenges.js'
import type { BoundOptions } from './engine.js'

/** Why a step-up was not answered. */
export type StepUpOutcome = 'refused' | 'declined' | 'malformed' | 'stream' | 'not-asked' | 'not-accepted' | 'rate-limited'

/** Each {@link StepUpOutcome} in words, for `ERR_STEP_UP_REQUIRED` messages. */
export const STEP_UP_REASONS: Record<StepUpOutcome, string> = {
  refused: 'the stepped-up token was refused too',
  declined: 'onStepUp declined',
  malformed: 'the challenge is malformed',
  stream: 'the request body is a stream, which cannot be sent again',
  'not-asked': 'configure onStepUp to handle it',
  'not-accepted': 'none of its acr_values is in acceptedAcrValues',
  'rate-limited': 'this origin asked for step-ups too often (stepUpPrompts)',
}

/**
 * RFC 9470 step-up approvals, scoped: an approval (and a token obtained with it) belongs to the
 * origin and resource that asked for it; the level each path needed is remembered; `onStepUp` is
 * called once per (origin, resource, level) however many requests wait, only for accepted levels,
 * and at most `stepUpPrompts.max` times per origin per window. All state is bounded.
 */
export function createStepUps(session: Session, options: Pick<BoundOptions, 'onStepUp' | 'acceptedAcrValues' | 'stepUpPrompts'>) {
  const accepted = options.acceptedAcrValues ? new Set(options.acceptedAcrValues) : undefined
  const maxPrompts = options.stepUpPrompts?.max ?? 3
  const promptWindowMs = options.stepUpPrompts?.windowMs ?? 60_000
  const pathLevels = createLru<string, string>(1000)
  const approvals = createLru<string, StepUpApproval>(256)
  const prompts = createLru<string, number[]>(1000)
  const flights = createSingleFlight<string, StepUpApproval | false>()
  const keyOf = (origin: string, resource: string | undefined, level: string) => JSON.stringify([origin, resource ?? null, level])

  /** Whether `origin` may be prompted again now (at most `maxPrompts` per window); records the prompt. */
  const mayPrompt = (origin: string): boolean => {
    const now = Date.now()
    const recent = (prompts.get(origin) ?? []).filter((t) => now - t < promptWindowMs)
    const allowed = recent.length < maxPrompts
    if (allowed) recent.push(now)
    prompts.set(origin, recent)
    return allowed
  }

  return {
    /** The approval remembered for `url`'s path, its origin and `resource`, if any. */
    approvalFor(url: URL, resource: string | undefined): StepUpApproval | undefined {
      // (most sessions never step up: no key to build)
      const level = pathLevels.size === 0 ? undefined : pathLevels.get(`${url.origin}${url.pathname}`)
      return level === undefined ? undefined : approvals.get(keyOf(url.origin, resource, level))
    },
    /** `url`'s path needed `approval`: later requests to it start with it. */
    rememberPath(url: URL, approval: StepUpApproval): void {
      pathLevels.set(`${url.origin}${url.pathname}`, approval.level)
    },
    /** An approval whose handed-over token expired: the level must be approved again. */
    forget(approval: StepUpApproval, resource: string | undefined): void {
      approvals.delete(keyOf(approval.origin, resource, approval.level))
    },
    /**
     * The approval for the level `challenge` asks of `url`'s origin and `resource` — one already
     * given (unless `sent`, the approval of the token just refused, is that one: max_age passed,
     * revoked), or one `onStepUp` call shared by every request waiting on the same origin,
     * resource and level. An outcome says why not.
     */
    async answer(challenge: ResponseChallenge, url: URL, resource: string | undefined, sent: StepUpApproval | undefined, signal: AbortSignal | undefined): Promise<StepUpApproval | StepUpOutcome> {
      if (!options.onStepUp) return 'not-asked'
      const origin = url.origin
      const acrValues = accepted && challenge.acrValues ? challenge.acrValues.filter((v) => accepted.has(v)) : challenge.acrValues
      if (acrValues !== undefined && acrValues.length === 0) return 'not-accepted'
      const level = [acrValues ? `acr_values=${acrValues.join(' ')}` : '', challenge.maxAge !== undefined ? `max_age=${challenge.maxAge}` : ''].filter(Boolean).join(';') || 'step-up'
      const key = keyOf(origin, resource, level)
      const report = (outcome: 'approved' | 'reused' | 'declined') => session.events.emit('challenge.step_up', { origin, acrValues: acrValues?.join(' '), outcome })
      const known = approvals.get(key)
      if (known && known === sent) approvals.delete(key)
      else if (known) {
        report('reused')
        return known
      }
      // a new call counts against the origin's prompt limit; joining one in flight does not
      if (!flights.has(key) && !mayPrompt(origin)) return 'rate-limited'
      const flight = flights.run(key, async () => {
        const result = await options.onStepUp!({ url: url.href, origin, resource, acrValues, maxAge: challenge.maxAge, challenge })
        if (result === false || result === null || typeof result !== 'object') return false
        let approval: StepUpApproval
        if (typeof (result as { access_token?: unknown }).access_token === 'string') {
          // a token the application obtained: held for this origin and resource, never earned again
          approval = { origin, level }
          session.adopt({ resource, stepUp: approval }, result as Record<string, unknown>)
        } else {
          approval = { origin, level, params: Object.fromEntries(Object.entries(result).map(([k, v]) => [k, String(v)])) }
        }
        approvals.set(key, approval)
        return approval
      })
      // the shared approval goes on for the others; this request stops waiting when its signal fires
      const approval = await waitFor(flight, signal)
      report(approval ? 'approved' : 'declined')
      return approval || 'declined'
    },
  }
}
