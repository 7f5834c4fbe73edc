import { createLru } from '@bound/core/internal'

/**
 * What happened to a response's `DPoP-Nonce`.
 *
 * @example
 * ```ts
 * const seen: NonceObservation = dpop.observe(url, response.headers)
 * if (seen === 'invalid') console.warn('the server sent a malformed DPoP-Nonce')
 * ```
 */
export type NonceObservation = 'none' | 'stored' | 'unchanged' | 'invalid'

/**
 * DPoP nonces per origin (RFC 9449 §8, §9): an AS nonce never goes to an RS and one RS's nonce
 * never goes to another. Bounded (least recently used origins are forgotten).
 *
 * @example
 * ```ts
 * const nonces: NonceStore = session.dpop!.nonces
 * nonces.get('https://api.example.com') // the last nonce that origin sent
 * ```
 */
export interface NonceStore {
  /** The last nonce `origin` supplied, if any. */
  get(origin: string): string | undefined
  /** Stores a nonce for `origin` (after validating it). Returns what happened. */
  set(origin: string, nonce: string): NonceObservation
  /** Harvests `DPoP-Nonce` from any response headers (200s included). */
  observe(origin: string, headers: { get(name: string): string | null }): NonceObservation
  /** Forgets `origin`'s nonce. */
  delete(origin: string): void
  /** Forgets every nonce. */
  clear(): void
  /** Origins with a nonce. */
  readonly size: number
}

/**
 * `1*NQCHAR`, NQCHAR = %x21 / %x23-5B / %x5D-7E (RFC 9449 §8.1), capped at 2,048 characters.
 *
 * @example
 * ```ts
 * isValidNonce('eyJ7S_zG.eyJH0-Z.HX4w-7v') // true
 * isValidNonce('n1, n2')                   // false: two DPoP-Nonce fields joined
 * ```
 */
export function isValidNonce(value: string): boolean {
  if (value.length === 0 || value.length > 2048) return false
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i)
    if (!(c === 0x21 || (c >= 0x23 && c <= 0x5b) || (c >= 0x5d && c <= 0x7e))) return false
  }
  return true
}

/**
 * Creates a {@link NonceStore}. Never share one between sessions.
 *
 * @example
 * ```ts
 * const nonces = createNonceStore({ max: 1000 })
 * nonces.observe('https://api.example.com', response.headers)
 * ```
 */
export function createNonceStore(options: { max?: number } = {}): NonceStore {
  const lru = createLru<string, string>(options.max ?? 1000)
  const store: NonceStore = {
    get: (origin) => lru.get(origin),
    set(origin, nonce) {
      // Two DPoP-Nonce fields arrive joined by ", ", which is not NQCHAR: refused as well (DPOP-20).
      if (!isValidNonce(nonce)) return 'invalid'
      if (lru.get(origin) === nonce) return 'unchanged'
      lru.set(origin, nonce)
      return 'stored'
    },
    observe(origin, headers) {
      const nonce = headers.get('dpop-nonce')
      return nonce === null ? 'none' : store.set(origin, nonce)
    },
    delete: (origin) => void lru.delete(origin),
    clear: () => lru.clear(),
    get size() {
      return lru.size
    },
  }
  return store
}
