// ky (a fetch wrapper people like) on top of Bound's fetch: ky's retries, hooks and JSON helpers,
// Bound's bound session underneath.
import ky from 'ky'
import { createBoundFetch, clientCredentials, clientSecretBasic, createSession, generateDpopKey } from '@bound/fetch'
import { check, log, run, startServers } from '@example/support'

run(async () => {
  const kit = await startServers()
  const client = kit.clients.secretBasic
  const session = createSession({ issuer: kit.issuer, clientId: client.clientId, clientAuth: clientSecretBasic(client.clientSecret), grant: clientCredentials({ resource: kit.resource }), dpop: await generateDpopKey(), ca: kit.ca })
  const api = ky.create({ prefixUrl: kit.api, fetch: createBoundFetch({ session, origins: [kit.api] }), retry: 2 })
  const order = await api.post('orders', { json: { item: 'tea' } }).json()
  log(`ky POST /orders → ${order.method} ${order.path}, body ${order.body}, binding ${order.binding}`)
  check(order.binding === 'dpop', 'the request should be DPoP-bound')
  await session.close()
  await kit.close()
  log('ok')
})
