// A Node HTTP service that calls a downstream API with client credentials, private_key_jwt client
// authentication and DPoP-bound tokens. Its own callers know nothing of tokens.
import { createServer } from 'node:http'
import { createBoundFetch, clientCredentials, createSession, privateKeyJwt, generateDpopKey } from '@bound/fetch'
import { check, log, run, startServers } from '@example/support'

run(async () => {
  const kit = await startServers() // in production: your AS and your downstream API
  const client = kit.clients.privateKeyJwt
  const session = createSession({
    issuer: kit.issuer,
    clientId: client.clientId,
    clientAuth: privateKeyJwt(client.privateJwk, { kid: client.kid }), // e.g. a PEM from your secret store
    grant: clientCredentials({ resource: kit.resource, scope: 'orders:read' }),
    dpop: await generateDpopKey(),
    ca: kit.ca, // your internal CA; server certificates are always verified
  })
  const downstream = createBoundFetch({ session, origins: [kit.api] })

  // the service: GET /summary calls the orders API and summarises
  const service = createServer(async (req, res) => {
    try {
      const upstream = await downstream(`${kit.api}/orders?for=${encodeURIComponent(req.url ?? '/')}`)
      const body = await upstream.json()
      res.writeHead(upstream.status, { 'content-type': 'application/json' }).end(JSON.stringify({ via: body.binding, client: body.client_id }))
    } catch (err) {
      res.writeHead(502, { 'content-type': 'application/json' }).end(JSON.stringify({ error: err.code ?? 'ERR_UNKNOWN' }))
    }
  })
  await new Promise((resolve) => service.listen(0, '127.0.0.1', resolve))
  const base = `http://127.0.0.1:${service.address().port}`
  log(`service listening on ${base}`)

  const answers = await Promise.all(Array.from({ length: 20 }, () => fetch(`${base}/summary`).then((r) => r.json())))
  check(answers.every((a) => a.via === 'dpop'), 'every downstream call should be DPoP-bound')
  log(`20 concurrent calls to the service → ${answers.length} downstream calls, all DPoP-bound, ${kit.as.counters().tokensIssued} token issued`)

  service.close()
  await session.close()
  await kit.close()
  log('ok')
})
