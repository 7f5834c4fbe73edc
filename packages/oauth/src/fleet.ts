import { createHash, randomUUID } from 'node:crypto'
import { BoundError, TokenEndpointError, type Emitter } from '@bound/core'
import type { SessionEvents } from './session.js'
import { createStoreCipher, type StoreEncryptionKey } from './store-cipher.js'
import type { StoredRecord, TokenStore } from './token-store.js'
import { createBoundToken, type BoundToken } from './token.js'

/**
 * A shared token store for a fleet of processes (see `TokenStore`, and `@bound/redis`).
 *
 * @example
 * ```ts
 * createSession({ …, store: { store: createRedisTokenStore({ client }), encryptionKey: process.env.BOUND_STORE_KEY! } })
 * ```
 */
export interface SharedStoreOptions {
  /** The store (`createRedisTokenStore` from `@bound/redis`, or your own `TokenStore`). */
  store: TokenStore
  /**
   * The AES-256-GCM key the values are sealed with (32 bytes; base64 text, bytes or a secret
   * `KeyObject`), or several: the first seals, all open (rotation). Every process of the fleet
   * needs it.
   */
  encryptionKey: StoreEncryptionKey | readonly StoreEncryptionKey[]
  /**
   * Whose tokens these are, when the configuration alone does not say: a tenant or user id.
   * Required for grants that act for a subject (token exchange, JWT bearer, refresh token): Bound
   * cannot tell two subjects' sessions apart from their configuration. Hashed into every store key.
   */
  partition?: string
  /** The longest one store call may take before the process stops waiting on the store. Default 500. */
  timeoutMs?: number
  /** The longest a caller waits on the store in all (reads, the lease, another process's token request). Default 2,000. */
  waitMs?: number
  /** How long the earner's lease lasts: a holder that died is replaced after it. Default the token request timeout + 5,000. */
  leaseMs?: number
  /** After a store failure, the store is left alone this long (doubling up to 5 s, or retryMs when larger) before it is tried again. Default 1,000. */
  retryMs?: number
  /** While waiting for another process's token, look at the store at least this often (notifications usually come first). Default 100. */
  pollMs?: number
}

/** What the fleet needs from its session. */
export interface FleetOptions {
  shared: SharedStoreOptions
  events: Emitter<SessionEvents>
  /** Who the session is (issuer, client id, grant, partition, certificate): hashed into every store key. */
  identity(): string
  /** Whether a token read from the store may be served with the session's current binding. */
  accept(token: BoundToken): boolean
  leaseMs: number
  /** The manager's hold on a token, to drop it when another process invalidated it. */
  invalidateLocal(cacheKey: string, storeGeneration: number): void
  /** The tokens held locally (rechecked against the store when it recovers). */
  held(): BoundToken[]
}

const FAILED = Symbol('store failed')
type Outcome<T> = T | typeof FAILED

const now = () => performance.timeOrigin + performance.now()
/** How long a refresh-token family record lives in the store without a new generation. */
const FAMILY_TTL_MS = 30 * 86_400_000

/**
 * Fleet-wide coordination over a {@link TokenStore} (FLEET-01…05): tokens earned once per key in
 * the fleet under a lease, shared sealed, invalidations published; a refresh-token family
 * redeemed by one process per generation. Every store call is bounded in time; while the store
 * fails, the session works alone and says so (`store.degraded`, `store.recovered`).
 */
export function createFleet(options: FleetOptions) {
  const { shared, events } = options
  const { store } = shared
  const cipher = createStoreCipher(shared.encryptionKey)
  const timeoutMs = shared.timeoutMs ?? 500
  const waitMs = shared.waitMs ?? 2_000
  const retryMs = shared.retryMs ?? 1_000
  const pollMs = shared.pollMs ?? 100
  const owner = randomUUID()
  let closed = false

  // ── health: a circuit breaker, so a store that is down costs nothing but the first timeout ──
  let failures = 0
  let downSince: number | undefined
  let downUntil = 0
  const degrade = (operation: string, err: unknown) => {
    failures++
    // doubling, but never beyond 5 s (or retryMs): coordination must resume soon after the store is back
    downUntil = now() + Math.min(retryMs * 2 ** Math.min(failures - 1, 10), Math.max(retryMs, 5_000))
    scheduleProbe()
    if (downSince !== undefined) return
    downSince = now()
    const timedOut = err instanceof BoundError && err.code === 'ERR_TOKEN_UNAVAILABLE'
    events.emit('store.degraded', { operation, reason: timedOut ? 'timeout' : 'error', message: timedOut ? `no answer within ${timeoutMs} ms` : err instanceof Error ? err.message.slice(0, 200) : 'the store failed', retryAt: downUntil })
  }
  const recovered = () => {
    failures = 0
    if (downSince === undefined) return
    const downMs = Math.round(now() - downSince)
    downSince = undefined
    events.emit('store.recovered', { downMs })
    // notifications may have been lost meanwhile (the engine resubscribes by itself): look at what we hold
    void recheckHeld()
  }
  const available = () => !closed && now() >= downUntil
  // While degraded, the store is tried again in the background once the breaker allows, so
  // coordination resumes (and notifications lost meanwhile are made up for) without waiting for
  // a caller to need the store.
  let probe: ReturnType<typeof setTimeout> | undefined
  const scheduleProbe = () => {
    if (probe !== undefined || closed) return
    probe = setTimeout(() => {
      probe = undefined
      if (downSince !== undefined && !closed) void call('probe', () => store.get('probe'))
    }, Math.max(1, downUntil - now()))
    probe.unref()
  }

  /** One store call, bounded by `timeoutMs` (and `budgetMs`): its value, or FAILED (the breaker opened). */
  const call = async <T>(operation: string, run: () => Promise<T>, budgetMs = timeoutMs): Promise<Outcome<T>> => {
    if (!available()) return FAILED
    let timer: ReturnType<typeof setTimeout> | undefined
    const limit = Math.max(1, Math.min(timeoutMs, budgetMs))
    const cutShort = new BoundError('ERR_TOKEN_UNAVAILABLE', 'the caller’s wait on the store ran out')
    try {
      const value = await Promise.race([
        run(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(limit < timeoutMs ? cutShort : new BoundError('ERR_TOKEN_UNAVAILABLE', `the token store did not answer ${operation} within ${timeoutMs} ms`)), limit)
          timer.unref()
        }),
      ])
      recovered()
      return value
    } catch (err) {
      // the caller's own bound ran out first: no sign the store is in trouble
      if (err !== cutShort) degrade(operation, err)
      return FAILED
    } finally {
      clearTimeout(timer)
    }
  }

  // ── keys: hashed, never a secret (FLEET-05) ──
  const hash = (kind: string, what: string) => `${kind}:${createHash('sha256').update(options.identity()).update('\u0000').update(what).digest('base64url')}`
  const tokenKey = (cacheKey: string) => hash('tok', cacheKey)
  const context = (key: string, generation: number) => `${key}#${generation}`

  // ── notifications: wake waiters, drop what another process invalidated ──
  const waiters = new Map<string, Set<() => void>>()
  let subscription: Promise<(() => void) | undefined> | undefined
  const subscribe = () => {
    subscription ??= (async () => {
      const off = await call('subscribe', () => store.subscribe(onChange))
      if (off === FAILED) {
        subscription = undefined
        return undefined
      }
      if (closed) off()
      return off
    })()
    return subscription
  }
  /** How many changes of each key were announced while someone was about to wait for one (no wake-up is lost). */
  const changes = new Map<string, number>()
  const changesOf = (key: string) => changes.get(key) ?? 0
  const onChange = (key: string, generation: number) => {
    if (changes.has(key) || waiters.has(key)) changes.set(key, changesOf(key) + 1)
    const set = waiters.get(key)
    if (set) for (const wake of [...set]) wake()
    // a token we hold at this generation may have been invalidated elsewhere: look
    for (const token of options.held()) {
      if (generations.get(token) === generation && tokenKey(token.cacheKey) === key) void recheck(token)
    }
  }
  const recheck = async (token: BoundToken) => {
    const generation = generations.get(token)
    if (generation === undefined) return
    const key = tokenKey(token.cacheKey)
    const rec = await call('get', () => store.get(key))
    if (rec !== FAILED && (rec === undefined || (rec.generation === generation && rec.value === '') || rec.generation < generation)) {
      options.invalidateLocal(token.cacheKey, generation)
    }
  }
  const recheckHeld = async () => {
    for (const token of options.held()) await recheck(token)
  }
  /** Starts watching `key`: the count to hand to {@link waitForChange}. */
  const watch = (key: string) => {
    if (!changes.has(key)) {
      if (changes.size >= 10_000) changes.delete(changes.keys().next().value as string)
      changes.set(key, 0)
    }
    return changesOf(key)
  }
  /** Waits for a change of `key` after the one `seen` counted (at once if one came since), or `ms`. */
  const waitForChange = (key: string, ms: number, seen: number) =>
    new Promise<void>((resolve) => {
      if (changesOf(key) !== seen) return resolve()
      let set = waiters.get(key)
      if (!set) waiters.set(key, (set = new Set()))
      const done = () => {
        clearTimeout(timer)
        set.delete(done)
        if (set.size === 0) waiters.delete(key)
        resolve()
      }
      const timer = setTimeout(done, Math.max(1, ms))
      timer.unref()
      set.add(done)
    })

  // ── tokens ──
  /** The store generation of each token that went through the store. */
  const generations = new WeakMap<BoundToken, number>()
  /** The generation below which a key's records are known stale here (invalidated by this process). */
  const stale = new Map<string, number>()

  const seal = (token: BoundToken, key: string, generation: number) =>
    cipher.seal(
      JSON.stringify({ v: token.value, t: token.type, e: token.expiresAt, r: token.receivedAt, a: token.lifetimeAssumed, s: token.scope ?? null, j: token.binding.jkt ?? null, x: token.binding.x5t ?? null }),
      context(key, generation),
    )
  const unseal = (rec: StoredRecord, key: string, cacheKey: string, localGeneration: number): BoundToken | undefined => {
    if (rec.value === '') return undefined
    const text = cipher.open(rec.value, context(key, rec.generation))
    if (text === undefined) return undefined
    try {
      const v = JSON.parse(text) as { v: string; t: 'DPoP' | 'Bearer'; e: number; r: number; a: boolean; s: string | null; j: string | null; x: string | null }
      if (typeof v.v !== 'string' || (v.t !== 'DPoP' && v.t !== 'Bearer') || !Number.isFinite(v.e) || !Number.isFinite(v.r)) return undefined
      const token = createBoundToken({
        value: v.v,
        type: v.t,
        expiresAt: v.e,
        receivedAt: v.r,
        lifetimeAssumed: v.a === true,
        scope: v.s ?? undefined,
        cacheKey,
        generation: localGeneration,
        binding: { ...(v.j ? { jkt: v.j } : {}), ...(v.x ? { x5t: v.x } : {}) },
      })
      generations.set(token, rec.generation)
      return token
    } catch {
      return undefined
    }
  }

  /** A stored token this process may take instead of earning: newer than what it knows, bound as it is, with a quarter of its life left. */
  const takeable = (rec: Outcome<StoredRecord | undefined>, key: string, cacheKey: string, floor: number, previous: BoundToken | undefined, localGeneration: number) => {
    if (rec === FAILED || rec === undefined || rec.generation <= floor) return undefined
    const token = unseal(rec, key, cacheKey, localGeneration)
    if (!token || !options.accept(token)) return undefined
    const t = now()
    if (token.expiresAt - t < Math.max(1_000, (token.expiresAt - token.receivedAt) / 4)) return undefined
    if (previous && token.expiresAt <= previous.expiresAt) return undefined
    return token
  }

  const share = async (key: string, token: BoundToken, generation: number) => {
    const ttl = Math.max(1_000, Math.round(token.expiresAt - now()))
    const written = await call('put', () => store.put(key, { value: seal(token, key, generation), generation }, ttl))
    if (written === true) generations.set(token, generation)
  }

  /**
   * A token for `cacheKey`: one another process of the fleet earned and shared (newer than
   * `previous`), or one this process earns — as the fleet's only earner for the key while it
   * holds the lease, or alone when the store fails or the wait passes its bound.
   */
  const obtain = async (cacheKey: string, request: { previous: BoundToken | undefined; localGeneration: number; earn: () => Promise<BoundToken> }): Promise<BoundToken> => {
    if (!available()) return request.earn()
    const key = tokenKey(cacheKey)
    const started = now()
    const deadline = started + waitMs
    const previousGeneration = request.previous ? generations.get(request.previous) : undefined
    const floor = Math.max(previousGeneration ?? 0, stale.get(key) ?? 0)
    const taken = (token: BoundToken) => {
      events.emit('token.shared', { label: token.label, cacheKey, generation: generations.get(token)!, waitMs: Math.round(now() - started) })
      return token
    }
    void subscribe()
    const take = (record: Outcome<StoredRecord | undefined>) => takeable(record, key, cacheKey, floor, request.previous, request.localGeneration)
    /** Shares the token this process earned at the generation after every one it knows of. */
    const shareEarned = (token: BoundToken) => share(key, token, Math.max(rec === FAILED || rec === undefined ? 0 : rec.generation, floor) + 1)
    let rec = await call('get', () => store.get(key), deadline - now())
    let found = take(rec)
    if (found) return taken(found)
    let waited = false
    while (available() && now() < deadline) {
      const seen = watch(key) // (before the lease: a token shared right after a refused lease still wakes us)
      const leased = await call('lease', () => store.acquireLease(key, owner, options.leaseMs), deadline - now())
      if (leased === FAILED) break
      if (leased) {
        try {
          // someone may have shared one between our read and our lease
          if (waited) {
            rec = await call('get', () => store.get(key), deadline - now())
            found = take(rec)
            if (found) return taken(found)
          }
          const token = await request.earn()
          await shareEarned(token)
          return token
        } finally {
          void call('release', () => store.releaseLease(key, owner))
        }
      }
      // another process is earning it: wait for its token (notified, or seen on a poll), within the bound
      waited = true
      await waitForChange(key, Math.min(pollMs, deadline - now()), seen)
      rec = await call('get', () => store.get(key), deadline - now())
      found = take(rec)
      if (found) return taken(found)
    }
    // the store failed, or the earner took longer than the bound: earn here (FLEET-02, FLEET-04)
    events.emit('store.wait_exceeded', { cacheKey, ms: Math.round(now() - started), storeAvailable: available() })
    const token = await request.earn()
    if (available()) {
      await shareEarned(token)
    }
    return token
  }

  /** Tells the fleet `token` is no longer good (an API's `invalid_token`, a revocation): its record becomes a tombstone. */
  const invalidate = (token: BoundToken) => {
    const generation = generations.get(token)
    if (generation === undefined) return
    const key = tokenKey(token.cacheKey)
    stale.set(key, Math.max(stale.get(key) ?? 0, generation))
    if (stale.size > 1_000) stale.delete(stale.keys().next().value as string)
    void call('invalidate', () => store.invalidate(key, generation))
  }

  // ── the refresh-token family (FLEET-02, FLEET-03): one redeemer per generation, fleet-wide ──
  const familyKey = (bindingKey: string) => hash('rt', bindingKey)
  /** Locally minted refresh tokens the store could not take (used only by this process). */
  const localFamilies = new Map<string, string>()

  /**
   * Runs `redeem` with the family's refresh token as the fleet's only redeemer: under the family
   * lease, with the newest refresh token in the store, re-checking the lease just before it is sent;
   * the next refresh token is written (compare-and-set on the generation) before the access token
   * is returned. `undefined` when there is no refresh token this process may present.
   */
  const redeemFamily = async <T>(bindingKey: string, initial: string | undefined, redeem: (refreshToken: string) => Promise<{ value: T; next: string | undefined } | undefined>): Promise<T | undefined> => {
    const key = familyKey(bindingKey)
    const local = localFamilies.get(key)
    if (local !== undefined) {
      // a family only this process knows: no fleet coordination needed
      const out = await redeem(local)
      if (out?.next !== undefined) localFamilies.set(key, out.next)
      else if (out === undefined) localFamilies.delete(key)
      return out?.value
    }
    // most sessions never get a refresh token (client credentials): a plain read says so, without the lease
    const peek = await call('get', () => store.get(key))
    if (peek === FAILED || (peek === undefined && initial === undefined) || peek?.value === '') return undefined
    const deadline = now() + waitMs
    let leased: Outcome<boolean> = false
    while (now() < deadline) {
      const seen = watch(key)
      leased = await call('lease', () => store.acquireLease(key, owner, options.leaseMs), deadline - now())
      if (leased !== false) break
      await waitForChange(key, Math.min(pollMs, deadline - now()), seen)
    }
    if (leased !== true) return undefined // the store failed or another redeemer is slow: never present a token it may have replaced
    try {
      const rec = await call('get', () => store.get(key))
      if (rec === FAILED) return undefined
      const generation = rec?.generation ?? 0
      const refreshToken = rec === undefined ? initial : rec.value === '' ? undefined : cipher.open(rec.value, context(key, rec.generation))
      if (refreshToken === undefined) return undefined
      // FLEET-02: the lease is still ours right before a single-use credential leaves
      if ((await call('lease check', () => store.holdsLease(key, owner))) !== true) return undefined
      let out
      try {
        out = await redeem(refreshToken)
      } catch (err) {
        if (err instanceof TokenEndpointError && err.error === 'invalid_grant') void call('invalidate', () => store.invalidate(key, generation))
        throw err
      }
      if (out === undefined) {
        void call('invalidate', () => store.invalidate(key, generation)) // refused: nobody presents it again
        return undefined
      }
      if (out.next !== undefined && out.next !== refreshToken) {
        const written = await call('put', () => store.put(key, { value: cipher.seal(out.next!, context(key, generation + 1)), generation: generation + 1 }, FAMILY_TTL_MS))
        if (written !== true) localFamilies.set(key, out.next) // nobody else can have it: keep it to ourselves
      }
      return out.value
    } finally {
      void call('release', () => store.releaseLease(key, owner))
    }
  }

  /** A grant (not a refresh) issued `refreshToken`: it becomes the fleet's family (a new family never forks). */
  const startFamily = async (bindingKey: string, refreshToken: string) => {
    const key = familyKey(bindingKey)
    localFamilies.delete(key)
    const rec = await call('get', () => store.get(key))
    const generation = rec === FAILED ? undefined : (rec?.generation ?? 0) + 1
    const written = generation === undefined ? FAILED : await call('put', () => store.put(key, { value: cipher.seal(refreshToken, context(key, generation)), generation }, FAMILY_TTL_MS))
    if (written !== true) localFamilies.set(key, refreshToken)
  }

  return {
    obtain,
    invalidate,
    redeemFamily,
    startFamily,
    /** The refresh tokens only this process holds (revoked when it closes with `revoke`). */
    localRefreshTokens: () => [...localFamilies.values()],
    /** The store generation a token was shared under (tests and diagnostics). */
    generationOf: (token: BoundToken) => generations.get(token),
    close() {
      closed = true
      clearTimeout(probe)
      for (const set of waiters.values()) for (const wake of [...set]) wake()
      void subscription?.then((off) => off?.())
    },
  }
}

/** A session's fleet coordination (see {@link createFleet}). */
export type Fleet = ReturnType<typeof createFleet>
