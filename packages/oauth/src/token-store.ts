import { BoundError } from '@bound/core'

/**
 * One record of a {@link TokenStore}: an opaque, already encrypted value and the generation it was
 * written with. An empty `value` is a tombstone: the record was invalidated at that generation
 * (the generation is kept, so a late writer of an older generation cannot bring it back).
 *
 * @example
 * ```ts
 * const record: StoredRecord = { value: 'v1.k1a2b3c4.…', generation: 7 }
 * ```
 */
export interface StoredRecord {
  /** The sealed value (Bound encrypts before it calls the store), or `''` for a tombstone. */
  readonly value: string
  /** A positive integer that only grows for a key. */
  readonly generation: number
}

/**
 * Where a fleet of processes shares bound tokens and coordinates who earns them (FLEET-01…05).
 * Bound encrypts every value and hashes every key before it calls a store, so a store sees neither
 * a token nor what it is for. `@bound/redis` implements it on Redis; another engine implements
 * these seven methods with the same guarantees, and the shared conformance tests
 * (`test/token-store-contract.ts`) check them.
 *
 * Every method may reject (engine down) or be slow: Bound bounds each call in time and falls back
 * to the process's own cache and single-flight while the store fails (FLEET-04). A store need not
 * bound its own calls, but it must not keep a rejected or timed-out call's effect hidden: a write
 * either happened or not.
 *
 * @example
 * ```ts
 * const session = createSession({ …, store: { store: createRedisTokenStore({ client }), encryptionKey } })
 * ```
 */
export interface TokenStore {
  /** The record under `key`, tombstones included; `undefined` when there is none. */
  get(key: string): Promise<StoredRecord | undefined>
  /**
   * Compare-and-set (FLEET-03): writes `record` only when the stored generation is lower than
   * `record.generation` (or there is no record), expiring after `ttlMs`, and then announces
   * `(key, generation)` to every subscriber. Resolves whether it wrote.
   */
  put(key: string, record: StoredRecord, ttlMs: number): Promise<boolean>
  /**
   * Turns the record into a tombstone when its generation is still `generation` (its expiry kept),
   * and then announces `(key, generation)`. Resolves whether it did.
   */
  invalidate(key: string, generation: number): Promise<boolean>
  /**
   * Takes the lease on `key` for `owner` for `ttlMs` when nobody holds it; when `owner` holds it
   * already, extends it. Resolves whether `owner` holds it now. A lease expires by itself: a holder
   * that died is replaced once `ttlMs` has passed.
   */
  acquireLease(key: string, owner: string, ttlMs: number): Promise<boolean>
  /** Whether `owner` holds the lease on `key` now. */
  holdsLease(key: string, owner: string): Promise<boolean>
  /** Gives the lease on `key` up when `owner` holds it (never another owner's). */
  releaseLease(key: string, owner: string): Promise<void>
  /**
   * Calls `listener` with the key and generation of every `put` and `invalidate` that changed a
   * record, made by any process. Delivery may be lost while the engine fails: Bound rechecks what
   * it holds when the store recovers. Resolves a function that stops the subscription.
   */
  subscribe(listener: (key: string, generation: number) => void): Promise<() => void>
}

interface MemoryEntry {
  record: StoredRecord
  expiresAt: number
}

/**
 * An in-process {@link TokenStore}: the reference implementation of the contract, for sessions in
 * one process that should share tokens (and for tests of the contract). Entries expire with the
 * given TTL; at most `maxEntries` are held (the oldest go first).
 *
 * @example
 * ```ts
 * const store = createMemoryTokenStore()
 * const a = createSession({ …, store: { store, encryptionKey } })
 * const b = createSession({ …, store: { store, encryptionKey } }) // shares a's tokens when the binding is the same
 * ```
 */
export function createMemoryTokenStore(options: { maxEntries?: number; now?: () => number } = {}): TokenStore {
  const maxEntries = options.maxEntries ?? 10_000
  if (!Number.isInteger(maxEntries) || maxEntries < 1) throw new BoundError('ERR_INVALID_CONFIG', 'createMemoryTokenStore: maxEntries must be a positive integer')
  const now = options.now ?? Date.now
  const records = new Map<string, MemoryEntry>()
  const leases = new Map<string, { owner: string; until: number }>()
  const listeners = new Set<(key: string, generation: number) => void>()
  const live = (key: string) => {
    const e = records.get(key)
    if (e && e.expiresAt <= now()) {
      records.delete(key)
      return undefined
    }
    return e
  }
  const announce = (key: string, generation: number) => {
    // asynchronously, as a real engine would: a listener never runs inside the writer's call
    queueMicrotask(() => {
      for (const l of listeners) l(key, generation)
    })
  }
  const leaseOf = (key: string) => {
    const l = leases.get(key)
    if (l && l.until <= now()) {
      leases.delete(key)
      return undefined
    }
    return l
  }
  return {
    get: async (key) => live(key)?.record,
    async put(key, record, ttlMs) {
      const current = live(key)
      if (current && current.record.generation >= record.generation) return false
      records.delete(key)
      records.set(key, { record: { value: record.value, generation: record.generation }, expiresAt: now() + ttlMs })
      while (records.size > maxEntries) records.delete(records.keys().next().value as string)
      announce(key, record.generation)
      return true
    },
    async invalidate(key, generation) {
      const current = live(key)
      if (!current || current.record.generation !== generation || current.record.value === '') return false
      current.record = { value: '', generation }
      announce(key, generation)
      return true
    },
    async acquireLease(key, owner, ttlMs) {
      const l = leaseOf(key)
      if (l && l.owner !== owner) return false
      leases.set(key, { owner, until: now() + ttlMs })
      return true
    },
    holdsLease: async (key, owner) => leaseOf(key)?.owner === owner,
    async releaseLease(key, owner) {
      if (leaseOf(key)?.owner === owner) leases.delete(key)
    },
    async subscribe(listener) {
      listeners.add(listener)
      return () => {
        listeners.delete(listener)
      }
    },
  }
}
