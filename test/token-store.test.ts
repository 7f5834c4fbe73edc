// The TokenStore contract against the in-process reference store and against @bound/redis on a
// real redis-server (both notify modes), each store pair on its own clients.
import { randomBytes } from 'node:crypto'
import { afterAll, beforeAll } from 'vitest'
import { createClient } from 'redis'
import { createMemoryTokenStore } from '@bound/oauth'
import { createRedisTokenStore } from '@bound/redis'
import { describeTokenStoreContract } from './token-store-contract.js'
import { startRedisServer, type RedisServer } from './support/redis-server.js'

let server: RedisServer
beforeAll(async () => {
  server = await startRedisServer()
})
afterAll(async () => {
  await server?.stop()
})

describeTokenStoreContract('createMemoryTokenStore', async () => {
  const store = createMemoryTokenStore()
  return { a: store, b: store }
})

async function connectedClient() {
  const client = createClient({ url: server.url, disableOfflineQueue: true })
  client.on('error', () => {})
  await client.connect()
  return client
}

for (const notify of ['pubsub', 'poll'] as const) {
  describeTokenStoreContract(`createRedisTokenStore (notify: '${notify}')`, async () => {
    // a fresh prefix per pair: every test starts on empty storage, on the same server
    const keyPrefix = `t${randomBytes(6).toString('hex')}:`
    const [ca, cb] = await Promise.all([connectedClient(), connectedClient()])
    const a = createRedisTokenStore({ client: ca, keyPrefix, notify, pollIntervalMs: 50 })
    const b = createRedisTokenStore({ client: cb, keyPrefix, notify, pollIntervalMs: 50 })
    return {
      a,
      b,
      async close() {
        await Promise.all([a.close(), b.close()])
        await Promise.all([ca.close(), cb.close()])
      },
    }
  })
}
