import { BoundError } from '@bound/core'
import { durationMs, functionRule, optionsChecker, z } from '@bound/core/internal'
import { createSession, type Session, type SessionOptions } from './session.js'

/**
 * Options of {@link createSessionPool}.
 *
 * @example
 * ```ts
 * const options: SessionPoolOptions = { sessionOptions: (tenant) => ({ …, store: { store, encryptionKey, partition: tenant } }), maxSessions: 500, idleMs: 600_000 }
 * ```
 */
export interface SessionPoolOptions {
  /**
   * The options of the session for `partition` (a tenant or user id), called when the pool makes
   * it. With a shared `store`, its `partition` must be this one (set it, or leave it out and the
   * pool sets it): the session's tokens are then found again in the store after an eviction.
   */
  sessionOptions(partition: string): SessionOptions
  /** Sessions held at most; past it the least recently used one goes. Default 1,000. */
  maxSessions?: number
  /** A session not used for this long goes. Default 300,000 (5 minutes). */
  idleMs?: number
  /** An evicted session is closed this long after it went (requests it is still serving finish). Default 30,000. */
  closeAfterMs?: number
}

/**
 * Sessions made on demand, one per partition (a tenant, a user), bounded in number and evicted
 * when idle. Made by {@link createSessionPool}.
 *
 * @example
 * ```ts
 * const session: Session = pool.get(tenantId)
 * ```
 */
export interface SessionPool {
  /** The session of `partition`, made now if the pool holds none. */
  get(partition: string): Session
  /** Sessions held. */
  readonly size: number
  /** Closes every session (without revoking: their tokens stay in the store for the next process). */
  close(): Promise<void>
}

const checkPool = optionsChecker('createSessionPool', {
  sessionOptions: functionRule('must be a function (partition) => SessionOptions'),
  maxSessions: z.number().int().positive().optional(),
  idleMs: durationMs(1_000, 86_400_000).optional(),
  closeAfterMs: durationMs(0, 3_600_000).optional(),
})

/**
 * A pool of sessions, one per partition: an agent platform acting for many tenants or users in one
 * process, against one shared store. A session is made on first use, the least recently used goes
 * past `maxSessions`, an idle one goes after `idleMs`; its tokens stay in the store, so the next
 * session for that partition (here or in another process) takes them instead of earning new ones.
 *
 * @example
 * ```ts
 * import { createSessionPool, tokenExchange } from '@bound/oauth'
 * const pool = createSessionPool({
 *   sessionOptions: (user) => ({ issuer, clientId, clientAuth, dpop, grant: tokenExchange({ subjectToken: () => idTokenOf(user), resource }), store: { store, encryptionKey, partition: user } }),
 * })
 * const fetchAsUser = createBoundFetch({ session: pool.get('user-42'), origins: [api] })
 * ```
 */
export function createSessionPool(options: SessionPoolOptions): SessionPool {
  checkPool(options)
  const maxSessions = options.maxSessions ?? 1_000
  const idleMs = options.idleMs ?? 300_000
  const closeAfterMs = options.closeAfterMs ?? 30_000
  // insertion order is recency order
  const sessions = new Map<string, { session: Session; usedAt: number }>()
  /** Evicted sessions waiting to be closed. */
  const retired = new Map<Session, ReturnType<typeof setTimeout>>()
  let closed = false

  const retire = (partition: string) => {
    const held = sessions.get(partition)
    if (!held) return
    sessions.delete(partition)
    const timer = setTimeout(() => {
      retired.delete(held.session)
      void held.session.close().catch(() => {})
    }, closeAfterMs)
    timer.unref()
    retired.set(held.session, timer)
  }

  const sweep = setInterval(() => {
    const cutoff = Date.now() - idleMs
    for (const [partition, held] of sessions) {
      if (held.usedAt > cutoff) break // the rest were used later
      retire(partition)
    }
  }, Math.min(idleMs, 60_000))
  sweep.unref()

  return {
    get(partition) {
      if (closed) throw new BoundError('ERR_CLOSED', 'The session pool is closed')
      if (typeof partition !== 'string' || partition === '') throw new BoundError('ERR_INVALID_INPUT', 'createSessionPool: get(partition) needs a non-empty string')
      const held = sessions.get(partition)
      if (held) {
        sessions.delete(partition)
        held.usedAt = Date.now()
        sessions.set(partition, held)
        return held.session
      }
      const sessionOptions = options.sessionOptions(partition)
      if (sessionOptions.store && sessionOptions.store.partition !== undefined && sessionOptions.store.partition !== partition) {
        throw new BoundError('ERR_INVALID_CONFIG', 'createSessionPool: sessionOptions(partition) gave a store.partition other than the partition asked for')
      }
      const session = createSession(sessionOptions.store ? { ...sessionOptions, store: { ...sessionOptions.store, partition } } : sessionOptions)
      sessions.set(partition, { session, usedAt: Date.now() })
      while (sessions.size > maxSessions) retire(sessions.keys().next().value as string)
      return session
    },
    get size() {
      return sessions.size
    },
    async close() {
      closed = true
      clearInterval(sweep)
      for (const timer of retired.values()) clearTimeout(timer)
      const all = [...sessions.values()].map((h) => h.session).concat([...retired.keys()])
      sessions.clear()
      retired.clear()
      await Promise.all(all.map((s) => s.close().catch(() => {})))
    },
  }
}
