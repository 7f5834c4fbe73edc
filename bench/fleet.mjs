// A fleet of 10,000 sessions started in the same second, on a simulated clock, for one hour:
// token requests per second, peak-to-mean. Uses Bound's real token manager with simulated timers.
//   node bench/fleet.mjs [--quick]
import { createBoundToken, createTokenManager } from '@bound/oauth/internal'

const quick = process.argv.includes('--quick')
const SESSIONS = quick ? 2_000 : 10_000
const HOUR = 3600_000
const LIFETIME = 300_000 // 5-minute tokens
const LATENCY = 50 // ms per token request

// --- a discrete-event scheduler on a simulated clock ---
let now = 0
const heap = []
let seq = 0
const push = (at, fn) => {
  const ev = { at, seq: seq++, fn, cancelled: false }
  heap.push(ev)
  let i = heap.length - 1
  while (i > 0) {
    const p = (i - 1) >> 1
    if (less(heap[p], heap[i])) break
    ;[heap[p], heap[i]] = [heap[i], heap[p]]
    i = p
  }
  return ev
}
const less = (a, b) => a.at < b.at || (a.at === b.at && a.seq < b.seq)
const pop = () => {
  const top = heap[0]
  const last = heap.pop()
  if (heap.length > 0) {
    heap[0] = last
    let i = 0
    for (;;) {
      const l = 2 * i + 1
      const r = l + 1
      let m = i
      if (l < heap.length && less(heap[l], heap[m])) m = l
      if (r < heap.length && less(heap[r], heap[m])) m = r
      if (m === i) break
      ;[heap[m], heap[i]] = [heap[i], heap[m]]
      i = m
    }
  }
  return top
}
const timers = { setTimeout: (fn, ms) => push(now + ms, fn), clearTimeout: (ev) => { if (ev) ev.cancelled = true } }
const clock = { now: () => now }
const sleep = (ms) => new Promise((resolve) => push(now + ms, resolve))

// --- the fleet ---
const perSecond = new Map()
const firstPerSecond = new Map()
let requests = 0
let waits = 0
const JITTER = Number(process.argv.find((a) => a.startsWith('--jitter='))?.slice(9) ?? NaN)
for (let s = 0; s < SESSIONS; s++) {
  let waited = 0
  const manager = createTokenManager({
    clock,
    timers,
    ...(Number.isFinite(JITTER) ? { refresh: { jitter: JITTER } } : {}),
    async earn(cacheKey, _params, { generation: gen }) {
      requests++
      const second = Math.floor(now / 1000)
      const map = gen === 1 ? firstPerSecond : perSecond
      map.set(second, (map.get(second) ?? 0) + 1)
      await sleep(LATENCY)
      return createBoundToken({ value: `t${s}-${gen}`, type: 'DPoP', receivedAt: now, expiresAt: now + LIFETIME, lifetimeAssumed: false, scope: undefined, cacheKey, generation: gen, binding: {} })
    },
    onEvent(e) {
      if (e.type === 'wait' && ++waited > 1) waits++
      // the workload is busy: it uses each new token soon after it arrives
      if (e.type === 'refresh.scheduled') push(now + 1000, () => manager.get('api', {}).catch(() => {}))
    },
  })
  push(Math.random() * 1000, () => manager.get('api', {}).catch(() => {}))
}

const started = performance.now()
while (heap.length > 0) {
  const ev = pop()
  if (ev.at > HOUR) break
  now = ev.at
  if (ev.cancelled) continue
  ev.fn()
  await null // let promise continuations of this step run at this simulated time
  await null
}
const wall = (performance.now() - started) / 1000

const stats = (maps) => {
  const counts = new Array(3600).fill(0)
  for (const map of maps) for (const [sec, n] of map) if (sec < 3600) counts[sec] += n
  const total = counts.reduce((a, b) => a + b, 0)
  const peak = Math.max(...counts)
  return { total, mean: total / 3600, peak, ratio: peak / (total / 3600) }
}
const steady = stats([perSecond])
const all = stats([perSecond, firstPerSecond])
console.log(`${SESSIONS.toLocaleString('en-US')} sessions started within one second, ${LIFETIME / 1000} s tokens, one simulated hour (${wall.toFixed(1)} s of wall time)`)
console.log(`  refreshes (after each session's first token): ${steady.total.toLocaleString('en-US')}, mean ${steady.mean.toFixed(1)}/s, peak ${steady.peak}/s → peak-to-mean ${steady.ratio.toFixed(2)}`)
console.log(`  including the cold start (${SESSIONS.toLocaleString('en-US')} first tokens, demanded at once): peak ${all.peak}/s → peak-to-mean ${all.ratio.toFixed(2)}`)
console.log(`  callers that waited on a token after their first: ${waits}`)
console.log('\ntargets:')
console.log(`  ${steady.ratio <= 2 ? 'met ' : 'MISS'}  refresh peak-to-mean ≤ 2: ${steady.ratio.toFixed(2)}`)
console.log(`  ${waits === 0 ? 'met ' : 'MISS'}  no caller waits after the first token: ${waits}`)
