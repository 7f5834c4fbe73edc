// How the processes that wait for another's token learn it is there: Redis pub/sub (with a slow
// safety poll) against polling only, at two intervals. K sessions, each on its own Redis
// connection, ask for a new key at once, round after round; one earns (a token endpoint answering
// in 50 ms), the others wait. Prints the waiters' extra wait (beyond the earner's) and the Redis
// commands per round, as ratios against pub/sub measured in the same run.
//   node bench/store.mjs [--quick]
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { createServer } from 'node:http'
import { createServer as createNetServer } from 'node:net'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createClient } from 'redis'
import { createRedisTokenStore } from '@bound/redis'
import { clientCredentials, createSession } from '@bound/oauth'

const quick = process.argv.includes('--quick')
const K = 8
const ROUNDS = quick ? 20 : 60
const AS_LATENCY_MS = 50

const freePort = () =>
  new Promise((resolve) => {
    const s = createNetServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address()
      s.close(() => resolve(port))
    })
  })
const port = await freePort()
const redisServer = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', mkdtempSync(join(tmpdir(), 'bound-bench-redis-')), '--loglevel', 'warning'], { stdio: 'ignore' })
redisServer.on('error', () => {
  console.error('redis-server is missing: install Debian\'s redis-server package (apt-get install redis-server)')
  process.exit(1)
})
const url = `redis://127.0.0.1:${port}`
const admin = createClient({ url })
for (let i = 0; ; i++) {
  try {
    await admin.connect()
    break
  } catch {
    if (i > 100) throw new Error('redis-server did not start')
    await new Promise((r) => setTimeout(r, 50))
  }
}
const commands = async () => Number(/total_commands_processed:(\d+)/.exec(await admin.sendCommand(['INFO', 'stats']))[1])

// a token endpoint that answers in AS_LATENCY_MS
let issued = 0
const as = createServer((req, res) => {
  req.resume()
  req.on('end', () =>
    setTimeout(() => {
      issued++
      res.setHeader('content-type', 'application/json')
      res.end(JSON.stringify({ access_token: randomBytes(32).toString('base64url'), token_type: 'Bearer', expires_in: 3600 }))
    }, AS_LATENCY_MS),
  )
}).listen(0, '127.0.0.1')
await new Promise((r) => as.once('listening', r))
const tokenEndpoint = `http://127.0.0.1:${as.address().port}/token`
const encryptionKey = randomBytes(32)

async function measure(mode, pollMs) {
  const clients = []
  const sessions = []
  for (let i = 0; i < K; i++) {
    const client = createClient({ url, disableOfflineQueue: true })
    client.on('error', () => {})
    await client.connect()
    clients.push(client)
    const inner = createRedisTokenStore({ client, keyPrefix: `bench:${mode}:${pollMs}:` })
    // polling only: the store's notifications are never delivered
    const store = mode === 'pubsub' ? inner : { ...inner, subscribe: async () => () => {} }
    sessions.push(createSession({ tokenEndpoint, clientId: 'bench', grant: clientCredentials(), store: { store, encryptionKey, pollMs, waitMs: 5_000 } }))
  }
  const extra = []
  const before = await commands()
  const issuedBefore = issued
  for (let round = 0; round < ROUNDS; round++) {
    const resource = `https://api.example/r${round}`
    const done = []
    const started = performance.now()
    await Promise.all(sessions.map((s) => s.token({ resource }).then(() => done.push(performance.now() - started))))
    done.sort((a, b) => a - b)
    // the first to finish is the earner; the others' extra wait is how late they learned of its token
    for (const t of done.slice(1)) extra.push(t - done[0])
  }
  const perRound = ((await commands()) - before) / ROUNDS
  const tokensPerRound = (issued - issuedBefore) / ROUNDS
  await Promise.all(sessions.map((s) => s.close()))
  await Promise.all(clients.map((c) => c.quit()))
  extra.sort((a, b) => a - b)
  return { p50: extra[Math.floor(extra.length / 2)], p99: extra[Math.floor(extra.length * 0.99)], perRound, tokensPerRound }
}

const rows = []
const base = await measure('pubsub', 100)
rows.push(['pub/sub (+ poll every 100 ms)', base])
rows.push(['poll every 100 ms', await measure('poll', 100)])
rows.push(['poll every 20 ms', await measure('poll', 20)])
console.log(`${K} sessions on their own Redis connections, ${ROUNDS} rounds of a new key each; token endpoint ${AS_LATENCY_MS} ms`)
console.log('mode                           waiters’ extra wait p50 / p99 (ms)   vs pub/sub    Redis commands/round   vs pub/sub   tokens/round')
for (const [name, r] of rows) {
  console.log(
    `${name.padEnd(30)} ${r.p50.toFixed(1).padStart(8)} / ${r.p99.toFixed(1).padEnd(8)}                ${(r.p50 / base.p50).toFixed(2).padStart(6)}×   ${r.perRound.toFixed(1).padStart(12)}          ${(r.perRound / base.perRound).toFixed(2).padStart(6)}×   ${r.tokensPerRound.toFixed(2)}`,
  )
}
await admin.quit()
as.close()
redisServer.kill()
