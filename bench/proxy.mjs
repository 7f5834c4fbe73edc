// The egress proxy's cost (issue 14): the bound fetch to a TLS server (a child process) directly,
// and through a loopback CONNECT proxy (the test suite's, in a child process of its own) under a
// name only the proxy resolves (api.bound.test: loopback destinations are never proxied):
//   - first request: a fresh transport, one request (TCP + CONNECT + TLS + the request), sequentially;
//   - cold burst: a fresh transport, 1,000 concurrent first requests (64 tunnels, 64 handshakes);
//   - sustained: 64 concurrent callers on a warm pool (the tunnels are up: the proxy only relays).
// Rounds interleave direct and proxied; each is reported as the median over rounds of the proxied
// ratio to direct in the same round, with the quartiles.   node bench/proxy.mjs [--quick]
import { boundClient, cleanup, coldBurst, median, ratio, startProxy, startTlsServer, sustained, sum } from './support.mjs'

const quick = process.argv.includes('--quick')
const ROUNDS = quick ? 2 : 9
const SECONDS = quick ? 0.5 : 1.5
const FIRSTS = quick ? 10 : 30
const BURST = 1000
const server = await startTlsServer()
const proxy = await startProxy()
const contenders = {
  direct: { url: `${server.origin}/orders/42?page=1`, options: { ca: server.ca, proxy: false } },
  'through the proxy': { url: `https://api.bound.test:${server.port}/orders/42?page=1`, options: { ca: server.ca, proxy: proxy.url } },
}

/** Median time of one request on a fresh transport, `FIRSTS` times in a row. */
async function firstRequest({ url, options }) {
  const times = []
  for (let i = 0; i < FIRSTS; i++) {
    const client = await boundClient(new URL(url).origin, options)
    const t0 = performance.now()
    const res = await client.fetch(url)
    await res.arrayBuffer()
    if (res.status !== 200) throw new Error(`status ${res.status}`)
    times.push(performance.now() - t0)
    await client.close()
  }
  return { ms: median(times) }
}
const measures = {
  first: firstRequest,
  cold: (c) => coldBurst(server, c.url, c.options, BURST),
  warm: (c) => sustained(c.url, c.options, 64, SECONDS),
}
const results = Object.fromEntries(Object.keys(measures).map((m) => [m, Object.fromEntries(Object.keys(contenders).map((k) => [k, []]))]))

for (const c of Object.values(contenders)) await coldBurst(server, c.url, c.options, 200)
for (let round = 0; round < ROUNDS; round++) {
  const order = round % 2 ? Object.keys(contenders).reverse() : Object.keys(contenders)
  for (const [m, measure] of Object.entries(measures)) for (const k of order) results[m][k].push(await measure(contenders[k]))
}

const [direct, proxied] = Object.keys(contenders)
console.log(`median of ${ROUNDS} interleaved rounds; the proxied ratio to direct in the same round (quartiles)`)
const line = (name, value, r) => console.log(`  ${name.padEnd(58)} ${value.padStart(24)}   proxy ÷ direct ${r}`)
const fmt = (xs, k, unit) => xs.map((x) => median(x.map((y) => y[k]))).map((v) => (unit === '/s' ? `${Math.round(v).toLocaleString('en-US')}/s` : `${v.toFixed(1)} ms`)).join(' vs ')
line(`first request on a fresh transport (median of ${FIRSTS})`, fmt([results.first[direct], results.first[proxied]], 'ms'), ratio(results.first[proxied].map((x, i) => x.ms / results.first[direct][i].ms)))
line(`cold burst of ${BURST.toLocaleString('en-US')} first requests, time to complete`, fmt([results.cold[direct], results.cold[proxied]], 'ms'), ratio(results.cold[proxied].map((x, i) => x.ms / results.cold[direct][i].ms)))
line(`sustained, 64 concurrent callers on a warm pool, req/s`, fmt([results.warm[direct], results.warm[proxied]], 'rps', '/s'), ratio(results.warm[proxied].map((x, i) => x.rps / results.warm[direct][i].rps)))
line(`sustained, 64 concurrent callers, p99`, fmt([results.warm[direct], results.warm[proxied]], 'p99'), ratio(results.warm[proxied].map((x, i) => x.p99 / results.warm[direct][i].p99)))
const failures = sum(Object.values(results.cold).flat().map((x) => x.failures)) + sum(Object.values(results.warm).flat().map((x) => x.failures))
console.log(`  failures: ${failures}`)
server.close()
proxy.close()
await cleanup()
