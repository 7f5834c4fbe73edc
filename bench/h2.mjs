// HTTP/2 against HTTP/1.1 keep-alive through the bound fetch (issue 14): the same TLS server in a
// child process speaks both (node:http2 with allowHTTP1), so only the client's ALPN offer differs —
// the default transport (HTTP/1.1, 64 connections per origin) or allowH2: true. On an idle machine
// and with one CPU-burning process per core:
//   - cold burst: a fresh transport, 1,000 concurrent first requests — time to complete, connections;
//   - sustained: 64 and 256 concurrent callers on a warm pool — requests/s, p99, and the client
//     process's CPU time per request (the server's is not in it: it runs in another process).
// Rounds interleave the two; each is reported as the median over rounds of h2's ratio to HTTP/1.1 in
// the same round, with the quartiles.   node bench/h2.mjs [--quick]
import { burnCpu, cleanup, coldBurst, median, ratio, startTlsServer, sustained, sum } from './support.mjs'

const quick = process.argv.includes('--quick')
const ROUNDS = quick ? 1 : 5
const SECONDS = quick ? 0.5 : 1.5
const BURST = 1000
const server = await startTlsServer({ h2: true })
const url = `${server.origin}/orders/42?page=1`
const contenders = {
  'HTTP/1.1 keep-alive': { ca: server.ca, proxy: false },
  'HTTP/2 (allowH2)': { ca: server.ca, proxy: false, allowH2: true },
}
const measures = { cold: (o) => coldBurst(server, url, o, BURST), c64: (o) => sustained(url, o, 64, SECONDS), c256: (o) => sustained(url, o, 256, SECONDS) }
const results = {}
for (const load of ['idle', 'loaded']) for (const m of Object.keys(measures)) for (const k of Object.keys(contenders)) ((results[load] ??= {})[m] ??= {})[k] = []

for (const o of Object.values(contenders)) await coldBurst(server, url, o, 200)
for (let round = 0; round < ROUNDS; round++) {
  const order = round % 2 ? Object.keys(contenders).reverse() : Object.keys(contenders)
  for (const load of ['idle', 'loaded']) {
    const burner = load === 'loaded' ? await burnCpu() : undefined
    try {
      for (const [m, measure] of Object.entries(measures)) for (const k of order) results[load][m][k].push(await measure(contenders[k]))
    } finally {
      await burner?.stop()
    }
  }
  process.stdout.write(`round ${round + 1}/${ROUNDS} done\n`)
}

const [h1, h2] = Object.keys(contenders)
for (const [load, byMeasure] of Object.entries(results)) {
  console.log(`\n${load === 'idle' ? 'idle machine' : 'loaded machine (one CPU-burning process per core)'} — median of ${ROUNDS} rounds; h2's ratio to HTTP/1.1 in the same round (quartiles)`)
  const cold = byMeasure.cold
  console.log(`  cold burst of ${BURST.toLocaleString('en-US')} first requests:`)
  for (const k of [h1, h2]) {
    const xs = cold[k]
    console.log(`    ${k.padEnd(20)} ${`${Math.round(median(xs.map((x) => x.ms)))} ms`.padStart(8)}  handshakes ${String(median(xs.map((x) => x.connections))).padStart(3)}  failures ${sum(xs.map((x) => x.failures))}`)
  }
  console.log(`    h2 time ÷ HTTP/1.1 time: ${ratio(cold[h2].map((x, i) => x.ms / cold[h1][i].ms))}`)
  for (const m of ['c64', 'c256']) {
    console.log(`  sustained, ${m.slice(1)} concurrent callers on a warm pool (${SECONDS} s each):`)
    for (const k of [h1, h2]) {
      const xs = byMeasure[m][k]
      console.log(`    ${k.padEnd(20)} ${Math.round(median(xs.map((x) => x.rps))).toLocaleString('en-US').padStart(7)}/s  p99 ${median(xs.map((x) => x.p99)).toFixed(1).padStart(6)} ms  client CPU ${Math.round(median(xs.map((x) => x.cpuPerRequest)))} µs/request  failures ${sum(xs.map((x) => x.failures))}`)
    }
    console.log(`    h2 req/s ÷ HTTP/1.1 req/s: ${ratio(byMeasure[m][h2].map((x, i) => x.rps / byMeasure[m][h1][i].rps))}`)
  }
}
server.close()
await cleanup()
