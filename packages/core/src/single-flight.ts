/**
 * Runs at most one task per key at a time: callers that ask while a task for their key is in
 * flight get the same promise. The key is forgotten when the task settles (success or failure),
 * so a failure is never cached.
 *
 * @example
 * ```ts
 * const flights = createSingleFlight<string, Token>()
 * const token = await flights.run('orders', () => requestToken())
 * ```
 */
export interface SingleFlight<K, V> {
  /** Joins the in-flight task for `key`, or starts `task` when there is none. */
  run(key: K, task: () => Promise<V>): Promise<V>
  /** Whether a task for `key` is in flight. */
  has(key: K): boolean
  /** Number of tasks in flight. */
  readonly size: number
}

/**
 * Creates a {@link SingleFlight}.
 *
 * @example
 * ```ts
 * const flights = createSingleFlight<string, Response>()
 * const [a, b] = await Promise.all([flights.run('k', load), flights.run('k', load)]) // load ran once
 * ```
 */
export function createSingleFlight<K, V>(): SingleFlight<K, V> {
  const inflight = new Map<K, Promise<V>>()
  return {
    run(key, task) {
      const existing = inflight.get(key)
      if (existing) return existing
      let promise: Promise<V>
      try {
        promise = Promise.resolve(task())
      } catch (err) {
        promise = Promise.reject(err)
      }
      const tracked = promise.finally(() => {
        if (inflight.get(key) === tracked) inflight.delete(key)
      })
      inflight.set(key, tracked)
      return tracked
    },
    has: (key) => inflight.has(key),
    get size() {
      return inflight.size
    },
  }
}
