// Shared by the transport benchmarks (pool, h2, proxy): a TLS server and a CONNECT proxy in child
// processes, CPU burners to load the machine, bound fetches over a transport of their own, and the
// two measurements — a cold burst (a fresh transport, n concurrent first requests) and sustained
// concurrent load on a warm pool. Not a benchmark itself (bench/run.mjs does not list it).
import { fork, spawn } from 'node:child_process'
import { randomBytes, webcrypto } from 'node:crypto'
import { availableParallelism } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createBoundFetch } from '@bound/fetch'
import { createTransport } from '@bound/http'
import { clientCredentials, createSession } from '@bound/oauth'
import { importDpopKey } from '@bound/dpop'
import { createTestPki } from '@bound/testkit'

const here = dirname(fileURLToPath(import.meta.url))
const children = new Set()
process.on('exit', () => {
  for (const child of children) child.kill('SIGKILL')
})
const track = (child) => {
  children.add(child)
  child.once('exit', () => children.delete(child))
  return child
}

/** The test PKI's server certificate (127.0.0.1, localhost, *.bound.test) and CA. */
let pki
async function certificates() {
  pki ??= await createTestPki()
  return pki
}

/** The HTTPS server of bench/tls-server.mjs in a child process; `{ h2: true }` speaks HTTP/2 as well. */
export async function startTlsServer({ h2 = false } = {}) {
  const { server, caPem } = await certificates()
  const child = track(fork(join(here, 'tls-server.mjs'), { execArgv: [] }))
  child.send({ key: server.keyPem, cert: server.certPem, h2 })
  const { port } = await new Promise((resolve) => child.once('message', resolve))
  return {
    port,
    origin: `https://127.0.0.1:${port}`,
    ca: caPem,
    /** { open, max, total } connections seen by the server; `reset` starts the counts again. */
    stats: (reset = false) => new Promise((resolve) => {
      child.once('message', resolve)
      child.send({ reset })
    }),
    close: () => child.disconnect(),
  }
}

/** test/support/connect-proxy.ts in a child process (through tsx); `url` is `http://127.0.0.1:PORT`. */
export async function startProxy() {
  const tsx = import.meta.resolve('tsx')
  const child = track(fork(join(here, 'proxy-server.mjs'), { execArgv: ['--import', tsx] }))
  const { url } = await new Promise((resolve) => child.once('message', resolve))
  return { url, close: () => child.disconnect() }
}

/** One busy-looping `node` per core (each stops by itself after 15 minutes at the latest). */
export async function burnCpu() {
  const script = "process.stdout.write('hot\\n'); const end = Date.now() + 900_000; while (Date.now() < end) {}"
  const burners = await Promise.all(Array.from({ length: availableParallelism() }, () => new Promise((resolve) => {
    const child = track(spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'ignore'] }))
    child.stdout.once('data', () => resolve(child))
  })))
  return {
    stop: () => Promise.all(burners.map((child) => new Promise((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve()
      child.once('exit', resolve)
      child.kill('SIGKILL')
    }))),
  }
}

const pair = await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify'])
const accessToken = randomBytes(600).toString('base64url')

/**
 * A bound fetch (DPoP, with an adopted token: no authorization server is involved) over a
 * transport of its own, made with `transportOptions`; `close()` closes both.
 */
export async function boundClient(origin, transportOptions) {
  const transport = createTransport(transportOptions)
  const session = createSession({ tokenEndpoint: `${origin}/token`, clientId: 'bench', grant: clientCredentials(), dpop: await importDpopKey(pair), transport })
  session.adopt({}, { access_token: accessToken, token_type: 'DPoP', expires_in: 3600 })
  return {
    fetch: createBoundFetch({ session, origins: [origin] }),
    close: async () => {
      await session.close()
      await transport.close()
    },
  }
}

const percentile = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]

/** One GET; its status, or 0 when it failed. */
async function get(fetch, url) {
  try {
    const res = await fetch(url)
    await res.arrayBuffer()
    return res.status
  } catch {
    return 0
  }
}

/**
 * A cold burst: a fresh transport, `n` concurrent first requests. Time to complete them all,
 * failures, and the connections the server saw (total, most open at once).
 */
export async function coldBurst(server, url, transportOptions, n = 1000) {
  const client = await boundClient(new URL(url).origin, transportOptions)
  await server.stats(true)
  const latencies = []
  let failures = 0
  const start = performance.now()
  await Promise.all(Array.from({ length: n }, async () => {
    const t0 = performance.now()
    if ((await get(client.fetch, url)) !== 200) failures++
    latencies.push(performance.now() - t0)
  }))
  const ms = performance.now() - start
  const { total, max } = await server.stats()
  await client.close()
  latencies.sort((a, b) => a - b)
  return { ms, p99: percentile(latencies, 0.99), failures, connections: total, maxOpen: max }
}

/** `concurrency` callers in a loop for `seconds` on `fetch`: requests/s, p50, p99, failures, client CPU per request. */
export async function run(fetch, url, concurrency, seconds) {
  const latencies = []
  let failures = 0
  const end = performance.now() + seconds * 1000
  const start = performance.now()
  const cpu = process.cpuUsage()
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (performance.now() < end) {
      const t0 = performance.now()
      if ((await get(fetch, url)) !== 200) failures++
      latencies.push(performance.now() - t0)
    }
  }))
  const { user, system } = process.cpuUsage(cpu)
  latencies.sort((a, b) => a - b)
  return {
    rps: latencies.length / ((performance.now() - start) / 1000),
    p50: percentile(latencies, 0.5),
    p99: percentile(latencies, 0.99),
    failures,
    /** The client process's CPU time per request, µs (the server is another process). */
    cpuPerRequest: (user + system) / latencies.length,
  }
}

/** Sustained load on a warm pool: a fresh transport, `warmup` seconds unmeasured, then `seconds` measured. */
export async function sustained(url, transportOptions, concurrency, seconds, warmup = 0.3) {
  const client = await boundClient(new URL(url).origin, transportOptions)
  await run(client.fetch, url, concurrency, warmup)
  const result = await run(client.fetch, url, concurrency, seconds)
  await client.close()
  return result
}

export const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
}
export const quartiles = (xs) => {
  const s = [...xs].sort((a, b) => a - b)
  return [s[Math.floor((s.length - 1) / 4)], s[Math.ceil(((s.length - 1) * 3) / 4)]]
}
/** "0.93× (0.88–1.01)": the median ratio and its quartiles. */
export const ratio = (xs) => {
  const [q1, q3] = quartiles(xs)
  return `${median(xs).toFixed(2)}× (${q1.toFixed(2)}–${q3.toFixed(2)})`
}
export const sum = (xs) => xs.reduce((a, b) => a + b, 0)

export async function cleanup() {
  await pki?.remove()
}
