// @bound/redis on a real redis-server (the shared contract is test/token-store.test.ts): what lands
// in Redis, the options, the subscriber connection, and Redis killed, restarted, slow or stalled.
import { randomBytes } from 'node:crypto'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { createClient, type RedisClientType } from 'redis'
import { isBoundError } from '@bound/core'
import { createRedisTokenStore, type RedisClientLike, type RedisTokenStore } from '../src/index.js'
import { startRedisServer, type RedisServer } from '../../../test/support/redis-server.js'
import { startLatencyProxy, type LatencyProxy } from '../../../test/support/latency-proxy.js'

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
const newKey = () => randomBytes(32).toString('base64url')

const servers: RedisServer[] = []
const proxies: LatencyProxy[] = []
const clients: RedisClientType[] = []
const stores: RedisTokenStore[] = []
const unhandled: unknown[] = []
const onUnhandled = (reason: unknown) => void unhandled.push(reason)

beforeAll(() => {
  process.on('unhandledRejection', onUnhandled)
})
afterEach(async () => {
  await Promise.all(stores.splice(0).map((s) => s.close()))
  for (const c of clients.splice(0)) c.destroy()
  await Promise.all(proxies.splice(0).map((p) => p.close()))
  expect(unhandled).toEqual([])
})
afterAll(async () => {
  process.off('unhandledRejection', onUnhandled)
  await Promise.all(servers.splice(0).map((s) => s.stop()))
})

async function server() {
  const s = await startRedisServer()
  servers.push(s)
  return s
}
/** A client as the README recommends: commands fail at once while Redis is down, reconnects quickly. */
async function client(port: number, errors: unknown[] = []): Promise<RedisClientType> {
  const c: RedisClientType = createClient({ socket: { host: '127.0.0.1', port, connectTimeout: 1000, reconnectStrategy: (retries: number) => Math.min(50 * (retries + 1), 200) }, disableOfflineQueue: true })
  c.on('error', (err: unknown) => void errors.push(err))
  clients.push(c)
  await c.connect()
  return c
}
function store(options: Parameters<typeof createRedisTokenStore>[0]) {
  const s = createRedisTokenStore(options)
  stores.push(s)
  return s
}
/** Settles within `ms`, or says it did not: every call in these tests is bounded. */
async function within<T>(ms: number, p: Promise<T>): Promise<{ ok: true; value: T } | { ok: false; error: unknown } | 'pending'> {
  const guarded = p.then(
    (value) => ({ ok: true as const, value }),
    (error: unknown) => ({ ok: false as const, error }),
  )
  return Promise.race([guarded, sleep(ms).then(() => 'pending' as const)])
}
async function until(check: () => Promise<boolean> | boolean, ms = 5000) {
  const deadline = Date.now() + ms
  while (!(await Promise.resolve().then(check).catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`not within ${ms} ms`)
    await sleep(25)
  }
}

describe('@bound/redis: what Redis holds', () => {
  let redis: RedisServer
  beforeAll(async () => {
    redis = await server()
  })

  it('only <prefix>rec:<key> (a hash: generation g, sealed value v) and <prefix>lease:<key> (the owner), both expiring; changes as "<generation> <key>" on <prefix>changes', async () => {
    const admin = await client(redis.port)
    await admin.sendCommand(['FLUSHALL'])
    const s = store({ client: await client(redis.port) })
    const messages: string[] = []
    const listener = admin.duplicate()
    listener.on('error', () => {})
    clients.push(listener)
    await listener.connect()
    await listener.subscribe('bound:changes', (m) => void messages.push(m))

    const [key, other] = [newKey(), newKey()]
    expect(await s.put(key, { value: 'v1.sealed', generation: 3 }, 60_000)).toBe(true)
    expect(await s.put(other, { value: 'v1.other', generation: 1 }, 60_000)).toBe(true)
    expect(await s.invalidate(other, 1)).toBe(true)
    expect(await s.acquireLease(key, 'owner-1', 30_000)).toBe(true)

    const keys = ((await admin.sendCommand(['KEYS', '*'])) as string[]).sort()
    expect(keys).toEqual([`bound:lease:${key}`, `bound:rec:${key}`, `bound:rec:${other}`].sort())
    const hash = async (k: string) => Object.fromEntries(((await admin.sendCommand(['HMGET', k, 'g', 'v'])) as string[]).map((v, i) => [['g', 'v'][i], v]))
    expect(await admin.sendCommand(['HLEN', `bound:rec:${key}`])).toBe(2)
    expect(await hash(`bound:rec:${key}`)).toEqual({ g: '3', v: 'v1.sealed' })
    expect(await hash(`bound:rec:${other}`)).toEqual({ g: '1', v: '' })
    expect(await admin.sendCommand(['GET', `bound:lease:${key}`])).toBe('owner-1')
    for (const k of keys) {
      const pttl = (await admin.sendCommand(['PTTL', k])) as number
      expect(pttl).toBeGreaterThan(0)
      expect(pttl).toBeLessThanOrEqual(60_000)
    }
    // the tombstone kept the expiry
    expect((await admin.sendCommand(['PTTL', `bound:rec:${other}`])) as number).toBeGreaterThan(50_000)
    await until(() => messages.length === 3)
    expect(messages).toEqual([`3 ${key}`, `1 ${other}`, `1 ${other}`])
    await s.releaseLease(key, 'owner-1')
    expect(await admin.sendCommand(['EXISTS', `bound:lease:${key}`])).toBe(0)
  })

  it('keyPrefix applies to every key and the channel', async () => {
    const admin = await client(redis.port)
    await admin.sendCommand(['FLUSHALL'])
    const s = store({ client: await client(redis.port), keyPrefix: 'app1:bound:' })
    const key = newKey()
    await s.put(key, { value: 'x', generation: 1 }, 60_000)
    await s.acquireLease(key, 'o', 60_000)
    const heard: [string, number][] = []
    const stop = await s.subscribe((k, g) => void heard.push([k, g]))
    expect(await admin.sendCommand(['PUBSUB', 'CHANNELS'])).toEqual(['app1:bound:changes'])
    await s.put(key, { value: 'y', generation: 2 }, 60_000)
    await until(() => heard.length === 1)
    expect(heard).toEqual([[key, 2]])
    stop()
    expect(((await admin.sendCommand(['KEYS', '*'])) as string[]).sort()).toEqual([`app1:bound:lease:${key}`, `app1:bound:rec:${key}`])
  })

  it('works after SCRIPT FLUSH (EVALSHA falls back to EVAL on NOSCRIPT)', async () => {
    const admin = await client(redis.port)
    const s = store({ client: await client(redis.port), keyPrefix: `t${randomBytes(4).toString('hex')}:` })
    const key = newKey()
    expect(await s.put(key, { value: 'a', generation: 1 }, 60_000)).toBe(true)
    await admin.sendCommand(['SCRIPT', 'FLUSH'])
    expect(await s.put(key, { value: 'b', generation: 2 }, 60_000)).toBe(true)
    await admin.sendCommand(['SCRIPT', 'FLUSH'])
    expect(await s.acquireLease(key, 'o', 60_000)).toBe(true)
    expect(await s.get(key)).toEqual({ value: 'b', generation: 2 })
  })
})

describe('@bound/redis: options and arguments', () => {
  const fake: RedisClientLike = { sendCommand: async () => null, duplicate: () => ({ connect: async () => undefined, subscribe: async () => undefined, on: () => undefined, destroy: () => undefined }) }
  const invalid = (f: () => unknown, message: RegExp) => {
    let caught: unknown
    try {
      f()
    } catch (err) {
      caught = err
    }
    expect(isBoundError(caught) && caught.code).toBe('ERR_INVALID_CONFIG')
    expect((caught as Error).message).toMatch(message)
  }

  it('a client without sendCommand, a client without duplicate for pub/sub, a bad option: ERR_INVALID_CONFIG that says what is wrong', () => {
    invalid(() => createRedisTokenStore(undefined as never), /options are required/)
    invalid(() => createRedisTokenStore({} as never), /createRedisTokenStore: client: must be a node-redis client .*no sendCommand/)
    invalid(() => createRedisTokenStore({ client: { get: () => null } as never }), /no sendCommand/)
    invalid(() => createRedisTokenStore({ client: { sendCommand: fake.sendCommand } }), /no duplicate\(\).*notify: 'poll'/)
    invalid(() => createRedisTokenStore({ client: fake, keyPrefix: '' }), /keyPrefix: must not be empty/)
    invalid(() => createRedisTokenStore({ client: fake, notify: 'keyspace' as never }), /notify: must be 'pubsub' or 'poll'/)
    invalid(() => createRedisTokenStore({ client: fake, pollInterval: 100 } as never), /unknown option "pollInterval" — durations are in milliseconds: did you mean pollIntervalMs\?/)
    invalid(() => createRedisTokenStore({ client: fake, pollIntervalMs: 0 }), /pollIntervalMs: must be at least 10 ms/)
    expect(() => createRedisTokenStore({ client: { sendCommand: fake.sendCommand }, notify: 'poll' })).not.toThrow()
  })

  it('bad arguments reject with ERR_INVALID_INPUT, before anything is sent', async () => {
    const sent: string[][] = []
    const s = store({ client: { ...fake, sendCommand: async (args) => void sent.push(args) } })
    const code = (p: Promise<unknown>) => p.then(() => 'resolved', (e: unknown) => (isBoundError(e) ? e.code : String(e)))
    expect(await code(s.get(''))).toBe('ERR_INVALID_INPUT')
    expect(await code(s.put('k', { value: 'v', generation: 0 }, 1000))).toBe('ERR_INVALID_INPUT')
    expect(await code(s.put('k', { value: 'v', generation: 1.5 }, 1000))).toBe('ERR_INVALID_INPUT')
    expect(await code(s.put('k', { value: 'v', generation: 1 }, 0))).toBe('ERR_INVALID_INPUT')
    expect(await code(s.put('k', { value: 'v', generation: 1 }, Number.NaN))).toBe('ERR_INVALID_INPUT')
    expect(await code(s.invalidate('k', -1))).toBe('ERR_INVALID_INPUT')
    expect(await code(s.acquireLease('k', '', 1000))).toBe('ERR_INVALID_INPUT')
    expect(await code(s.acquireLease('k', 'o', 2.5))).toBe('ERR_INVALID_INPUT')
    expect(await code(s.subscribe('nope' as never))).toBe('ERR_INVALID_INPUT')
    expect(sent).toEqual([])
  })
})

describe('@bound/redis: the subscriber connection', () => {
  let redis: RedisServer
  beforeAll(async () => {
    redis = await server()
  })
  const subscribers = async (admin: RedisClientType, channel: string) => ((await admin.sendCommand(['PUBSUB', 'NUMSUB', channel])) as [string, number])[1]

  it('announces changes of keys this store never read (pub/sub reaches every key)', async () => {
    const keyPrefix = `t${randomBytes(4).toString('hex')}:`
    const a = store({ client: await client(redis.port), keyPrefix })
    const b = store({ client: await client(redis.port), keyPrefix })
    const heard: [string, number][] = []
    const stop = await b.subscribe((k, g) => void heard.push([k, g]))
    const key = newKey()
    await a.put(key, { value: 'v', generation: 4 }, 60_000)
    await until(() => heard.length === 1)
    expect(heard).toEqual([[key, 4]])
    stop()
  })

  it('one connection, made when the first listener comes, shared by every listener; closed when the last goes; the application’s client untouched', async () => {
    const keyPrefix = `t${randomBytes(4).toString('hex')}:`
    const channel = `${keyPrefix}changes`
    const admin = await client(redis.port)
    const own = await client(redis.port)
    const s = store({ client: own, keyPrefix })
    expect(await subscribers(admin, channel)).toBe(0)
    const stops = await Promise.all([1, 2, 3].map(() => s.subscribe(() => {})))
    expect(await subscribers(admin, channel)).toBe(1)
    stops[0]!()
    stops[1]!()
    expect(await subscribers(admin, channel)).toBe(1)
    stops[2]!()
    await until(async () => (await subscribers(admin, channel)) === 0)
    // again, and close(): the store's connection goes, the client it was given stays
    await s.subscribe(() => {})
    expect(await subscribers(admin, channel)).toBe(1)
    await s.close()
    await until(async () => (await subscribers(admin, channel)) === 0)
    expect(own.isReady).toBe(true)
    expect(await own.sendCommand(['PING'])).toBe('PONG')
    const closed = await s.subscribe(() => {}).then(() => 'resolved', (e: unknown) => (isBoundError(e) ? e.code : String(e)))
    expect(closed).toBe('ERR_CLOSED')
  })

  it('a listener that throws does not disturb the connection or the other listeners', async () => {
    const keyPrefix = `t${randomBytes(4).toString('hex')}:`
    const s = store({ client: await client(redis.port), keyPrefix })
    const thrown: unknown[] = []
    const onUncaught = (err: unknown) => void thrown.push(err)
    // vitest treats an uncaught exception as a failure: this one is expected, and caught here
    const previous = process.listeners('uncaughtException')
    process.removeAllListeners('uncaughtException')
    process.on('uncaughtException', onUncaught)
    try {
      const heard: number[] = []
      const stopBad = await s.subscribe(() => {
        throw new Error('listener bug')
      })
      const stopGood = await s.subscribe((_, g) => void heard.push(g))
      const key = newKey()
      await s.put(key, { value: 'v', generation: 1 }, 60_000)
      await s.put(key, { value: 'v', generation: 2 }, 60_000)
      await until(() => heard.length === 2)
      expect(heard).toEqual([1, 2])
      stopBad()
      stopGood()
    } finally {
      process.off('uncaughtException', onUncaught)
      for (const l of previous) process.on('uncaughtException', l)
    }
    expect(thrown.map((e) => (e as Error).message)).toContain('listener bug')
  })
})

describe('@bound/redis: Redis killed, restarted, slow, stalled', () => {
  it('killed: every call rejects within a couple of seconds (disableOfflineQueue), nothing is left unhandled; restarted on the same port: calls work again and the subscription resumes by itself', async () => {
    const redis = await server()
    const keyPrefix = `t${randomBytes(4).toString('hex')}:`
    const errorsA: unknown[] = []
    const ca = await client(redis.port, errorsA)
    const cb = await client(redis.port)
    const a = store({ client: ca, keyPrefix })
    const b = store({ client: cb, keyPrefix })
    const heard: [string, number][] = []
    const stop = await a.subscribe((k, g) => void heard.push([k, g]))
    const key = newKey()
    expect(await b.put(key, { value: 'v', generation: 1 }, 60_000)).toBe(true)
    await until(() => heard.length === 1)

    await redis.kill()
    const started = Date.now()
    const results = await Promise.all([
      within(3000, a.get(key)),
      within(3000, a.put(key, { value: 'v', generation: 2 }, 60_000)),
      within(3000, a.invalidate(key, 1)),
      within(3000, a.acquireLease(key, 'o', 1000)),
      within(3000, a.holdsLease(key, 'o')),
      within(3000, a.releaseLease(key, 'o')),
    ])
    expect(Date.now() - started).toBeLessThan(2500)
    expect(results.map((r) => typeof r === 'object' && r.ok)).toEqual([false, false, false, false, false, false])
    expect(errorsA.length).toBeGreaterThan(0) // the application's client reported it, to its own listener
    // a second listener joins the existing (reconnecting) subscriber connection at once
    const late: number[] = []
    const stopLate = await a.subscribe((_, g) => void late.push(g))

    await redis.restart()
    await until(() => ca.isReady && cb.isReady)
    // the subscriber connection reconnects and subscribes again by itself
    const admin = await client(redis.port)
    await until(async () => ((await admin.sendCommand(['PUBSUB', 'NUMSUB', `${keyPrefix}changes`])) as [string, number])[1] === 1)
    expect(await b.get(key)).toBeUndefined() // an empty Redis: it saves nothing
    expect(await b.put(key, { value: 'w', generation: 5 }, 60_000)).toBe(true)
    await until(() => heard.length === 2 && late.length === 1)
    expect(heard[1]).toEqual([key, 5])
    expect(late).toEqual([5])
    expect(await a.get(key)).toEqual({ value: 'w', generation: 5 })
    stop()
    stopLate()
  })

  it('subscribe while Redis is down (no subscriber connection yet) rejects with ERR_NETWORK and leaves nothing behind; once Redis is back a subscription works', async () => {
    const redis = await server()
    const keyPrefix = `t${randomBytes(4).toString('hex')}:`
    const ca = await client(redis.port)
    const a = store({ client: ca, keyPrefix })
    await redis.kill()
    for (let i = 0; i < 3; i++) {
      const r = await within(3000, a.subscribe(() => {}))
      expect(r).toMatchObject({ ok: false })
      const error = (r as { error: unknown }).error
      expect(isBoundError(error) && error.code).toBe('ERR_NETWORK')
    }
    await redis.restart()
    await until(() => ca.isReady)
    const admin = await client(redis.port)
    await sleep(300) // a leaked connection would have reconnected and subscribed by now
    expect(await admin.sendCommand(['PUBSUB', 'NUMSUB', `${keyPrefix}changes`])).toEqual([`${keyPrefix}changes`, 0])
    const heard: number[] = []
    const stop = await a.subscribe((_, g) => void heard.push(g))
    await a.put(newKey(), { value: 'v', generation: 1 }, 60_000)
    await until(() => heard.length === 1)
    stop()
  })

  it('slow (100 ms each way): correct, only slower; stalled: calls wait (Bound bounds them), and complete once it flows again; a client destroyed meanwhile rejects them', async () => {
    const redis = await server()
    const proxy = await startLatencyProxy(redis.port, { latencyMs: 100 })
    proxies.push(proxy)
    const keyPrefix = `t${randomBytes(4).toString('hex')}:`
    const c = await client(proxy.port)
    const s = store({ client: c, keyPrefix })
    const key = newKey()
    const t0 = Date.now()
    expect(await s.put(key, { value: 'v', generation: 2 }, 60_000)).toBe(true)
    expect(Date.now() - t0).toBeGreaterThanOrEqual(190)
    expect(await s.put(key, { value: 'v', generation: 1 }, 60_000)).toBe(false)

    proxy.setLatency(0)
    proxy.pause()
    const stalled = s.get(key)
    expect(await within(300, stalled)).toBe('pending')
    proxy.resume()
    expect(await within(2000, stalled)).toEqual({ ok: true, value: { value: 'v', generation: 2 } })

    proxy.pause()
    const abandoned = s.get(key) // as Bound abandons a call that ran out of time
    expect(await within(200, abandoned)).toBe('pending')
    c.destroy()
    expect(await within(1000, abandoned)).toMatchObject({ ok: false })
  })
})
