// got with Bound's hooks: got's retries, JSON helpers and errors; every request (and every retry) to
// the API carries the bound token and a fresh DPoP proof.
import got from 'got'
import { boundHooks } from '@bound/got'
import { clientCredentials, clientSecretBasic, createSession, generateDpopKey } from '@bound/fetch'
import { check, log, run, startServers } from '@example/support'

run(async () => {
  const kit = await startServers()
  const client = kit.clients.secretBasic
  const session = createSession({ issuer: kit.issuer, clientId: client.clientId, clientAuth: clientSecretBasic(client.clientSecret), grant: clientCredentials({ resource: kit.resource }), dpop: await generateDpopKey(), ca: kit.ca })
  const api = got.extend({ prefixUrl: kit.api, retry: { limit: 2 }, hooks: boundHooks({ session, origins: [kit.api] }) })

  const order = await api.post('orders', { json: { item: 'tea' } }).json()
  log(`got POST /orders → ${order.method} ${order.path}, body ${order.body}, binding ${order.binding}`)
  check(order.binding === 'dpop', 'the request should be DPoP-bound')

  // After the API revokes the token, Bound earns a new one and retries once, unseen by the caller.
  kit.rs.revokeToken((await session.token()).value)
  const again = await api.get('orders/42').json()
  log(`got GET /orders/42 after a revocation → ${again.path}, binding ${again.binding}`)
  check(again.binding === 'dpop', 'the request after the revocation should succeed')

  await session.close()
  await kit.close()
  log('ok')
})
