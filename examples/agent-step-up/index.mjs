// An AI agent's tool runner: ordinary tool calls just work; a sensitive one meets the API's step-up
// challenge (RFC 9470), which reaches the application through onStepUp — here a stand-in for a human
// who approves — and the call is retried with a stepped-up token. A declined approval stops there.
import { createBoundFetch, getChallenges, clientCredentials, clientSecretBasic, createSession, generateDpopKey } from '@bound/fetch'
import { check, log, run, startServers } from '@example/support'

run(async () => {
  const kit = await startServers()
  kit.rs.requireStepUp('/refunds', { acr_values: 'urn:bound:human-approved' }) // the API's policy

  let approve = true
  const askHuman = async (challenge) => {
    log(`  the agent wants to ${challenge.url.replace(kit.api, '')} — needs ${challenge.acrValues.join(' ')}; human says ${approve ? 'yes' : 'no'}`)
    return approve ? { acr_values: challenge.acrValues.join(' ') } : false
  }
  const client = kit.clients.secretBasic
  const session = createSession({ issuer: kit.issuer, clientId: client.clientId, clientAuth: clientSecretBasic(client.clientSecret), grant: clientCredentials({ resource: kit.resource }), dpop: await generateDpopKey(), ca: kit.ca })
  const fetch = createBoundFetch({ session, origins: [kit.api], onStepUp: askHuman })

  const tools = {
    list_orders: async () => (await fetch(`${kit.api}/orders`)).json(),
    refund_order: async ({ id }) => {
      const res = await fetch(`${kit.api}/refunds/${id}`, { method: 'POST', body: JSON.stringify({ id }) })
      if (res.ok) return res.json()
      const [challenge] = getChallenges(res)
      return { refused: challenge?.boundError?.code ?? res.status }
    },
  }
  const plan = [['list_orders', {}], ['refund_order', { id: '42' }], ['refund_order', { id: '43' }]]
  for (const [tool, args] of plan) {
    const result = await tools[tool](args)
    log(`tool ${tool}(${JSON.stringify(args)}) → ${JSON.stringify(result.refused ?? { ok: result.ok, acr: result.acr })}`)
  }
  approve = false
  kit.rs.requireStepUp('/refunds', { acr_values: 'urn:bound:second-human' })
  const declined = await tools.refund_order({ id: '44' })
  log(`tool refund_order({"id":"44"}) → ${JSON.stringify(declined)}`)
  check(declined.refused === 'ERR_STEP_UP_REQUIRED', 'a declined step-up is a typed refusal')
  await session.close()
  await kit.close()
  log('ok')
})
