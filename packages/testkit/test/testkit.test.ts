import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { decodeJwt } from 'jose'
import { fetch, type Agent } from 'undici'
import { startTestkit, type Testkit } from '../src/index.js'
import {
  agentFor,
  callResource,
  makeProof,
  newDpopKey,
  requestToken,
  type DpopKey,
} from './helpers/hand-client.js'

let kit: Testkit
let agent: Agent
let workloadAgent: Agent
let otherAgent: Agent
let dpopKey: DpopKey

beforeAll(async () => {
  const started = Date.now()
  kit = await startTestkit()
  expect(Date.now() - started).toBeLessThan(2000)
  agent = agentFor(kit.ca)
  workloadAgent = agentFor(kit.ca, kit.pki.workload)
  otherAgent = agentFor(kit.ca, kit.pki.other)
  dpopKey = await newDpopKey()
})

afterAll(async () => {
  await Promise.all([agent?.close(), workloadAgent?.close(), otherAgent?.close()])
  await kit?.close()
})

beforeEach(() => {
  kit.as.resetCounters()
  kit.rs.resetCounters()
  kit.rs.clearRevocations()
  kit.rs.clearStepUp()
  kit.rs.clearClaims()
})

async function dpopToken(params: Record<string, string> = {}): Promise<string> {
  const token = await requestToken({
    tokenEndpoint: `${kit.issuer}/token`,
    agent,
    authenticate: { client: kit.clients.secretBasic },
    dpopKey,
    params: { scope: 'orders:read', ...params },
  })
  expect(token.status, JSON.stringify(token.body)).toBe(200)
  expect(token.body['token_type']).toBe('DPoP')
  return token.body['access_token'] as string
}

describe('metadata', () => {
  it('publishes RFC 8414 metadata with mTLS aliases', async () => {
    const response = await fetch(`${kit.issuer}/.well-known/oauth-authorization-server`, { dispatcher: agent })
    const metadata = (await response.json()) as Record<string, unknown>
    expect(metadata['issuer']).toBe(kit.issuer)
    expect(metadata['token_endpoint']).toBe(`${kit.issuer}/token`)
    expect(metadata['mtls_endpoint_aliases']).toEqual({
      token_endpoint: `${kit.as.mtlsOrigin}/token`,
      revocation_endpoint: `${kit.as.mtlsOrigin}/token/revocation`,
      introspection_endpoint: `${kit.as.mtlsOrigin}/token/introspection`,
      backchannel_authentication_endpoint: `${kit.as.mtlsOrigin}/backchannel`,
    })
    expect(metadata['dpop_signing_alg_values_supported']).toEqual(['ES256', 'ES384', 'EdDSA', 'PS256', 'RS256'])
    expect(metadata['tls_client_certificate_bound_access_tokens']).toBe(true)
  })

  it('publishes RFC 9728 metadata and challenges requests without credentials', async () => {
    const metadata = (await (await fetch(`${kit.api}/.well-known/oauth-protected-resource`, { dispatcher: agent })).json()) as Record<string, unknown>
    expect(metadata).toMatchObject({
      resource: kit.resource,
      authorization_servers: [kit.issuer],
      dpop_bound_access_tokens_required: false,
      tls_client_certificate_bound_access_tokens: true,
    })
    const response = await fetch(`${kit.api}/orders`, { dispatcher: agent })
    expect(response.status).toBe(401)
    expect(response.headers.get('www-authenticate')).toBe(
      `DPoP algs="ES256 ES384 EdDSA PS256 RS256", Bearer resource_metadata="${kit.api}/.well-known/oauth-protected-resource"`,
    )
    expect(response.headers.get('dpop-nonce')).toBe(kit.rs.currentNonce())
    await response.arrayBuffer()
  })
})

describe('DPoP', () => {
  it('(1) accepts a valid DPoP-bound token and proof, after the AS and RS nonce challenges', async () => {
    const token = await requestToken({
      tokenEndpoint: `${kit.issuer}/token`,
      agent,
      authenticate: { client: kit.clients.secretBasic },
      dpopKey,
      params: { scope: 'orders:read' },
    })
    expect(token.status).toBe(200)
    expect(token.nonceRetries).toBe(1)
    const accessToken = token.body['access_token'] as string
    const claims = decodeJwt(accessToken)
    expect(claims.aud).toBe(kit.resource)
    expect((claims['cnf'] as { jkt: string }).jkt).toBeTypeOf('string')

    const result = await callResource({ url: `${kit.api}/orders?limit=1`, agent, accessToken, dpopKey })
    expect(result.status, JSON.stringify(result.body)).toBe(200)
    expect(result.nonceRetries).toBe(1)
    expect(result.body).toMatchObject({ ok: true, method: 'GET', path: '/orders', binding: 'dpop', client_id: kit.clients.secretBasic.clientId })

    const rs = kit.rs.counters()
    expect(rs.verified).toBe(1)
    expect(rs.nonceChallenges).toBe(1)
    expect(rs.verifierDisagreements).toBe(0)
    expect(rs.lastProof?.header['typ']).toBe('dpop+jwt')
    const as = kit.as.counters()
    expect(as).toMatchObject({ tokenRequests: 2, tokensIssued: 1, nonceChallenges: 1, tokenErrors: 0 })
    expect(as.byBinding.dpop).toBe(1)
    expect(as.byClient[kit.clients.secretBasic.clientId]).toBe(2)
  })

  it('(2) rejects a proof with a wrong htu', async () => {
    const accessToken = await dpopToken()
    const proof = await makeProof(dpopKey, {
      htm: 'GET',
      htu: `${kit.api}/elsewhere`,
      accessToken,
      nonce: kit.rs.currentNonce() ?? '',
    })
    const result = await callResource({ url: `${kit.api}/orders`, agent, accessToken, dpopKey, proof })
    expect(result.status).toBe(401)
    expect(result.wwwAuthenticate).toMatch(/^DPoP error="invalid_dpop_proof"/)
    const rs = kit.rs.counters()
    expect(rs.rejectedProofs).toBe(1)
    expect(rs.verified).toBe(0)
    expect(rs.verifierDisagreements).toBe(0)
  })

  it('(3) rejects a replayed proof jti', async () => {
    const accessToken = await dpopToken()
    const url = `${kit.api}/orders`
    const proof = await makeProof(dpopKey, { htm: 'GET', htu: url, accessToken, nonce: kit.rs.currentNonce() ?? '' })
    const first = await callResource({ url, agent, accessToken, dpopKey, proof })
    expect(first.status).toBe(200)
    const replay = await callResource({ url, agent, accessToken, dpopKey, proof })
    expect(replay.status).toBe(401)
    expect(replay.body['error']).toBe('invalid_dpop_proof')
    expect(kit.rs.counters()).toMatchObject({ verified: 1, replayedJti: 1, verifierDisagreements: 0 })
  })

  it('rejects a stale nonce after rotateNonce and accepts the new one', async () => {
    const accessToken = await dpopToken()
    const old = kit.rs.currentNonce()
    const rotated = kit.rs.rotateNonce()
    expect(rotated).not.toBe(old)
    const result = await callResource({ url: `${kit.api}/orders`, agent, accessToken, dpopKey, ...(old === undefined ? {} : { nonce: old }) })
    expect(result.status).toBe(200)
    expect(result.nonceRetries).toBe(1)
    expect(kit.rs.counters().nonceChallenges).toBe(1)
  })

  it('echoes the body of a POST', async () => {
    const accessToken = await dpopToken()
    const result = await callResource({
      url: `${kit.api}/orders`, agent, accessToken, dpopKey, method: 'POST', body: 'hello', nonce: kit.rs.currentNonce() ?? '',
    })
    expect(result.status).toBe(200)
    expect(result.body).toMatchObject({ method: 'POST', body: 'hello' })
  })

  it('rejects a DPoP-bound token sent as Bearer', async () => {
    const accessToken = await dpopToken()
    const result = await callResource({ url: `${kit.api}/orders`, agent, accessToken })
    expect(result.status).toBe(401)
    expect(result.wwwAuthenticate).toMatch(/^Bearer error="invalid_token"/)
  })

  it('(5) revokeToken makes the token invalid_token', async () => {
    const accessToken = await dpopToken()
    const nonce = kit.rs.currentNonce() ?? ''
    expect((await callResource({ url: `${kit.api}/orders`, agent, accessToken, dpopKey, nonce })).status).toBe(200)
    kit.rs.revokeToken(accessToken)
    const result = await callResource({ url: `${kit.api}/orders`, agent, accessToken, dpopKey, nonce })
    expect(result.status).toBe(401)
    expect(result.wwwAuthenticate).toBe(
      'DPoP error="invalid_token", error_description="token revoked", algs="ES256 ES384 EdDSA PS256 RS256"',
    )
    expect(kit.rs.counters()).toMatchObject({ verified: 1, invalidToken: 1 })
  })

  it('requires DPoP for the dpopRequired client', async () => {
    const result = await requestToken({
      tokenEndpoint: `${kit.issuer}/token`,
      agent,
      authenticate: { client: kit.clients.dpopRequired },
      params: { scope: 'orders:read' },
    })
    expect(result.status).toBe(400)
    expect(kit.as.counters().tokenErrors).toBe(1)
  })

  it('fails a client that does not form-url-encode its Basic secret', async () => {
    const result = await requestToken({
      tokenEndpoint: `${kit.issuer}/token`,
      agent,
      authenticate: { client: kit.clients.secretBasic, encode: false },
    })
    expect(result.status).toBe(401)
    expect(result.body['error']).toBe('invalid_client')
  })
})

describe('step-up and claims stand-ins', () => {
  it('challenges for acr and accepts a token requested with acr_values', async () => {
    kit.rs.requireStepUp('/admin', { acr_values: 'urn:bound:mfa', max_age: 300 })
    const plain = await dpopToken()
    const nonce = kit.rs.currentNonce() ?? ''
    const denied = await callResource({ url: `${kit.api}/admin/x`, agent, accessToken: plain, dpopKey, nonce })
    expect(denied.status).toBe(401)
    expect(denied.wwwAuthenticate).toContain('error="insufficient_user_authentication"')
    expect(denied.wwwAuthenticate).toContain('acr_values="urn:bound:mfa", max_age=300')

    const stepped = await dpopToken({ acr_values: 'urn:bound:mfa' })
    const allowed = await callResource({ url: `${kit.api}/admin/x`, agent, accessToken: stepped, dpopKey, nonce })
    expect(allowed.status).toBe(200)
    expect(allowed.body['acr']).toBe('urn:bound:mfa')
    expect(kit.rs.counters().stepUpChallenges).toBe(1)
  })

  it('challenges for claims and accepts a token requested with the claims parameter', async () => {
    const claimsRequest = { access_token: { acrs: { essential: true, value: 'cp1' } } }
    kit.rs.requireClaims('/reports', claimsRequest)
    const nonce = kit.rs.currentNonce() ?? ''
    const denied = await callResource({ url: `${kit.api}/reports`, agent, accessToken: await dpopToken(), dpopKey, nonce })
    expect(denied.status).toBe(401)
    const encoded = /claims="([^"]+)"/.exec(denied.wwwAuthenticate ?? '')?.[1] ?? ''
    expect(JSON.parse(Buffer.from(encoded, 'base64url').toString('utf8'))).toEqual(claimsRequest)

    const withClaims = await dpopToken({ claims: JSON.stringify(claimsRequest) })
    const allowed = await callResource({ url: `${kit.api}/reports`, agent, accessToken: withClaims, dpopKey, nonce })
    expect(allowed.status).toBe(200)
  })
})

describe('mTLS', () => {
  it('(4) a tls_client_auth token works over the workload cert and is refused over another cert', async () => {
    const token = await requestToken({
      tokenEndpoint: `${kit.as.mtlsOrigin}/token`,
      agent: workloadAgent,
      clientId: kit.clients.tlsClientAuth.clientId,
      params: { scope: 'orders:read orders:write' },
    })
    expect(token.status, JSON.stringify(token.body)).toBe(200)
    expect(token.body['token_type']).toBe('Bearer')
    const accessToken = token.body['access_token'] as string
    expect((decodeJwt(accessToken)['cnf'] as Record<string, string>)['x5t#S256']).toBe(kit.pki.workload.x5tS256)

    const ok = await callResource({ url: `${kit.api}/orders`, agent: workloadAgent, accessToken })
    expect(ok.status, JSON.stringify(ok.body)).toBe(200)
    expect(ok.body).toMatchObject({ binding: 'mtls', x5t: kit.pki.workload.x5tS256 })

    const refused = await callResource({ url: `${kit.api}/orders`, agent: otherAgent, accessToken })
    expect(refused.status).toBe(401)
    expect(refused.wwwAuthenticate).toMatch(/^Bearer error="invalid_token"/)

    const noCert = await callResource({ url: `${kit.api}/orders`, agent, accessToken })
    expect(noCert.status).toBe(401)

    expect(kit.rs.counters()).toMatchObject({ verified: 1, invalidToken: 2 })
    expect(kit.as.counters().byBinding.mtls).toBe(1)
    expect(kit.as.counters().byListener.mtls).toBe(1)
  })

  it('refuses tls_client_auth with a different subject and on the main listener', async () => {
    const wrongSubject = await requestToken({
      tokenEndpoint: `${kit.as.mtlsOrigin}/token`,
      agent: otherAgent,
      clientId: kit.clients.tlsClientAuth.clientId,
    })
    expect(wrongSubject.status).toBe(401)
    const mainListener = await requestToken({
      tokenEndpoint: `${kit.issuer}/token`,
      agent: workloadAgent,
      clientId: kit.clients.tlsClientAuth.clientId,
    })
    expect(mainListener.status).toBe(401)
  })

  it('accepts the rotated workload cert (same subject DN) for tls_client_auth', async () => {
    const rotatedAgent = agentFor(kit.ca, kit.pki.workloadRotated)
    try {
      const token = await requestToken({
        tokenEndpoint: `${kit.as.mtlsOrigin}/token`,
        agent: rotatedAgent,
        clientId: kit.clients.tlsClientAuth.clientId,
      })
      expect(token.status).toBe(200)
      expect((decodeJwt(token.body['access_token'] as string)['cnf'] as Record<string, string>)['x5t#S256'])
        .toBe(kit.pki.workloadRotated.x5tS256)
    } finally {
      await rotatedAgent.close()
    }
  })

  it('issues certificate-bound tokens to the self_signed_tls_client_auth client', async () => {
    const selfSignedAgent = agentFor(kit.ca, kit.pki.selfSigned)
    try {
      const token = await requestToken({
        tokenEndpoint: `${kit.as.mtlsOrigin}/token`,
        agent: selfSignedAgent,
        clientId: kit.clients.selfSignedTlsClientAuth.clientId,
      })
      expect(token.status, JSON.stringify(token.body)).toBe(200)
      const ok = await callResource({
        url: `${kit.api}/orders`, agent: selfSignedAgent, accessToken: token.body['access_token'] as string,
      })
      expect(ok.status).toBe(200)
    } finally {
      await selfSignedAgent.close()
    }
  })
})

describe('outage', () => {
  it('(6) stop()/start() keeps the issuer URL and the RS keeps verifying', async () => {
    const issuer = kit.issuer
    const accessToken = await dpopToken()
    await kit.as.stop()
    expect(kit.as.running).toBe(false)
    const fresh = agentFor(kit.ca)
    try {
      await expect(fetch(`${issuer}/.well-known/oauth-authorization-server`, { dispatcher: fresh })).rejects.toThrow()
    } finally {
      await fresh.close()
    }
    const during = await callResource({ url: `${kit.api}/orders`, agent, accessToken, dpopKey, nonce: kit.rs.currentNonce() ?? '' })
    expect(during.status).toBe(200)

    await kit.as.start()
    expect(kit.as.issuer).toBe(issuer)
    const metadata = (await (await fetch(`${issuer}/.well-known/oauth-authorization-server`, { dispatcher: agent })).json()) as Record<string, unknown>
    expect(metadata['issuer']).toBe(issuer)
    await dpopToken()
  })
})
