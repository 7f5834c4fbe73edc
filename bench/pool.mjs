// What maxConnectionsPerOrigin should default to (issue 14): the bound fetch over HTTPS (HTTP/1.1
// keep-alive, a TLS server in a child process) with 8, 16, 32, 64, 128 connections per origin and
// no bound, in three settings: an idle machine; one CPU-burning process per core; and an idle
// machine with a server that answers after 5 ms (loopback has no round trip to speak of, and a
// connection carries one request at a time: this is where few connections cost throughput):
//   - cold burst: a fresh transport and 1,000 concurrent first requests — time to complete them all,
//     failures, and the connections (TLS handshakes) the server saw;
//   - sustained: 256 concurrent callers on a warm pool — requests/s and p99.
// Rounds are interleaved (every size once per round, in a rotating order) and each size is reported
// as the median over rounds of its ratio to 64 connections (the default) in the same round, with
// the quartiles, since the machine is noisy.   node bench/pool.mjs [--quick]
import { burnCpu, cleanup, coldBurst, median, ratio, startTlsServer, sustained, sum } from './support.mjs'

const quick = process.argv.includes('--quick')
const ROUNDS = quick ? 1 : 7
const SECONDS = quick ? 0.5 : 1.5
const BURST = 1000
const CONCURRENCY = 256
const SIZES = [8, 16, 32, 64, 128, Infinity]
const BASELINE = 64
const label = (n) => (n === Infinity ? 'no bound' : String(n))

const SETTINGS = {
  idle: { title: 'idle machine', load: false, delay: 0 },
  loaded: { title: 'loaded machine (one CPU-burning process per core)', load: true, delay: 0 },
  slow: { title: 'idle machine, the server answers after 5 ms', load: false, delay: 5 },
}

const server = await startTlsServer()
const urlOf = (setting) => `${server.origin}/orders/42?page=1${setting.delay ? `&delay=${setting.delay}` : ''}`
const options = (n) => ({ ca: server.ca, proxy: false, maxConnectionsPerOrigin: n })

// results[setting][size] = { cold: [], warm: [] }
const results = {}
for (const setting of Object.keys(SETTINGS)) for (const n of SIZES) (results[setting] ??= {})[n] = { cold: [], warm: [] }

// one unmeasured pass: JIT, TLS, the server's first connections
for (const n of [8, Infinity]) await coldBurst(server, urlOf(SETTINGS.idle), options(n), 200)

for (let round = 0; round < ROUNDS; round++) {
  const order = SIZES.map((_, i) => SIZES[(i + round) % SIZES.length])
  for (const [name, setting] of Object.entries(SETTINGS)) {
    const url = urlOf(setting)
    const burner = setting.load ? await burnCpu() : undefined
    try {
      for (const n of order) results[name][n].cold.push(await coldBurst(server, url, options(n), BURST))
      for (const n of order) results[name][n].warm.push(await sustained(url, options(n), CONCURRENCY, SECONDS))
    } finally {
      await burner?.stop()
    }
  }
  process.stdout.write(`round ${round + 1}/${ROUNDS} done\n`)
}

for (const [name, bySize] of Object.entries(results)) {
  const base = bySize[BASELINE]
  console.log(`\n${SETTINGS[name].title} — median of ${ROUNDS} rounds; ratios to ${BASELINE} connections in the same round (quartiles)`)
  console.log(`  cold burst of ${BURST.toLocaleString('en-US')} first requests on a fresh transport:`)
  console.log(`    ${'connections'.padEnd(11)} ${'time'.padStart(8)}  ${'time ratio'.padEnd(20)} ${'p99'.padStart(8)}  ${'handshakes'.padStart(10)}  ${'most open'.padStart(9)}  failures`)
  for (const n of SIZES) {
    const xs = bySize[n].cold
    const ratios = xs.map((x, i) => x.ms / base.cold[i].ms)
    console.log(`    ${label(n).padEnd(11)} ${`${Math.round(median(xs.map((x) => x.ms)))} ms`.padStart(8)}  ${ratio(ratios).padEnd(20)} ${`${Math.round(median(xs.map((x) => x.p99)))} ms`.padStart(8)}  ${String(median(xs.map((x) => x.connections))).padStart(10)}  ${String(median(xs.map((x) => x.maxOpen))).padStart(9)}  ${sum(xs.map((x) => x.failures))}`)
  }
  console.log(`  sustained, ${CONCURRENCY} concurrent callers on a warm pool (${SECONDS} s each):`)
  console.log(`    ${'connections'.padEnd(11)} ${'req/s'.padStart(8)}  ${'req/s ratio'.padEnd(20)} ${'p99'.padStart(8)}  failures`)
  for (const n of SIZES) {
    const xs = bySize[n].warm
    const ratios = xs.map((x, i) => x.rps / base.warm[i].rps)
    console.log(`    ${label(n).padEnd(11)} ${Math.round(median(xs.map((x) => x.rps))).toLocaleString('en-US').padStart(8)}  ${ratio(ratios).padEnd(20)} ${`${median(xs.map((x) => x.p99)).toFixed(1)} ms`.padStart(8)}  ${sum(xs.map((x) => x.failures))}`)
  }
}

server.close()
await cleanup()
