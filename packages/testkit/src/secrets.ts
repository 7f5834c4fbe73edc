import { channel } from 'node:diagnostics_channel'

/**
 * The diagnostics channel on which the testkit announces every secret it hands out or sees: client
 * secrets and private keys, issued access and refresh tokens, DPoP proofs, client assertions and
 * subject tokens. A leak scan subscribes to it, collects what Bound reports (`bound:event`,
 * `bound:log`, `bound:error`), and checks that none of these strings appears there.
 *
 * @example
 * ```ts
 * subscribe(TESTKIT_SECRET_CHANNEL, (secret) => secrets.add(String(secret)))
 * ```
 */
export const TESTKIT_SECRET_CHANNEL = 'bound-testkit:secret'

const secrets = channel(TESTKIT_SECRET_CHANNEL)

/**
 * Announces secret strings (when anyone listens).
 *
 * @example
 * ```ts
 * announceSecret(myOwnClientSecret) // also check that this never shows up in what Bound reports
 * ```
 */
export function announceSecret(...values: unknown[]): void {
  if (!secrets.hasSubscribers) return
  for (const value of values) {
    if (typeof value === 'string' && value.length >= 8) secrets.publish(value)
  }
}
