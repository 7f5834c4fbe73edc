import { afterEach, describe, expect, it, vi } from 'vitest'
import { systemClock } from '@bound/core'
import { createBoundToken, createTokenManager } from '../src/internal.js'

function harness(lifetimeMs = 100_000) {
  let now = 1_000_000
  let earned = 0
  let gate: Promise<void> = Promise.resolve()
  const manager = createTokenManager({
    clock: { now: () => now },
    random: () => 0.5,
    async earn(cacheKey, _params, { generation }) {
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
    const all = Promise.all(Array.from({ length: 1000 }, () => h.manager.get('k', {})))
    release()
    const tokens = await all
    expect(h.earned).toBe(1)
    expect(new Set(tokens.map((t) => t.value))).toEqual(new Set(['tok-1']))
  })
  it('refreshes ahead in the background (past the refresh point) while callers keep the current token', async () => {
    const h = harness(100_000) // random 0.5: an on-demand token refreshes at 75% × (1 − 0.9 × 0.5) ≈ 41% of its lifetime
    await h.manager.get('k', {})
    h.advance(40_000)
    expect((await h.manager.get('k', {})).value).toBe('tok-1')
    expect(h.earned).toBe(1)
    h.advance(2_000)
    const release = h.hold()
    expect((await h.manager.get('k', {})).value).toBe('tok-1') // served at once
    expect(h.earned).toBe(2)
    release()
    await new Promise((r) => setImmediate(r))
    expect((await h.manager.get('k', {})).value).toBe('tok-2')
  })
  it('never serves a token past its expiry (minus the skew)', async () => {
    const h = harness(10_000)
    await h.manager.get('k', {})
    h.advance(9_000)
    expect((await h.manager.get('k', {})).value).toBe('tok-2')
  })
  it('invalidate drops only the generation it names (stale invalid_token cannot drop a newer token)', async () => {
    const h = harness()
    const first = await h.manager.get('k', {})
    expect(h.manager.invalidate(first)).toBe(true)
    const second = await h.manager.get('k', {})
    expect(h.manager.invalidate(first)).toBe(false)
    expect((await h.manager.get('k', {})).value).toBe(second.value)
  })
  it('100 concurrent invalidations of the same generation cause one new token', async () => {
    const h = harness()
    const first = await h.manager.get('k', {})
    const release = h.hold()
    const all = Promise.all(Array.from({ length: 100 }, () => { h.manager.invalidate(first); return h.manager.get('k', {}) }))
    release()
    await all
    expect(h.earned).toBe(2)
  })
  it('an aborted wait rejects promptly with the reason, and the shared request still completes for others', async () => {
    const h = harness()
    const release = h.hold()
    const ac = new AbortController()
    const waiting = h.manager.get('k', {}, ac.signal)
    const other = h.manager.get('k', {})
    ac.abort(new Error('caller gave up'))
    await expect(waiting).rejects.toThrow('caller gave up')
    release()
    expect((await other).value).toBe('tok-1')
  })
  it('tokens never show their value when logged or serialised', async () => {
    const h = harness()
    const t = await h.manager.get('k', {})
    const { inspect } = await import('node:util')
    expect(JSON.stringify(t)).not.toContain('tok-1')
    expect(inspect(t)).not.toContain('tok-1')
    expect(`${Object.values(t).join()}`).not.toContain('tok-1')
    expect(t.value).toBe('tok-1')
  })
})

describe('token manager back-off (GRANT-09)', () => {
  function failing(lifetimeMs = 100_000) {
    let now = 1_000_000
    let calls = 0
    let fail: (() => unknown) | undefined
    const manager = createTokenManager({
      clock: { now: () => now },
      random: () => 1, // the ceiling of the full-jitter window, so the schedule is exact
      backoff: { initialMs: 1_000, maxMs: 60_000 },
      async earn(cacheKey, _params, { generation }) {
        calls++
        if (fail) throw fail()
        return createBoundToken({ value: `tok-${calls}`, type: 'DPoP', receivedAt: now, expiresAt: now + lifetimeMs, lifetimeAssumed: false, scope: undefined, cacheKey, generation, binding: {} })
      },
    })
    return { manager, get calls() { return calls }, advance: (ms: number) => { now += ms }, failWith: (f?: () => unknown) => { fail = f } }
  }
  const settle = () => new Promise((r) => setImmediate(r))

  it('a failing background refresh is not retried before Retry-After, and every caller keeps the valid token', async () => {
    const { TokenEndpointError } = await import('@bound/core')
    const h = failing()
    await h.manager.get('k', {})
    h.advance(80_000) // inside the refresh window
    h.failWith(() => new TokenEndpointError({ error: 'temporarily_unavailable', status: 503, retryAfter: 120 }))
    for (let i = 0; i < 200; i++) {
      expect((await h.manager.get('k', {})).value).toBe('tok-1')
      await settle()
    }
    expect(h.calls).toBe(2) // the first token, and one refresh attempt
    h.advance(15_000) // still inside Retry-After (and the token is still valid)
    await h.manager.get('k', {})
    expect(h.calls).toBe(2)
  })

  it('without a valid token, callers during the back-off fail fast with ERR_TOKEN_UNAVAILABLE carrying the cause', async () => {
    const h = failing()
    h.failWith(() => new Error('connect ECONNREFUSED'))
    await expect(h.manager.get('k', {})).rejects.toThrow('ECONNREFUSED')
    const err = await h.manager.get('k', {}).catch((e: unknown) => e)
    expect(err).toMatchObject({ code: 'ERR_TOKEN_UNAVAILABLE', cause: expect.objectContaining({ message: 'connect ECONNREFUSED' }) })
    expect(h.calls).toBe(1)
    h.advance(1_001)
    h.failWith(undefined)
    expect((await h.manager.get('k', {})).value).toBe('tok-2') // recovers by itself
  })

  it('the back-off ceiling doubles per failure and is capped', async () => {
    const h = failing()
    h.failWith(() => new Error('down'))
    const waits: number[] = []
    for (let i = 0; i < 9; i++) {
      await h.manager.get('k', {}).catch(() => {})
      const err = await h.manager.get('k', {}).catch((e: unknown) => e) as Error
      waits.push(Number(/next attempt in (\d+) s/.exec(err.message)?.[1]))
      h.advance(waits.at(-1)! * 1000)
    }
    expect(waits).toEqual([1, 2, 4, 8, 16, 32, 60, 60, 60])
  })

  it('accept(): a held token the session no longer accepts (rotated key) is neither served nor cached', async () => {
    let current = 'A'
    let n = 0
    const manager = createTokenManager({
      clock: { now: () => 0 },
      accept: (t) => t.binding.jkt === current,
      async earn(cacheKey, _params, { generation }) {
        n++
        return createBoundToken({ value: `t${n}`, type: 'DPoP', receivedAt: 0, expiresAt: 100_000, lifetimeAssumed: false, scope: undefined, cacheKey, generation, binding: { jkt: current } })
      },
    })
    expect((await manager.get('k', {})).value).toBe('t1')
    current = 'B'
    expect((await manager.get('k', {})).binding.jkt).toBe('B')
    expect(manager.held().map((t) => t.binding.jkt)).toEqual(['B'])
  })
})


describe('refresh schedule (fake timers)', () => {
  afterEach(() => {
    vi.useRealTimers()
  })
  function timed(lifetimeMs: number, random: () => number, refresh = {}) {
    let earned = 0
    const manager = createTokenManager({
      clock: systemClock,
      random,
      refresh,
      async earn(cacheKey, _params, { generation }) {
        earned++
        const now = Date.now()
        return createBoundToken({ value: `tok-${earned}`, type: 'DPoP', receivedAt: now, expiresAt: now + lifetimeMs, lifetimeAssumed: false, scope: undefined, cacheKey, generation, binding: {} })
      },
    })
    return { manager, get earned() { return earned } }
  }

  it.each([[0, 0.75], [0.999999, 0.75 * (1 - 0.9 * 0.999999)]])('a token earned on demand refreshes at 75%% of its lifetime minus up to 90%% of that (random %s → %s)', async (r, share) => {
    vi.useFakeTimers({ now: 1_000_000 })
    const h = timed(100_000, () => r)
    await h.manager.get('k', {})
    expect(h.manager.refreshAt('k')).toBeCloseTo(1_000_000 + 100_000 * share, 0)
  })

  it('a scheduled refresh fires from a timer for a token in use, and the next one is at 73.5–75% (steady jitter)', async () => {
    vi.useFakeTimers({ now: 0 })
    const h = timed(100_000, () => 1 - 1e-9)
    await h.manager.get('k', {}) // used
    const first = h.manager.refreshAt('k')!
    expect(first).toBeCloseTo(100_000 * 0.75 * 0.1, -1)
    await vi.advanceTimersByTimeAsync(first - 1)
    expect(h.earned).toBe(1)
    await vi.advanceTimersByTimeAsync(2)
    expect(h.earned).toBe(2) // no caller was waiting: the timer did it
    const next = h.manager.refreshAt('k')! - Date.now()
    expect(next).toBeGreaterThanOrEqual(100_000 * 0.75 * 0.98 - 2)
    expect(next).toBeLessThanOrEqual(100_000 * 0.75)
  })

  it('an idle token (not used since it was earned) is not kept warm by timers', async () => {
    vi.useFakeTimers({ now: 0 })
    const h = timed(10_000, () => 0)
    await h.manager.get('k', {})
    await vi.advanceTimersByTimeAsync(8_000) // first refresh, token was used once
    expect(h.earned).toBe(2)
    await vi.advanceTimersByTimeAsync(60_000) // nobody asked since: no more refreshes
    expect(h.earned).toBe(2)
  })

  it('the lead has a floor (minAheadMs, at most half the lifetime)', async () => {
    vi.useFakeTimers({ now: 0 })
    const h = timed(8_000, () => 0) // 25% of 8 s = 2 s < the 4 s floor (min(5 s, 8 s / 2))
    await h.manager.get('k', {})
    expect(h.manager.refreshAt('k')).toBe(4_000)
  })

  it('timers do not keep the process alive (unref)', async () => {
    const h = timed(100_000, () => 0)
    const spy = vi.spyOn(globalThis, 'setTimeout')
    await h.manager.get('k', {})
    const handle = spy.mock.results.at(-1)?.value as NodeJS.Timeout
    expect(handle.hasRef()).toBe(false)
    h.manager.close()
    spy.mockRestore()
  })

  it('a token that expires no later than the one held makes the manager back off instead of looping', async () => {
    vi.useFakeTimers({ now: 0 })
    let earned = 0
    const fixedExpiry = 10_000
    const manager = createTokenManager({
      clock: systemClock,
      random: () => 0,
      async earn(cacheKey, _params, { generation }) {
        earned++
        return createBoundToken({ value: `t${earned}`, type: 'DPoP', receivedAt: Date.now(), expiresAt: fixedExpiry, lifetimeAssumed: false, scope: undefined, cacheKey, generation, binding: {} })
      },
    })
    await manager.get('k', {})
    for (let i = 0; i < 50; i++) {
      await manager.get('k', {}).catch(() => {})
      await vi.advanceTimersByTimeAsync(100)
    }
    expect(earned).toBeLessThan(6)
  })
})
