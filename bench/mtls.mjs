// Requests per second through Bound's mTLS transport and bound fetch against bare undici with the
// same certificate, and new connections per second (no keep-alive), all in one run.
//   node bench/mtls.mjs [--quick]
import { fork } from 'node:child_process'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Agent, fetch as undiciFetch } from 'undici'
import { createTestPki } from '@bound/testkit'
import { createTransport } from '@bound/http'

const quick = process.argv.includes('--quick')
const SECONDS = quick ? 1 : 3
const CONCURRENCY = 16
const here = dirname(fileURLToPath(import.meta.url))
const pki = await createTestPki()
const child = fork(join(here, 'mtls-server.mjs'), [JSON.stringify({ key: pki.server.keyPem, cert: pki.server.certPem, ca: pki.caPem })])
const { port } = await new Promise((resolve) => child.once('message', resolve))
const url = `https://127.0.0.1:${port}/`

async function rate(fn, seconds = SECONDS) {
  const end = performance.now() + seconds * 1000
  let n = 0
  const start = performance.now()
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    while (performance.now() < end) {
      const res = await fn()
      if (res.status !== 200) throw new Error(`status ${res.status}`)
      await res.arrayBuffer()
      n++
    }
  }))
  return n / ((performance.now() - start) / 1000)
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
const fmt = (x) => Math.round(x).toLocaleString('en-US').padStart(7)

const cert = pki.workload
const bare = new Agent({ connect: { ca: pki.caPem, cert: cert.certPem, key: cert.keyPem }, keepAliveTimeout: 30_000 })
const bound = createTransport({ ca: pki.caPem, clientCertificate: { cert: cert.certPem, key: cert.keyPem }, keepAliveTimeoutMs: 30_000 })
const fullHandshakes = new Agent({ connect: { ca: pki.caPem, cert: cert.certPem, key: cert.keyPem, maxCachedSessions: 0 } })

const contenders = {
  'bare undici fetch (same cert)': () => undiciFetch(url, { dispatcher: bare }),
  'Bound mTLS transport': () => bound.fetch(url),
}
const results = Object.fromEntries(Object.keys(contenders).map((k) => [k, []]))
for (const fn of Object.values(contenders)) await rate(fn, 0.5)
for (let r = 0; r < 3; r++) for (const [k, fn] of Object.entries(contenders)) results[k].push(await rate(fn))
const base = median(results['bare undici fetch (same cert)'])
console.log(`keep-alive, concurrency ${CONCURRENCY}: requests/s (median of 3 × ${SECONDS}s)`)
for (const [k, xs] of Object.entries(results)) console.log(`  ${k.padEnd(32)} ${fmt(median(xs))}/s  ${(median(xs) / base).toFixed(2)}×`)
const ratio = median(results['Bound mTLS transport']) / base

// New connections: the server closes every connection, so each request is a TLS handshake.
const closeUrl = `${url}close`
const hs = { 'full handshakes (no session reuse)': [], 'Bound (one secure context + TLS session cache per generation)': [] }
for (let r = 0; r < 3; r++) {
  hs['full handshakes (no session reuse)'].push(await rate(() => undiciFetch(closeUrl, { dispatcher: fullHandshakes })))
  hs['Bound (one secure context + TLS session cache per generation)'].push(await rate(() => bound.fetch(closeUrl)))
}
const full = median(hs['full handshakes (no session reuse)'])
console.log(`\nnew connection per request (Connection: close), concurrency ${CONCURRENCY}: handshakes/s`)
for (const [k, xs] of Object.entries(hs)) console.log(`  ${k.padEnd(62)} ${fmt(median(xs))}/s  ${(median(xs) / full).toFixed(2)}×`)

console.log('\ntargets:')
console.log(`  ${ratio >= 0.9 ? 'met ' : 'MISS'}  Bound mTLS transport ≥ 0.9× bare undici: ${ratio.toFixed(2)}`)
console.log(`  info  handshakes/s with reuse vs full: ${(median(hs['Bound (one secure context + TLS session cache per generation)']) / full).toFixed(2)}×`)
await Promise.all([bare.close(), bound.close(), fullHandshakes.close()])
child.disconnect()
await pki.remove?.()
