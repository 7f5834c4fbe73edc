// An AI agent acting for a signed-in user at another application's API, with the enterprise IdP in
// charge: Alice's ID token → (IdP, RFC 8693) an ID-JAG → (the API's AS, RFC 7523) a DPoP-bound
// access token → the API. Then the IdP's administrators withdraw the agent's access.
import { createBoundFetch, clientSecretBasic, clientSecretPost, createSession, identityAssertionGrant, generateDpopKey, isBoundError } from '@bound/fetch'
import { check, log, run, startServers } from '@example/support'

run(async () => {
  const kit = await startServers({ idp: true })
  const idp = kit.idp
  // Alice signed in to the agent through the enterprise IdP (single sign-on): the agent holds her ID token
  const aliceIdToken = await idp.mintIdToken({ sub: 'alice@acme.example' })

  // two registrations: the agent at the IdP (client_secret_post), and at the API's AS (client_secret_basic)
  const atIdp = idp.clients.secretPost
  const atApi = kit.clients.secretBasic
  const session = createSession({
    issuer: kit.issuer, // the API's authorization server
    clientId: atApi.clientId,
    clientAuth: clientSecretBasic(atApi.clientSecret),
    grant: identityAssertionGrant({
      idp: { issuer: idp.issuer, clientId: atIdp.clientId, clientAuth: clientSecretPost(atIdp.clientSecret) },
      subjectToken: aliceIdToken, // in production: fromFile(…) or a callback that returns her current ID token
      resource: kit.resource,
      scope: 'orders:read',
    }),
    dpop: await generateDpopKey(), // a proof at the IdP, at the AS, and at the API
    ca: kit.ca,
  })
  session.events.on('token.acquired', (e) => log(`token: ${e.type}-bound, via ${e.grant === 'urn:ietf:params:oauth:grant-type:jwt-bearer' ? 'an ID-JAG (JWT bearer)' : e.grant}`))
  const fetch = createBoundFetch({ session, origins: [kit.api] })

  const res = await fetch(`${kit.api}/orders`)
  const body = await res.json()
  log(`GET /orders → ${res.status}, for ${body.sub}, ${body.binding}-bound, scope ${body.scope}`)
  check(res.ok && body.sub === 'alice@acme.example' && body.binding === 'dpop', 'the agent should reach the API for Alice with a DPoP-bound token')
  const [idJag] = idp.issued()
  log(`the IdP issued an ID-JAG for ${idJag.aud}, client ${idJag.clientId} there, bound to the agent's key: ${idJag.jkt === session.dpop.jkt}`)
  check(idJag.jkt === session.dpop.jkt, 'the ID-JAG should be bound to the session key (cnf.jkt)')

  // the enterprise withdraws the agent's access at the IdP
  idp.refuseApp(atIdp.clientId)
  log('the IdP administrators revoke the agent’s access')
  try {
    await session.forceRefresh() // the next chain (here forced; normally the next refresh)
    check(false, 'the IdP should refuse')
  } catch (err) {
    check(isBoundError(err, 'ERR_IDP_REFUSED'), `expected ERR_IDP_REFUSED, got ${err?.code}`)
    log(`the next chain fails at the IdP: ${err.code} ${err.error} (hop: ${err.hop})`)
  }

  await session.close({ revoke: true }) // the access token at the AS, the ID-JAG at the IdP
  log(`closed: revoked at the AS (${kit.as.counters().revocations}) and at the IdP (${idp.as.counters().revocations})`)
  check(idp.isRevoked(idJag.jti), 'the ID-JAG should be revoked at the IdP')
  await kit.close()
  log('ok')
})
