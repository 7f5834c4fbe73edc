// The TokenStore contract (packages/oauth/src/token-store.ts), as tests any engine runs:
// describeTokenStoreContract('my engine', async () => ({ a, b, close })) where `a` and `b` are two
// handles onto the same, empty storage — two processes of a fleet (for a networked engine, two
// clients with their own connections).
import { randomBytes } from 'node:crypto'
import { afterEach, describe, expect, it } from 'vitest'
import type { TokenStore } from '@bound/oauth'

export interface StorePair {
  /** One process's store. */
  a: TokenStore
  /** Another process's store on the same storage. */
  b: TokenStore
  /** Releases what the pair holds (connections, subscriptions). */
  close?(): Promise<void>
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
/** A key as Bound passes them: a hash (base64url), so it holds no secret. */
const newKey = () => randomBytes(32).toString('base64url')
/** A value as Bound passes them: sealed text. */
const sealed = (n = 48) => `v1.${randomBytes(n).toString('base64url')}`

/** The events a listener received, and a way to wait for one. */
function recorder() {
  const events: [string, number][] = []
  const waiters: { match: (k: string, g: number) => boolean; resolve: () => void }[] = []
  const listener = (key: string, generation: number) => {
    events.push([key, generation])
    for (const w of [...waiters]) {
      if (w.match(key, generation)) {
        waiters.splice(waiters.indexOf(w), 1)
        w.resolve()
      }
    }
  }
  const waitFor = (key: string, generation: number, ms = 3000) =>
    new Promise<void>((resolve, reject) => {
      if (events.some(([k, g]) => k === key && g === generation)) return resolve()
      const timer = setTimeout(() => reject(new Error(`no announcement of (${key.slice(0, 8)}…, ${generation}) within ${ms} ms; got ${JSON.stringify(events)}`)), ms)
      waiters.push({ match: (k, g) => k === key && g === generation, resolve: () => (clearTimeout(timer), resolve()) })
    })
  return { events, listener, waitFor, of: (key: string) => events.filter(([k]) => k === key).map(([, g]) => g) }
}

export function describeTokenStoreContract(name: string, makeStores: () => Promise<StorePair>): void {
  describe(`TokenStore contract: ${name}`, () => {
    const open: StorePair[] = []
    afterEach(async () => {
      await Promise.all(open.splice(0).map((p) => p.close?.()))
    })
    const stores = async () => {
      const pair = await makeStores()
      open.push(pair)
      return pair
    }

    describe('records', () => {
      it('get of a key never written is undefined; a written record reads back verbatim, from the other store too', async () => {
        const { a, b } = await stores()
        const key = newKey()
        expect(await a.get(key)).toBeUndefined()
        const value = `${sealed(3000)}.é✓` // long and not ASCII
        expect(await a.put(key, { value, generation: 1 }, 60_000)).toBe(true)
        expect(await a.get(key)).toEqual({ value, generation: 1 })
        expect(await b.get(key)).toEqual({ value, generation: 1 })
        expect(await b.get(newKey())).toBeUndefined()
      })

      it('put is compare-and-set on the generation: a lower or equal one is refused, a higher one replaces', async () => {
        const { a, b } = await stores()
        const key = newKey()
        const v5 = sealed()
        expect(await a.put(key, { value: v5, generation: 5 }, 60_000)).toBe(true)
        expect(await b.put(key, { value: sealed(), generation: 5 }, 60_000)).toBe(false)
        expect(await b.put(key, { value: sealed(), generation: 4 }, 60_000)).toBe(false)
        expect(await a.get(key)).toEqual({ value: v5, generation: 5 })
        const v6 = sealed()
        expect(await b.put(key, { value: v6, generation: 6 }, 60_000)).toBe(true)
        expect(await a.get(key)).toEqual({ value: v6, generation: 6 })
        const big = 2 ** 40 + 1
        expect(await a.put(key, { value: v5, generation: big }, 60_000)).toBe(true)
        expect(await b.put(key, { value: v6, generation: big - 1 }, 60_000)).toBe(false)
        expect(await b.get(key)).toEqual({ value: v5, generation: big })
      })

      it('concurrent writers of generations 1…20 from two stores: the highest wins, whatever the order', async () => {
        const { a, b } = await stores()
        const key = newKey()
        const generations = Array.from({ length: 20 }, (_, i) => i + 1).sort(() => Math.random() - 0.5)
        const results = await Promise.all(generations.map((g, i) => (i % 2 ? a : b).put(key, { value: `v${g}`, generation: g }, 60_000).then((ok) => [g, ok] as const)))
        expect(results.find(([g]) => g === 20)?.[1]).toBe(true)
        expect(await a.get(key)).toEqual({ value: 'v20', generation: 20 })
      })

      it('records are independent per key', async () => {
        const { a } = await stores()
        const [k1, k2] = [newKey(), newKey()]
        expect(await a.put(k1, { value: 'one', generation: 9 }, 60_000)).toBe(true)
        expect(await a.put(k2, { value: 'two', generation: 1 }, 60_000)).toBe(true)
        expect(await a.get(k1)).toEqual({ value: 'one', generation: 9 })
        expect(await a.get(k2)).toEqual({ value: 'two', generation: 1 })
      })

      it('a record expires after its ttl; an expired record no longer blocks a lower generation', async () => {
        const { a, b } = await stores()
        const key = newKey()
        expect(await a.put(key, { value: sealed(), generation: 7 }, 150)).toBe(true)
        expect(await b.get(key)).toMatchObject({ generation: 7 })
        await sleep(350)
        expect(await b.get(key)).toBeUndefined()
        expect(await b.put(key, { value: 'again', generation: 1 }, 60_000)).toBe(true)
        expect(await a.get(key)).toEqual({ value: 'again', generation: 1 })
      })
    })

    describe('invalidate', () => {
      it('only at the exact generation, and only a live value: the tombstone keeps the generation, so an older or equal put is refused', async () => {
        const { a, b } = await stores()
        const key = newKey()
        expect(await a.invalidate(key, 1)).toBe(false) // nothing there
        const value = sealed()
        expect(await a.put(key, { value, generation: 3 }, 60_000)).toBe(true)
        expect(await b.invalidate(key, 2)).toBe(false)
        expect(await b.invalidate(key, 4)).toBe(false)
        expect(await a.get(key)).toEqual({ value, generation: 3 })
        expect(await b.invalidate(key, 3)).toBe(true)
        expect(await a.get(key)).toEqual({ value: '', generation: 3 })
        expect(await a.invalidate(key, 3)).toBe(false) // a tombstone already
        expect(await a.put(key, { value: sealed(), generation: 2 }, 60_000)).toBe(false) // a late writer of an older generation
        expect(await a.put(key, { value: sealed(), generation: 3 }, 60_000)).toBe(false)
        expect(await b.get(key)).toEqual({ value: '', generation: 3 })
        const next = sealed()
        expect(await a.put(key, { value: next, generation: 4 }, 60_000)).toBe(true)
        expect(await b.get(key)).toEqual({ value: next, generation: 4 })
      })

      it('the tombstone keeps the record’s expiry', async () => {
        const { a } = await stores()
        const key = newKey()
        expect(await a.put(key, { value: sealed(), generation: 2 }, 300)).toBe(true)
        expect(await a.invalidate(key, 2)).toBe(true)
        expect(await a.get(key)).toEqual({ value: '', generation: 2 })
        await sleep(500)
        expect(await a.get(key)).toBeUndefined()
      })
    })

    describe('leases', () => {
      it('exclusive: one owner at a time; the holder extends it; holdsLease tells who holds it', async () => {
        const { a, b } = await stores()
        const key = newKey()
        expect(await a.holdsLease(key, 'p1')).toBe(false)
        expect(await a.acquireLease(key, 'p1', 10_000)).toBe(true)
        expect(await b.acquireLease(key, 'p2', 10_000)).toBe(false)
        expect(await a.acquireLease(key, 'p1', 10_000)).toBe(true)
        expect(await b.holdsLease(key, 'p1')).toBe(true)
        expect(await b.holdsLease(key, 'p2')).toBe(false)
        // leases and records are separate: a record under the same key does not disturb the lease
        expect(await b.put(key, { value: sealed(), generation: 1 }, 10_000)).toBe(true)
        expect(await a.holdsLease(key, 'p1')).toBe(true)
        // another key's lease is another lease
        expect(await b.acquireLease(newKey(), 'p2', 10_000)).toBe(true)
      })

      it('of 20 concurrent claimants on two stores, exactly one gets it', async () => {
        const { a, b } = await stores()
        const key = newKey()
        const won = await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 ? a : b).acquireLease(key, `p${i}`, 10_000)))
        expect(won.filter(Boolean)).toHaveLength(1)
        expect(await a.holdsLease(key, `p${won.indexOf(true)}`)).toBe(true)
      })

      it('expires by itself (a holder that died is replaced once its ttl has passed); extending pushes the expiry', async () => {
        const { a, b } = await stores()
        const key = newKey()
        expect(await a.acquireLease(key, 'p1', 150)).toBe(true)
        await sleep(350)
        expect(await a.holdsLease(key, 'p1')).toBe(false)
        expect(await b.acquireLease(key, 'p2', 300)).toBe(true)
        await sleep(150)
        expect(await b.acquireLease(key, 'p2', 600)).toBe(true) // now held until ~750 ms
        await sleep(300) // past the first ttl (300 ms)
        expect(await a.acquireLease(key, 'p1', 10_000)).toBe(false)
        expect(await a.holdsLease(key, 'p2')).toBe(true)
      })

      it('released only by its owner', async () => {
        const { a, b } = await stores()
        const key = newKey()
        expect(await a.acquireLease(key, 'p1', 10_000)).toBe(true)
        await b.releaseLease(key, 'p2')
        expect(await b.holdsLease(key, 'p1')).toBe(true)
        expect(await b.acquireLease(key, 'p2', 10_000)).toBe(false)
        await a.releaseLease(key, 'p1')
        expect(await a.holdsLease(key, 'p1')).toBe(false)
        expect(await b.acquireLease(key, 'p2', 10_000)).toBe(true)
        await a.releaseLease(key, 'p1') // not the holder any more: no effect
        expect(await a.holdsLease(key, 'p2')).toBe(true)
        await b.releaseLease(newKey(), 'p2') // nothing held: no error
      })
    })

    describe('subscribe', () => {
      // The listening store reads the key first, as Bound holds only what it read or wrote (a
      // polling engine watches those keys).
      it('announces a put and an invalidate made by another store, with key and generation', async () => {
        const { a, b } = await stores()
        const key = newKey()
        const seen = recorder()
        const stop = await b.subscribe(seen.listener)
        try {
          expect(await b.get(key)).toBeUndefined()
          expect(await a.put(key, { value: sealed(), generation: 1 }, 60_000)).toBe(true)
          await seen.waitFor(key, 1)
          expect(await a.put(key, { value: sealed(), generation: 2 }, 60_000)).toBe(true)
          await seen.waitFor(key, 2)
          expect(await a.invalidate(key, 2)).toBe(true)
          await sleep(0)
          await expect.poll(() => seen.of(key).length, { timeout: 3000 }).toBe(3)
          expect(seen.of(key)).toEqual([1, 2, 2])
        } finally {
          stop()
        }
      })

      it('announces nothing for a refused put or invalidate', async () => {
        const { a, b } = await stores()
        const [key, other] = [newKey(), newKey()]
        const seen = recorder()
        const stop = await b.subscribe(seen.listener)
        try {
          await b.get(key)
          await b.get(other)
          expect(await a.put(key, { value: sealed(), generation: 5 }, 60_000)).toBe(true)
          await seen.waitFor(key, 5)
          expect(await a.put(key, { value: sealed(), generation: 3 }, 60_000)).toBe(false)
          expect(await a.invalidate(key, 4)).toBe(false)
          // a later change, announced after them: the refused writes would have come first
          expect(await a.put(other, { value: sealed(), generation: 1 }, 60_000)).toBe(true)
          await seen.waitFor(other, 1)
          await sleep(100)
          expect(seen.of(key)).toEqual([5])
        } finally {
          stop()
        }
      })

      it('every listener hears every change; unsubscribe stops delivery to that listener only', async () => {
        const { a, b } = await stores()
        const key = newKey()
        const first = recorder()
        const second = recorder()
        const stopFirst = await b.subscribe(first.listener)
        const stopSecond = await b.subscribe(second.listener)
        try {
          await b.get(key)
          expect(await a.put(key, { value: sealed(), generation: 1 }, 60_000)).toBe(true)
          await Promise.all([first.waitFor(key, 1), second.waitFor(key, 1)])
          stopFirst()
          stopFirst() // twice: harmless
          expect(await a.put(key, { value: sealed(), generation: 2 }, 60_000)).toBe(true)
          await second.waitFor(key, 2)
          await sleep(100)
          expect(first.of(key)).toEqual([1])
        } finally {
          stopSecond()
        }
      })

      it('after the last unsubscribe nothing is delivered; a new subscription works again', async () => {
        const { a, b } = await stores()
        const key = newKey()
        const old = recorder()
        ;(await b.subscribe(old.listener))()
        await b.get(key)
        expect(await a.put(key, { value: sealed(), generation: 1 }, 60_000)).toBe(true)
        const fresh = recorder()
        const stop = await b.subscribe(fresh.listener)
        try {
          await b.get(key)
          expect(await a.put(key, { value: sealed(), generation: 2 }, 60_000)).toBe(true)
          await fresh.waitFor(key, 2)
          await sleep(100)
          expect(old.events).toEqual([])
        } finally {
          stop()
        }
      })
    })
  })
}
