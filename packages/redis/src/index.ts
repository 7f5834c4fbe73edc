/**
 * `@bound/redis`: a {@link TokenStore} on Redis, so a fleet of processes shares its bound tokens
 * (sealed, under hashed keys) and coordinates who earns them (FLEET-01…05).
 *
 * @packageDocumentation
 * @module @bound/redis
 */
import { createHash } from 'node:crypto'
import { BoundError } from '@bound/core'
import { optionsChecker, durationMs, z } from '@bound/core/internal'
import type { StoredRecord, TokenStore } from '@bound/oauth'

export type { StoredRecord, TokenStore } from '@bound/oauth'

/**
 * The subscriber connection {@link RedisClientLike.duplicate} returns: the part of node-redis's
 * client (v5, v6) the store uses for pub/sub.
 */
export interface RedisSubscriberLike {
  connect(): Promise<unknown>
  subscribe(channel: string, listener: (message: string, channel: string) => void): Promise<unknown>
  on(event: 'error', listener: (err: Error) => void): unknown
  destroy(): void
}

/**
 * The part of a node-redis client (`createClient()` from `redis` v5 or v6) the store uses: raw
 * commands, and a duplicate connection for pub/sub. Typed by shape, so any client with these
 * methods fits. The application owns it: connects it, attaches its `'error'` listener, closes it.
 */
export interface RedisClientLike {
  /** Sends one command (`['GET', key]`) and resolves its reply. */
  sendCommand(args: string[]): Promise<unknown>
  /** A new, unconnected client with the same options (needed for `notify: 'pubsub'`). */
  duplicate?(): RedisSubscriberLike
}

/** Options of {@link createRedisTokenStore}. */
export interface RedisTokenStoreOptions {
  /** A connected node-redis client (`createClient({ disableOfflineQueue: true, … })`); yours to close. */
  client: RedisClientLike
  /** Put before every key and the channel name; default `'bound:'`. */
  keyPrefix?: string
  /**
   * How {@link TokenStore.subscribe} learns of changes. `'pubsub'` (default): every `put` and
   * `invalidate` publishes on `<prefix>changes`, and one duplicated connection per store listens.
   * `'poll'`: for servers or proxies without pub/sub — every `pollIntervalMs`, the generations of the
   * keys this store has read or written (at most `maxWatchedKeys`: the keys Bound holds) are read
   * again (one `HMGET` each), and each change is reported.
   */
  notify?: 'pubsub' | 'poll'
  /** With `notify: 'poll'`, how often the watched keys are read; default 1000 ms. */
  pollIntervalMs?: number
  /** With `notify: 'poll'`, how many keys are watched at most (the least recently used go first); default 1000. */
  maxWatchedKeys?: number
}

/** The store {@link createRedisTokenStore} returns: a {@link TokenStore} with `close()`. */
export type RedisTokenStore = TokenStore & {
  /** Stops every subscription and closes the store's own subscriber connection (never your `client`). */
  close(): Promise<void>
}

const checkOptions = optionsChecker('createRedisTokenStore', {
  client: z.custom<RedisClientLike>((v) => typeof v === 'object' && v !== null && typeof (v as { sendCommand?: unknown }).sendCommand === 'function', 'must be a node-redis client (createClient() from the redis package): it has no sendCommand()'),
  keyPrefix: z.string({ error: 'must be a string' }).min(1, 'must not be empty').max(100, 'must be at most 100 characters').optional(),
  notify: z.enum(['pubsub', 'poll'], { error: "must be 'pubsub' or 'poll'" }).optional(),
  pollIntervalMs: durationMs(10, 600_000).optional(),
  maxWatchedKeys: z.number({ error: 'must be a number' }).int('must be a whole number').min(1, 'must be at least 1').optional(),
})

// put: compare-and-set on the generation, write with its expiry, announce — one atomic step.
// KEYS[1] record; ARGV generation, value, ttl ms, channel, announced key
const PUT = `local g = redis.call('HGET', KEYS[1], 'g')
if g and tonumber(g) >= tonumber(ARGV[1]) then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'g', ARGV[1], 'v', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PUBLISH', ARGV[4], ARGV[1] .. ' ' .. ARGV[5])
return 1`

// invalidate: a live record still at this generation becomes a tombstone (generation and expiry
// kept: HSET on an existing hash keeps its TTL), announced.
// KEYS[1] record; ARGV generation, channel, announced key
const INVALIDATE = `local r = redis.call('HMGET', KEYS[1], 'g', 'v')
if not r[1] or tonumber(r[1]) ~= tonumber(ARGV[1]) or not r[2] or r[2] == '' then return 0 end
redis.call('HSET', KEYS[1], 'v', '')
redis.call('PUBLISH', ARGV[2], ARGV[1] .. ' ' .. ARGV[3])
return 1`

// acquireLease: take it when free, extend it when the owner holds it already.
// KEYS[1] lease; ARGV owner, ttl ms
const ACQUIRE = `local o = redis.call('GET', KEYS[1])
if not o then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if o == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0`

// releaseLease: compare-and-delete (never another owner's lease).
const RELEASE = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`

interface Script {
  source: string
  sha: string
}
const script = (source: string): Script => ({ source, sha: createHash('sha1').update(source).digest('hex') })
const SCRIPTS = { put: script(PUT), invalidate: script(INVALIDATE), acquire: script(ACQUIRE), release: script(RELEASE) }

/** A reply as text: node-redis answers strings, or Buffers under a type mapping. */
function text(reply: unknown): string | undefined {
  if (typeof reply === 'string') return reply
  if (Buffer.isBuffer(reply)) return reply.toString('utf8')
  return undefined
}

function argument(where: string, name: string, ok: boolean, rule: string): void {
  if (!ok) throw new BoundError('ERR_INVALID_INPUT', `RedisTokenStore.${where}: ${name} ${rule}`)
}
const positiveInteger = (n: unknown): n is number => typeof n === 'number' && Number.isSafeInteger(n) && n > 0
const checkKey = (where: string, key: unknown) => argument(where, 'key', typeof key === 'string' && key.length > 0, 'must be a non-empty string')
const checkTtl = (where: string, ttlMs: unknown) => argument(where, 'ttlMs', positiveInteger(ttlMs), 'must be a positive whole number of milliseconds')

/**
 * A {@link TokenStore} on Redis (a standalone server, or a managed endpoint that fails over behind
 * one address; not Redis Cluster), through a node-redis client the application owns. Records live under `<prefix>rec:<key>` (a hash:
 * generation `g`, sealed value `v`), leases under `<prefix>lease:<key>` (the owner's id); changes are
 * announced on the channel `<prefix>changes` as `"<generation> <key>"`. Every write is one Lua
 * script, so compare-and-set, expiry and announcement happen atomically. Keys are the hashed keys
 * Bound passes, prefixed: they hold no secret.
 *
 * Calls reject when Redis fails (create the client with `disableOfflineQueue: true`, so they do at
 * once instead of waiting for a reconnection); Bound bounds each call in time and falls back to
 * the process's own cache. The store attaches an `'error'` listener to the connection it creates;
 * attach your own to `client`.
 *
 * @example
 * ```ts
 * import { createClient } from 'redis'
 * import { createRedisTokenStore } from '@bound/redis'
 *
 * const client = createClient({ url: process.env.REDIS_URL, disableOfflineQueue: true })
 * client.on('error', (err) => log.warn({ err }, 'redis'))
 * await client.connect()
 * const store = createRedisTokenStore({ client })
 * const session = createSession({ …, store: { store, encryptionKey } })
 * ```
 */
export function createRedisTokenStore(options: RedisTokenStoreOptions): RedisTokenStore {
  if (options === undefined || options === null) throw new BoundError('ERR_INVALID_CONFIG', 'createRedisTokenStore: options are required ({ client })')
  checkOptions(options)
  const { client } = options
  const notify = options.notify ?? 'pubsub'
  if (notify === 'pubsub' && typeof client.duplicate !== 'function') {
    throw new BoundError('ERR_INVALID_CONFIG', "createRedisTokenStore: client: has no duplicate(), which notify: 'pubsub' needs for its subscriber connection (pass a node-redis client, or notify: 'poll')")
  }
  const prefix = options.keyPrefix ?? 'bound:'
  const channel = `${prefix}changes`
  const recordKey = (key: string) => `${prefix}rec:${key}`
  const leaseKey = (key: string) => `${prefix}lease:${key}`

  // an async function: a client that throws instead of rejecting still rejects
  const send = async (args: string[]): Promise<unknown> => client.sendCommand(args)
  const run = async (s: Script, key: string, args: string[]): Promise<unknown> => {
    try {
      return await send(['EVALSHA', s.sha, '1', key, ...args])
    } catch (err) {
      if (!/NOSCRIPT/.test(String((err as Error | undefined)?.message ?? err))) throw err
      return send(['EVAL', s.source, '1', key, ...args])
    }
  }

  const listeners = new Set<(key: string, generation: number) => void>()
  const announce = (key: string, generation: number) => {
    // each listener on its own, outside the client's reply handling: one that throws disturbs
    // neither the connection nor the other listeners (its error is uncaught, as an emitter's is)
    for (const l of listeners) {
      queueMicrotask(() => {
        if (listeners.has(l)) l(key, generation)
      })
    }
  }
  let closed = false

  // notify: 'pubsub' — one subscriber connection per store, made when the first listener comes
  let subscriber: { connection: RedisSubscriberLike; ready: Promise<void> } | undefined
  const onMessage = (message: string) => {
    const space = message.indexOf(' ')
    const generation = Number(message.slice(0, space))
    if (space > 0 && positiveInteger(generation)) announce(message.slice(space + 1), generation)
  }
  const dropSubscriber = () => {
    const s = subscriber
    subscriber = undefined
    try {
      s?.connection.destroy()
    } catch {
      // already gone
    }
  }
  const subscribed = (): Promise<void> => {
    if (subscriber) return subscriber.ready
    const connection = client.duplicate!()
    const ready = new Promise<void>((resolve, reject) => {
      // node-redis emits 'error' on every failed (re)connection: the first one before the
      // subscription is up fails subscribe(); later ones are the reconnection's business
      connection.on('error', reject)
      connection
        .connect()
        .then(() => connection.subscribe(channel, onMessage))
        .then(() => resolve(), reject)
    })
    const current = { connection, ready }
    subscriber = current
    ready.catch(() => {
      if (subscriber === current) dropSubscriber()
    })
    return ready
  }

  // notify: 'poll' — the keys this store has read or written, with what was last seen of each
  const pollIntervalMs = options.pollIntervalMs ?? 1000
  const maxWatchedKeys = options.maxWatchedKeys ?? 1000
  const watched = new Map<string, string | undefined>()
  const stateOf = (g: string | undefined, v: string | undefined) => (g === undefined ? undefined : `${g}${v ? '' : '/'}`)
  const watch = (key: string, state?: string, known = false) => {
    if (notify !== 'poll') return
    const previous = watched.get(key)
    watched.delete(key)
    watched.set(key, known ? state : previous)
    if (watched.size > maxWatchedKeys) watched.delete(watched.keys().next().value as string)
  }
  let timer: NodeJS.Timeout | undefined
  let polling = false
  const poll = async () => {
    if (polling) return
    polling = true
    try {
      await Promise.all(
        [...watched.keys()].map(async (key) => {
          const reply = await send(['HMGET', recordKey(key), 'g', 'v'])
          const [g, v] = Array.isArray(reply) ? reply.map(text) : []
          const state = stateOf(g, v)
          if (!watched.has(key)) return
          if (state !== undefined && state !== watched.get(key)) announce(key, Number(g))
          watched.set(key, state)
        }),
      )
    } catch {
      // Redis down: changes are reported once it answers again (delivery may be lost meanwhile)
    } finally {
      polling = false
    }
  }
  const startPolling = () => {
    if (timer) return
    timer = setInterval(() => void poll(), pollIntervalMs)
    timer.unref()
  }
  const stopPolling = () => {
    clearInterval(timer)
    timer = undefined
  }

  const stopped = () => {
    if (listeners.size > 0) return
    if (notify === 'pubsub') dropSubscriber()
    else stopPolling()
  }

  return {
    async get(key) {
      checkKey('get', key)
      const reply = await send(['HMGET', recordKey(key), 'g', 'v'])
      const [g, v] = Array.isArray(reply) ? reply.map(text) : []
      watch(key, stateOf(g, v), true)
      if (g === undefined) return undefined
      return { value: v ?? '', generation: Number(g) }
    },
    async put(key, record: StoredRecord, ttlMs) {
      checkKey('put', key)
      argument('put', 'record.generation', positiveInteger(record?.generation), 'must be a positive whole number')
      argument('put', 'record.value', typeof record.value === 'string', 'must be a string')
      checkTtl('put', ttlMs)
      watch(key)
      return (await run(SCRIPTS.put, recordKey(key), [String(record.generation), record.value, String(ttlMs), channel, key])) === 1
    },
    async invalidate(key, generation) {
      checkKey('invalidate', key)
      argument('invalidate', 'generation', positiveInteger(generation), 'must be a positive whole number')
      watch(key)
      return (await run(SCRIPTS.invalidate, recordKey(key), [String(generation), channel, key])) === 1
    },
    async acquireLease(key, owner, ttlMs) {
      checkKey('acquireLease', key)
      argument('acquireLease', 'owner', typeof owner === 'string' && owner.length > 0, 'must be a non-empty string')
      checkTtl('acquireLease', ttlMs)
      return (await run(SCRIPTS.acquire, leaseKey(key), [owner, String(ttlMs)])) === 1
    },
    async holdsLease(key, owner) {
      checkKey('holdsLease', key)
      return text(await send(['GET', leaseKey(key)])) === owner
    },
    async releaseLease(key, owner) {
      checkKey('releaseLease', key)
      await run(SCRIPTS.release, leaseKey(key), [owner])
    },
    async subscribe(listener) {
      if (typeof listener !== 'function') throw new BoundError('ERR_INVALID_INPUT', 'RedisTokenStore.subscribe: listener must be a function')
      if (closed) throw new BoundError('ERR_CLOSED', 'RedisTokenStore.subscribe: the store is closed')
      // a listener of its own: the same function subscribed twice is two subscriptions
      const own = (key: string, generation: number) => listener(key, generation)
      listeners.add(own)
      const unsubscribe = () => {
        if (listeners.delete(own)) stopped()
      }
      if (notify === 'poll') {
        startPolling()
        return unsubscribe
      }
      try {
        await subscribed()
      } catch (err) {
        unsubscribe()
        if (closed) throw new BoundError('ERR_CLOSED', 'RedisTokenStore.subscribe: the store was closed while subscribing')
        throw new BoundError('ERR_NETWORK', `RedisTokenStore.subscribe: could not subscribe to ${channel}: ${String((err as Error | undefined)?.message ?? err)}`, { cause: err })
      }
      if (!listeners.has(own)) {
        // closed (or stopped) while the subscription was being made
        throw new BoundError('ERR_CLOSED', 'RedisTokenStore.subscribe: the store was closed while subscribing')
      }
      return unsubscribe
    },
    async close() {
      closed = true
      listeners.clear()
      stopPolling()
      dropSubscriber()
    },
  }
}
