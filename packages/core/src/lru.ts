/**
 * A bounded map that evicts the least recently used entry past `max` entries.
 *
 * @example
 * ```ts
 * const nonces = createLru<string, string>(1000)
 * nonces.set('https://api.example.com', 'n1')
 * ```
 */
export interface Lru<K, V> {
  /** The value for `key`, marking it as most recently used. */
  get(key: K): V | undefined
  /** Stores `value`, evicting the least recently used entry when full. */
  set(key: K, value: V): void
  /** Removes `key`; whether it was there. */
  delete(key: K): boolean
  /** Whether `key` is held (does not change the order). */
  has(key: K): boolean
  /** Removes every entry. */
  clear(): void
  /** Entries held. */
  readonly size: number
  /** Entries held at most. */
  readonly max: number
}

/**
 * Creates an {@link Lru} holding at most `max` entries (≥ 1; otherwise a `RangeError`).
 *
 * @example
 * ```ts
 * const lru = createLru<string, number>(2)
 * lru.set('a', 1); lru.set('b', 2); lru.get('a'); lru.set('c', 3)
 * lru.has('b') // false: the least recently used went
 * ```
 */
export function createLru<K, V>(max: number): Lru<K, V> {
  if (!Number.isInteger(max) || max < 1) throw new RangeError('LRU size must be a positive integer')
  const map = new Map<K, V>()
  return {
    get(key) {
      const value = map.get(key)
      if (value !== undefined) {
        map.delete(key)
        map.set(key, value)
      }
      return value
    },
    set(key, value) {
      if (map.has(key)) map.delete(key)
      else if (map.size >= max) {
        const oldest = map.keys().next()
        if (!oldest.done) map.delete(oldest.value)
      }
      map.set(key, value)
    },
    delete: (key) => map.delete(key),
    has: (key) => map.has(key),
    clear: () => map.clear(),
    get size() {
      return map.size
    },
    max,
  }
}
