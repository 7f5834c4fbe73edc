/**
 * A small typed event emitter: listeners are called synchronously, in order, and a listener that
 * throws never breaks the caller (the error is dropped on purpose: telemetry must not take a
 * request down).
 *
 * @example
 * ```ts
 * const events = createEmitter<{ 'token.acquired': { resource: string } }>()
 * const off = events.on('token.acquired', (e) => console.log(e.resource))
 * ```
 */
export interface Emitter<E extends { [K in keyof E]: object }> {
  /** Adds a listener for `type`; returns the function that removes it. */
  on<K extends keyof E>(type: K, listener: (event: E[K]) => void): () => void
  /** Calls the listeners of `type` with `event`, synchronously, in order. */
  emit<K extends keyof E>(type: K, event: E[K]): void
}

/**
 * Creates an {@link Emitter}. `tap` sees every event first (Bound uses it for diagnostics).
 *
 * @example
 * ```ts
 * const events = createEmitter<{ tick: { n: number } }>()
 * const off = events.on('tick', ({ n }) => console.log(n))
 * events.emit('tick', { n: 1 })
 * off()
 * ```
 */
export function createEmitter<E extends { [K in keyof E]: object }>(tap?: (type: keyof E, event: E[keyof E]) => void): Emitter<E> {
  const listeners = new Map<keyof E, Set<(event: never) => void>>()
  return {
    on(type, listener) {
      let set = listeners.get(type)
      if (!set) listeners.set(type, (set = new Set()))
      set.add(listener as (event: never) => void)
      return () => void set.delete(listener as (event: never) => void)
    },
    emit(type, event) {
      tap?.(type, event)
      const set = listeners.get(type)
      if (!set) return
      for (const listener of set) {
        try {
          ;(listener as (e: typeof event) => void)(event)
        } catch {
          // a listener's failure is its own
        }
      }
    },
  }
}
