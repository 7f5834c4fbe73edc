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
  get(key: K): V | undefined
  set(key: K, value: V): void
  delete(key: K): boolean
  has(key: K): boolean
  clear(): void
  readonly size: number
  readonly max: number
}

/** Creates an {@link Lru} holding at most `max` entries (≥ 1). */
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
