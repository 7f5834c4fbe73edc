/**
 * The time source Bound reads. Tests pass a fake; production uses {@link systemClock}.
 *
 * @example
 * ```ts
 * const fourMinutesFast: Clock = { now: () => Date.now() + 240_000 }
 * createSession({ …, clock: fourMinutesFast })
 * ```
 */
export interface Clock {
  /** Milliseconds since the Unix epoch. */
  now(): number
}

/**
 * The process clock (`Date.now`). Works with fake timers that patch `Date`.
 *
 * @example
 * ```ts
 * const iat = Math.floor(systemClock.now() / 1000)
 * ```
 */
export const systemClock: Clock = Object.freeze({ now: () => Date.now() })
