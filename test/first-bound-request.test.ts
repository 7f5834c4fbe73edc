import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startTestkit, type Testkit } from '@bound/testkit'
import { createBoundFetch } from '@bound/fetch'
import { clientCredentials, clientSecretBasic, clientSecretPost, createSession, privateKeyJwt, type ClientAuth, type Session } from '@bound/oauth'
import { generateDpopKey } from '@bound/dpop'

let kit: Testkit
const sessions: Session[] = []

beforeAll(async () => {
  kit = await startTestkit() // the AS and the RS both demand DPoP nonces
})
afterAll(async () => {
  await Promise.all(sessions.map((s) => s.close()))
  await kit?.close()
})

async function boundFetchFor(clientAuth: ClientAuth, clientId: string) {
  const session = createSession({
    issuer: kit.issuer,
    clientId,
    clientAuth,
    grant: clientCredentials({ resource: kit.resource }),
    dpop: await generateDpopKey(),
    ca: kit.ca, // trust the testkit CA like an internal PKI; verification stays on
  })
  sessions.push(session)
  return { session, fetch: createBoundFetch({ session, origins: [kit.api] }) }
}

describe('the first bound request (issue 2)', () => {
  it('DPOP-12/16/17: earns a DPoP-bound token, answers both nonce challenges, and the RS verifies the bound request', async () => {
    kit.as.resetCounters()
    kit.rs.resetCounters()
    const c = kit.clients.secretBasic
    const { session, fetch } = await boundFetchFor(clientSecretBasic(c.clientSecret), c.clientId)

    const res = await fetch(`${kit.api}/orders`)
    expect(res.status).toBe(200)
    const body = (await res.json()) as { binding: string; jkt: string; client_id: string }
    expect(body).toMatchObject({ binding: 'dpop', jkt: session.dpop!.jkt, client_id: c.clientId })

    // The AS: one nonce challenge answered, one DPoP-bound token issued.
    expect(kit.as.counters()).toMatchObject({ tokenRequests: 2, nonceChallenges: 1, tokensIssued: 1, byBinding: { dpop: 1, mtls: 0, bearer: 0 } })
    // The RS: one nonce challenge answered, then a request verified by both independent verifiers.
    expect(kit.rs.counters()).toMatchObject({ nonceChallenges: 1, verified: 1, rejectedProofs: 0, replayedJti: 0, verifierDisagreements: 0, byBinding: { dpop: 1 } })

    // Later requests reuse the token and the learned nonce: no further challenges.
    for (let i = 0; i < 5; i++) expect((await fetch(`${kit.api}/orders/${i}?page=2`)).status).toBe(200)
    expect(kit.as.counters().tokenRequests).toBe(2)
    expect(kit.rs.counters()).toMatchObject({ nonceChallenges: 1, verified: 6, verifierDisagreements: 0 })
  })

  it('the RS rejects a tampered proof (htu names another URL), so it is not passing everything', async () => {
    const c = kit.clients.secretBasic
    const { session, fetch } = await boundFetchFor(clientSecretBasic(c.clientSecret), c.clientId)
    expect((await fetch(`${kit.api}/orders`)).status).toBe(200) // nonce learned, token held
    kit.rs.resetCounters()
    const token = await session.token()
    const proof = await session.dpop!.proof('GET', `${kit.api}/somewhere-else`, { accessToken: token.value })
    const res = await session.transport.fetch(`${kit.api}/orders`, { headers: { authorization: `DPoP ${token.value}`, dpop: proof } })
    expect(res.status).toBe(401)
    expect(res.headers.get('www-authenticate')).toMatch(/invalid_dpop_proof/)
    expect(kit.rs.counters()).toMatchObject({ verified: 0, rejectedProofs: 1 })
    // and the same token with a correct proof still works
    expect((await fetch(`${kit.api}/orders`)).status).toBe(200)
  })

  it.each([
    ['client_secret_post', () => clientSecretPost(kit.clients.secretPost.clientSecret), () => kit.clients.secretPost.clientId],
    ['private_key_jwt', () => privateKeyJwt(kit.clients.privateKeyJwt.privateKey, { kid: kit.clients.privateKeyJwt.kid }), () => kit.clients.privateKeyJwt.clientId],
  ])('earns a DPoP-bound token with %s and calls the RS', async (_name, auth, clientId) => {
    const { fetch } = await boundFetchFor(auth(), clientId())
    const res = await fetch(`${kit.api}/orders`, { method: 'POST', body: JSON.stringify({ item: 'tea' }), headers: { 'content-type': 'application/json' } })
    expect(res.status).toBe(200)
    expect(await res.json()).toMatchObject({ binding: 'dpop', method: 'POST', body: '{"item":"tea"}' })
  })

  it('sends no credentials to an origin it was not configured for', async () => {
    const c = kit.clients.secretBasic
    const { fetch } = await boundFetchFor(clientSecretBasic(c.clientSecret), c.clientId)
    kit.rs.resetCounters()
    // The AS origin is not in `origins`: the request goes out plain, and the RS of the testkit is not involved.
    const res = await fetch(`${kit.issuer}/.well-known/openid-configuration`)
    expect(res.status).toBe(200)
    const strict = createBoundFetch({ session: sessions.at(-1)!, origins: [kit.api], otherOrigins: 'error' })
    await expect(strict(`${kit.issuer}/jwks`)).rejects.toMatchObject({ code: 'ERR_ORIGIN_NOT_ALLOWED' })
  })
})
