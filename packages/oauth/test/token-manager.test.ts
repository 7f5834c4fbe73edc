import { describe, expect, it } from 'vitest'
import { createBoundToken, createTokenManager } from '../src/index.js'

function harness(lifetimeMs = 100_000) {
  let now = 1_000_000
  let earned = 0
  let gate: Promise<void> = Promise.resolve()
  const manager = createTokenManager({
    clock: { now: () => now },
    random: () => 0.5,
    async earn(cacheKey, generation) {
      earned++
      await gate
      return createBoundToken({ value: `tok-${earned}`, type: 'DPoP', receivedAt: now, expiresAt: now + lifetimeMs, lifetimeAssumed: false, scope: undefined, cacheKey, generation, binding: {} })
    },
  })
  return {
    manager,
    get earned() { return earned },
    advance: (ms: number) => { now += ms },
    hold() { let release!: () => void; gate = new Promise((r) => { release = r }); return () => { release(); gate = Promise.resolve() } },
  }
}

describe('token manager', () => {
  it('GRANT-07: 1,000 concurrent first calls share one token request', async () => {
    const h = harness()
    const release = h.hold()
    const all = Promise.all(Array.from({ length: 1000 }, () => h.manager.get('k')))
    release()
    const tokens = await all
    expect(h.earned).toBe(1)
    expect(new Set(tokens.map((t) => t.value))).toEqual(new Set(['tok-1']))
  })
  it('refreshes ahead in the background while callers keep the current token', async () => {
    const h = harness(100_000)
    await h.manager.get('k')
    h.advance(60_000) // 40% left: not yet
    expect((await h.manager.get('k')).value).toBe('tok-1')
    expect(h.earned).toBe(1)
    h.advance(20_000) // 20% left, past the 25% + jitter point
    const release = h.hold()
    expect((await h.manager.get('k')).value).toBe('tok-1') // served at once
    expect(h.earned).toBe(2)
    release()
    await new Promise((r) => setImmediate(r))
    expect((await h.manager.get('k')).value).toBe('tok-2')
  })
  it('never serves a token past its expiry (minus the skew)', async () => {
    const h = harness(10_000)
    await h.manager.get('k')
    h.advance(9_000)
    expect((await h.manager.get('k')).value).toBe('tok-2')
  })
  it('invalidate drops only the generation it names (stale invalid_token cannot drop a newer token)', async () => {
    const h = harness()
    const first = await h.manager.get('k')
    expect(h.manager.invalidate(first)).toBe(true)
    const second = await h.manager.get('k')
    expect(h.manager.invalidate(first)).toBe(false)
    expect((await h.manager.get('k')).value).toBe(second.value)
  })
  it('100 concurrent invalidations of the same generation cause one new token', async () => {
    const h = harness()
    const first = await h.manager.get('k')
    const release = h.hold()
    const all = Promise.all(Array.from({ length: 100 }, () => { h.manager.invalidate(first); return h.manager.get('k') }))
    release()
    await all
    expect(h.earned).toBe(2)
  })
  it('an aborted wait rejects promptly with the reason, and the shared request still completes for others', async () => {
    const h = harness()
    const release = h.hold()
    const ac = new AbortController()
    const waiting = h.manager.get('k', ac.signal)
    const other = h.manager.get('k')
    ac.abort(new Error('caller gave up'))
    await expect(waiting).rejects.toThrow('caller gave up')
    release()
    expect((await other).value).toBe('tok-1')
  })
  it('tokens never show their value when logged or serialised', async () => {
    const h = harness()
    const t = await h.manager.get('k')
    const { inspect } = await import('node:util')
    expect(JSON.stringify(t)).not.toContain('tok-1')
    expect(inspect(t)).not.toContain('tok-1')
    expect(`${Object.values(t).join()}`).not.toContain('tok-1')
    expect(t.value).toBe('tok-1')
  })
})
