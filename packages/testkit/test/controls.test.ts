import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { createHash, generateKeyPairSync, randomUUID } from 'node:crypto'
import { SignJWT, exportJWK } from 'jose'
import { fetch, type Agent } from 'undici'
import { startResourceServer, startTestkit, type Testkit } from '../src/index.js'
import { agentFor, callResource, makeProof, newDpopKey, requestToken, type DpopKey } from './helpers/hand-client.js'

let kit: Testkit
let agent: Agent
let dpopKey: DpopKey

beforeAll(async () => {
  kit = await startTestkit({ accessTokenTtlSeconds: 2 })
  agent = agentFor(kit.ca)
  dpopKey = await newDpopKey()
})

afterAll(async () => {
  await agent?.close()
  await kit?.close()
})

beforeEach(() => {
  kit.as.resetCounters()
  kit.rs.resetCounters()
  kit.rs.clearRevocations()
})

async function dpopToken(): Promise<string> {
  const token = await requestToken({
    tokenEndpoint: `${kit.issuer}/token`,
    agent,
    authenticate: { client: kit.clients.secretPost },
    dpopKey,
  })
  expect(token.status, JSON.stringify(token.body)).toBe(200)
  return token.body['access_token'] as string
}

describe('verification edge cases', () => {
  it('rejects a proof older than 60 s without counting a verifier disagreement', async () => {
    const accessToken = await dpopToken()
    const url = `${kit.api}/orders`
    const proof = await makeProof(dpopKey, {
      htm: 'GET', htu: url, accessToken, nonce: kit.rs.currentNonce() ?? '', iat: Math.floor(Date.now() / 1000) - 120,
    })
    const result = await callResource({ url, agent, accessToken, dpopKey, proof })
    expect(result.status).toBe(401)
    expect(result.body['error']).toBe('invalid_dpop_proof')
    expect(kit.rs.counters()).toMatchObject({ rejectedProofs: 1, verifierDisagreements: 0 })
  })

  it('rejects a proof signed by another key and one carrying a private jwk', async () => {
    const accessToken = await dpopToken()
    const url = `${kit.api}/orders`
    const nonce = kit.rs.currentNonce() ?? ''
    const otherKey = await newDpopKey()
    const wrongKey = await callResource({ url, agent, accessToken, dpopKey: otherKey, nonce })
    expect(wrongKey.status).toBe(401)

    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
    const privateJwk = await exportJWK(privateKey)
    const leaky = await new SignJWT({
      htm: 'GET', htu: url, jti: randomUUID(), nonce, ath: createHash('sha256').update(accessToken).digest('base64url'),
    })
      .setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk: privateJwk })
      .setIssuedAt()
      .sign(privateKey)
    const leaked = await callResource({ url, agent, accessToken, dpopKey, proof: leaky })
    expect(leaked.status).toBe(401)
    expect(kit.rs.counters()).toMatchObject({ rejected: 2, verified: 0, verifierDisagreements: 0 })
  })

  it('never accepts an expired token, as seen() shows', async () => {
    const accessToken = await dpopToken()
    const url = `${kit.api}/orders`
    const nonce = kit.rs.currentNonce() ?? ''
    expect((await callResource({ url, agent, accessToken, dpopKey, nonce })).status).toBe(200)
    await new Promise((resolve) => setTimeout(resolve, 2100))
    const expired = await callResource({ url, agent, accessToken, dpopKey, nonce })
    expect(expired.status).toBe(401)
    expect(expired.body['error']).toBe('invalid_token')
    const seen = kit.rs.seen()
    expect(seen).toHaveLength(2)
    for (const entry of seen.filter((request) => request.status === 200)) {
      expect(entry.exp ?? 0).toBeGreaterThan(entry.at / 1000)
    }
    expect(seen[1]).toMatchObject({ status: 401, error: 'invalid_token', binding: 'dpop' })
    expect(kit.rs.counters().verifierDisagreements).toBe(0)
  })

  it('revokeClient rejects tokens the client already holds', async () => {
    const accessToken = await dpopToken()
    kit.rs.revokeClient(kit.clients.secretPost.clientId)
    const result = await callResource({ url: `${kit.api}/orders`, agent, accessToken, dpopKey, nonce: kit.rs.currentNonce() ?? '' })
    expect(result.status).toBe(401)
    expect(result.body['error_description']).toBe('token revoked')
  })

  it('accepts a private_key_jwt client', async () => {
    const client = kit.clients.privateKeyJwt
    // A client assertion is single-use: sign a new one for the retry after use_dpop_nonce.
    const assertion = (): Promise<string> => new SignJWT({})
      .setProtectedHeader({ alg: client.alg, kid: client.kid })
      .setIssuer(client.clientId)
      .setSubject(client.clientId)
      .setAudience(kit.issuer)
      .setJti(randomUUID())
      .setIssuedAt()
      .setExpirationTime('1m')
      .sign(client.privateKey)
    const token = await requestToken({
      tokenEndpoint: `${kit.issuer}/token`,
      agent,
      dpopKey,
      params: async () => ({
        client_id: client.clientId,
        client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
        client_assertion: await assertion(),
      }),
    })
    expect(token.status, JSON.stringify(token.body)).toBe(200)
    expect(token.nonceRetries).toBe(1)
  })

  it('refuses an expired client certificate for tls_client_auth', async () => {
    const expiredAgent = agentFor(kit.ca, kit.pki.expired)
    try {
      const token = await requestToken({
        tokenEndpoint: `${kit.as.mtlsOrigin}/token`,
        agent: expiredAgent,
        clientId: kit.clients.tlsClientAuth.clientId,
      })
      expect(token.status).toBe(401)
      expect(token.body['error']).toBe('invalid_client')
    } finally {
      await expiredAgent.close()
    }
  })
})

describe('control API and routes', () => {
  it('drives the RS over /_testkit/ and mounts custom routes behind verification', async () => {
    const post = async (action: string, body: unknown): Promise<Record<string, unknown>> => {
      const response = await fetch(`${kit.api}/_testkit/${action}`, {
        method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' }, dispatcher: agent,
      })
      expect(response.status).toBe(200)
      return (await response.json()) as Record<string, unknown>
    }
    const { nonce } = await post('rotate-nonce', {})
    expect(nonce).toBe(kit.rs.currentNonce())

    kit.rs.route('/mcp', async ({ res, auth, body }) => {
      res.writeHead(201, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ custom: true, client: auth.claims['client_id'], echoed: body.toString('utf8') }))
    })
    const accessToken = await dpopToken()
    const result = await callResource({
      url: `${kit.api}/mcp`, agent, accessToken, dpopKey, method: 'POST', body: 'ping', nonce: String(nonce),
    })
    expect(result.status).toBe(201)
    expect(result.body).toEqual({ custom: true, client: kit.clients.secretPost.clientId, echoed: 'ping' })

    await post('revoke-token', { access_token: accessToken })
    const revoked = await callResource({ url: `${kit.api}/mcp`, agent, accessToken, dpopKey, nonce: String(nonce) })
    expect(revoked.status).toBe(401)
    const counters = (await (await fetch(`${kit.api}/_testkit/counters`, { dispatcher: agent })).json()) as Record<string, unknown>
    expect(counters).toMatchObject({ verified: 1, invalidToken: 1 })
  })
})

describe('standalone pieces', () => {
  it('a second resource server origin gets its own audience', async () => {
    const second = await startResourceServer({ pki: kit.pki, issuer: kit.issuer, jwksUri: kit.as.jwksUri, requireNonce: false })
    try {
      kit.as.addResource(second.resource)
      const token = await requestToken({
        tokenEndpoint: `${kit.issuer}/token`,
        agent,
        authenticate: { client: kit.clients.secretPost },
        dpopKey,
        params: { resource: second.resource },
      })
      expect(token.status, JSON.stringify(token.body)).toBe(200)
      const accessToken = token.body['access_token'] as string
      const ok = await callResource({ url: `${second.origin}/x`, agent, accessToken, dpopKey })
      expect(ok.status).toBe(200)
      expect(ok.nonceRetries).toBe(0)
      const wrongAudience = await callResource({ url: `${kit.api}/x`, agent, accessToken, dpopKey, nonce: kit.rs.currentNonce() ?? '' })
      expect(wrongAudience.status).toBe(401)
      expect(wrongAudience.body['error']).toBe('invalid_token')

      const unknown = await requestToken({
        tokenEndpoint: `${kit.issuer}/token`,
        agent,
        authenticate: { client: kit.clients.secretPost },
        params: { resource: 'https://unknown.example/' },
      })
      expect(unknown.body['error']).toBe('invalid_target')
    } finally {
      await second.close()
    }
  })

  it('without nonces, neither server challenges', async () => {
    const quiet = await startTestkit({ asRequiresNonce: false, rsRequiresNonce: false })
    const quietAgent = agentFor(quiet.ca)
    try {
      const token = await requestToken({
        tokenEndpoint: `${quiet.issuer}/token`,
        agent: quietAgent,
        authenticate: { client: quiet.clients.secretBasic },
        dpopKey,
      })
      expect(token.status).toBe(200)
      expect(token.nonceRetries).toBe(0)
      const result = await callResource({ url: `${quiet.api}/orders`, agent: quietAgent, accessToken: token.body['access_token'] as string, dpopKey })
      expect(result.status).toBe(200)
      expect(result.nonceRetries).toBe(0)
      expect(quiet.rs.currentNonce()).toBeUndefined()
    } finally {
      await quietAgent.close()
      await quiet.close()
    }
  })
})
