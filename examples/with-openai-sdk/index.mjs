// The OpenAI SDK pointed at an OpenAI-compatible endpoint behind a verifying gateway, with Bound's
// fetch: the SDK's own `Authorization` is replaced by the bound token and a proof.
import OpenAI from 'openai'
import { createBoundFetch, clientCredentials, clientSecretBasic, createSession, generateDpopKey } from '@bound/fetch'
import { check, log, run, startServers } from '@example/support'

run(async () => {
  const kit = await startServers()
  // a local stand-in for an OpenAI-compatible model server, behind the verifying gateway
  kit.rs.route('/v1/chat/completions', ({ res, body, auth }) => {
    const request = JSON.parse(body.toString())
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({
      id: 'chatcmpl-1', object: 'chat.completion', created: Math.floor(Date.now() / 1000), model: request.model,
      choices: [{ index: 0, finish_reason: 'stop', message: { role: 'assistant', content: `hello ${auth.claims.client_id}, your token was ${auth.binding}-bound` } }],
    }))
  })
  const client = kit.clients.secretBasic
  const session = createSession({ issuer: kit.issuer, clientId: client.clientId, clientAuth: clientSecretBasic(client.clientSecret), grant: clientCredentials({ resource: kit.resource }), dpop: await generateDpopKey(), ca: kit.ca })
  const openai = new OpenAI({ baseURL: `${kit.api}/v1`, apiKey: 'not-used-bound-sends-the-token', fetch: createBoundFetch({ session, origins: [kit.api] }) })
  const completion = await openai.chat.completions.create({ model: 'local', messages: [{ role: 'user', content: 'hi' }] })
  log(`assistant: ${completion.choices[0].message.content}`)
  check(completion.choices[0].message.content.includes('dpop-bound'), 'the model server should have seen a DPoP-bound token')
  await session.close()
  await kit.close()
  log('ok')
})
