/**
 * The time source Bound reads. Tests pass a fake; production uses {@link systemClock}.
 */
export interface Clock {
  /** Milliseconds since the Unix epoch. */
  now(): number
}

/** The process clock (`Date.now`). Works with fake timers that patch `Date`. */
export const systemClock: Clock = Object.freeze({ now: () => Date.now() })
