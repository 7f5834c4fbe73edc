// One process of a fleet (test/fleet.test.ts): a bound session on the shared Redis store, driven
// over IPC by the test. Built packages only (no TypeScript loader: eight of these start at once).
import { createClient } from 'redis'
import { createRedisTokenStore } from '@bound/redis'
import { clientCredentials, clientSecretBasic, createSession, tokenExchange } from '@bound/oauth'
import { generateDpopKey, importDpopKey } from '@bound/dpop'
import { createBoundFetch } from '@bound/fetch'

const cfg = JSON.parse(process.env.FLEET_CONFIG)
const send = (msg) => process.send?.(msg)

const client = createClient({
  url: cfg.redisUrl,
  // no queue of commands while Redis is down: a command fails at once (Bound works alone meanwhile)
  disableOfflineQueue: true,
  socket: { connectTimeout: 500, reconnectStrategy: (retries) => Math.min(50 * 2 ** retries, 500) },
})
client.on('error', () => {}) // reconnects by itself; Bound reports the degradation as events
await client.connect()
const store = createRedisTokenStore({ client })

const dpop = cfg.sharedJwk ? await importDpopKey(cfg.sharedJwk) : await generateDpopKey()
const grant =
  cfg.grant === 'exchange'
    ? tokenExchange({ subjectToken: cfg.subjectToken, resource: cfg.resource, scope: 'orders:read offline_access' })
    : clientCredentials({ resource: cfg.resource })
const session = createSession({
  issuer: cfg.issuer,
  clientId: cfg.clientId,
  clientAuth: clientSecretBasic(cfg.clientSecret),
  grant,
  dpop,
  ca: cfg.ca,
  store: { store, encryptionKey: cfg.encryptionKey, ...(cfg.grant === 'exchange' ? { partition: 'fleet-test' } : {}), ...cfg.storeOptions },
})
const boundFetch = createBoundFetch({ session, origins: [cfg.api] })

// what the test judges: every event that tells how a token was had, and the waits on the store
const tally = { acquired: {}, shared: 0, degraded: [], recovered: 0, waitExceeded: [], sharedWaits: [], invalidated: 0, invalidatedAt: [], failedTokens: [] }
session.events.on('token.acquired', (e) => (tally.acquired[e.grant] = (tally.acquired[e.grant] ?? 0) + 1))
session.events.on('token.shared', (e) => {
  tally.shared++
  tally.sharedWaits.push(e.waitMs)
})
session.events.on('store.degraded', (e) => tally.degraded.push({ operation: e.operation, reason: e.reason }))
session.events.on('store.recovered', () => tally.recovered++)
session.events.on('store.wait_exceeded', (e) => tally.waitExceeded.push(e.ms))
session.events.on('token.invalidated', () => {
  tally.invalidated++
  tally.invalidatedAt.push(Date.now())
})
session.events.on('token.failed', (e) => tally.failedTokens.push(e.code))

const one = async () => {
  const started = performance.now()
  try {
    const res = await boundFetch(`${cfg.api}/orders`)
    await res.arrayBuffer()
    return { status: res.status, ms: performance.now() - started }
  } catch (err) {
    return { status: 0, code: err?.code ?? String(err), ms: performance.now() - started }
  }
}

const summary = (results) => {
  const failed = results.filter((r) => r.status !== 200)
  return { requests: results.length, failed: failed.length, failures: [...new Set(failed.map((r) => `${r.status} ${r.code ?? ''}`))].slice(0, 5), maxMs: Math.round(Math.max(0, ...results.map((r) => r.ms))) }
}

process.on('message', async (msg) => {
  if (msg.type === 'burst') {
    const results = await Promise.all(Array.from({ length: msg.callers }, one))
    send({ type: 'burst', ...summary(results) })
  } else if (msg.type === 'steady') {
    const until = performance.now() + msg.durationMs
    const results = []
    await Promise.all(
      Array.from({ length: msg.concurrency }, async () => {
        while (performance.now() < until) {
          results.push(await one())
          await new Promise((r) => setTimeout(r, msg.intervalMs))
        }
      }),
    )
    send({ type: 'steady', ...summary(results) })
  } else if (msg.type === 'invalidate') {
    // as the bound fetch does on an API's invalid_token
    const token = await session.token()
    const at = Date.now()
    session.invalidate(token)
    send({ type: 'invalidated', at, label: token.label })
  } else if (msg.type === 'tally') {
    send({ type: 'tally', tally })
  } else if (msg.type === 'exit') {
    await session.close()
    await client.quit().catch(() => {})
    send({ type: 'closed' })
    process.exit(0)
  }
})
send({ type: 'ready', pid: process.pid })
