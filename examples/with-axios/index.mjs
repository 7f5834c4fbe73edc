// axios, as most Node services already use it, with Bound's adapter: the same axios instance,
// interceptors and JSON handling; every request to the API bound to the workload's DPoP key.
import axios from 'axios'
import { boundAdapter, getChallenges } from '@bound/axios'
import { clientCredentials, clientSecretBasic, createSession, generateDpopKey } from '@bound/fetch'
import { check, log, run, startServers } from '@example/support'

run(async () => {
  const kit = await startServers()
  const client = kit.clients.secretBasic
  const session = createSession({ issuer: kit.issuer, clientId: client.clientId, clientAuth: clientSecretBasic(client.clientSecret), grant: clientCredentials({ resource: kit.resource }), dpop: await generateDpopKey(), ca: kit.ca })
  const api = axios.create({ baseURL: kit.api, timeout: 5_000, adapter: boundAdapter({ session, origins: [kit.api] }) })

  const { data: order } = await api.post('/orders', { item: 'tea' })
  log(`axios POST /orders → ${order.method} ${order.path}, body ${order.body}, binding ${order.binding}`)
  check(order.binding === 'dpop', 'the request should be DPoP-bound')

  // A challenge Bound could not answer arrives as axios's error, with Bound's reason attached.
  kit.rs.requireStepUp('/admin', { acr_values: 'urn:example:mfa' })
  const refused = await api.get('/admin/settings').catch((err) => err)
  const reason = getChallenges(refused).find((c) => c.boundError)?.boundError
  log(`axios GET /admin/settings → HTTP ${refused.response?.status}: ${reason?.code}`)
  check(reason?.code === 'ERR_STEP_UP_REQUIRED', 'the step-up challenge should be explained')

  await session.close()
  await kit.close()
  log('ok')
})
