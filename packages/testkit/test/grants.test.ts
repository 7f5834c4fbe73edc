import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { calculateJwkThumbprint, decodeJwt } from 'jose'
import { fetch, type Agent } from 'undici'
import {
  createWorkloadIdentityIssuer,
  GRANT_TYPE_JWT_BEARER,
  GRANT_TYPE_TOKEN_EXCHANGE,
  startTestkit,
  TOKEN_TYPE_ACCESS_TOKEN,
  TOKEN_TYPE_JWT,
  type SecretClient,
  type Testkit,
} from '../src/index.js'
import {
  agentFor,
  basicAuthorization,
  callResource,
  newDpopKey,
  requestToken,
  type DpopKey,
  type TokenResult,
} from './helpers/hand-client.js'

let kit: Testkit
let agent: Agent
let workloadAgent: Agent
let dpopKey: DpopKey

beforeAll(async () => {
  kit = await startTestkit()
  agent = agentFor(kit.ca)
  workloadAgent = agentFor(kit.ca, kit.pki.workload)
  dpopKey = await newDpopKey()
})

afterAll(async () => {
  await Promise.all([agent?.close(), workloadAgent?.close()])
  await kit?.close()
})

beforeEach(() => {
  kit.as.resetCounters()
  kit.rs.resetCounters()
  kit.rs.clearRevocations()
})

interface GrantRequest {
  client?: SecretClient
  clientId?: string
  dpopKey?: DpopKey
  params: Record<string, string>
}

function grant(request: GrantRequest): Promise<TokenResult> {
  return requestToken({
    tokenEndpoint: kit.as.tokenEndpoint,
    agent,
    ...(request.client === undefined ? {} : { authenticate: { client: request.client } }),
    ...(request.clientId === undefined ? {} : { clientId: request.clientId }),
    ...(request.dpopKey === undefined ? {} : { dpopKey: request.dpopKey }),
    params: request.params,
  })
}

/** Token exchange; `key` null sends no DPoP proof. */
async function exchange(subjectToken: string, extra: Record<string, string> = {}, client: SecretClient = kit.clients.secretBasic, key: DpopKey | null = dpopKey): Promise<TokenResult> {
  return grant({
    client,
    ...(key === null ? {} : { dpopKey: key }),
    params: {
      grant_type: GRANT_TYPE_TOKEN_EXCHANGE,
      subject_token: subjectToken,
      subject_token_type: TOKEN_TYPE_JWT,
      ...extra,
    },
  })
}

async function refresh(refreshToken: string, options: { client?: SecretClient; clientId?: string; key?: DpopKey | undefined } = {}): Promise<TokenResult> {
  const key = 'key' in options ? options.key : dpopKey
  return grant({
    ...(options.clientId === undefined ? { client: options.client ?? kit.clients.secretBasic } : { clientId: options.clientId }),
    ...(key === undefined ? {} : { dpopKey: key }),
    params: { grant_type: 'refresh_token', refresh_token: refreshToken },
  })
}

async function revoke(token: string, client: SecretClient = kit.clients.secretBasic, endpoint = kit.as.revocationEndpoint): Promise<{ status: number; body: string }> {
  const response = await fetch(endpoint, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      authorization: basicAuthorization(client.clientId, client.clientSecret),
    },
    body: new URLSearchParams({ token }).toString(),
    dispatcher: agent,
  })
  return { status: response.status, body: await response.text() }
}

describe('discovery', () => {
  it('lists the new grant types and the public client auth method', async () => {
    const metadata = (await (await fetch(kit.as.metadataUrl, { dispatcher: agent })).json()) as Record<string, string[]>
    expect(metadata['grant_types_supported']).toEqual(expect.arrayContaining([
      'client_credentials', 'refresh_token', GRANT_TYPE_TOKEN_EXCHANGE, GRANT_TYPE_JWT_BEARER,
    ]))
    expect(metadata['token_endpoint_auth_methods_supported']).toContain('none')
  })
})

describe('RFC 8693 token exchange', () => {
  it('exchanges a workload identity token for a DPoP-bound access token (nonce answered) that the RS accepts', async () => {
    const subjectToken = await kit.workloadIdentity.mintToken()
    const token = await exchange(subjectToken, { scope: 'orders:read', resource: kit.resource })
    expect(token.status, JSON.stringify(token.body)).toBe(200)
    expect(token.nonceRetries).toBe(1)
    expect(token.body).toMatchObject({
      token_type: 'DPoP',
      issued_token_type: TOKEN_TYPE_ACCESS_TOKEN,
      expires_in: 300,
      scope: 'orders:read',
    })
    expect(token.body['refresh_token']).toBeUndefined()

    const accessToken = token.body['access_token'] as string
    const claims = decodeJwt(accessToken)
    expect(claims).toMatchObject({
      iss: kit.issuer,
      aud: kit.resource,
      sub: 'system:serviceaccount:ci:deployer',
      client_id: kit.clients.secretBasic.clientId,
      scope: 'orders:read',
    })
    expect((claims['cnf'] as { jkt: string }).jkt).toBe(await calculateJwkThumbprint(dpopKey.publicJwk))

    const result = await callResource({ url: `${kit.api}/orders`, agent, accessToken, dpopKey })
    expect(result.status, JSON.stringify(result.body)).toBe(200)
    expect(result.body).toMatchObject({ binding: 'dpop', sub: 'system:serviceaccount:ci:deployer' })
    expect(kit.rs.counters().verifierDisagreements).toBe(0)

    const counters = kit.as.counters()
    expect(counters).toMatchObject({ tokenRequests: 2, tokensIssued: 1, nonceChallenges: 1, tokenErrors: 0 })
    expect(counters.byGrant).toEqual({ [GRANT_TYPE_TOKEN_EXCHANGE]: 1 })
    expect(counters.byBinding.dpop).toBe(1)
  })

  it('takes sub, audience and scope from the request; a Bearer token without DPoP', async () => {
    const subjectToken = await kit.workloadIdentity.mintToken({ sub: 'repo:bound/sdk:ref:refs/heads/main', claims: { repository: 'bound/sdk' } })
    const token = await exchange(subjectToken, { audience: kit.resource, scope: 'orders:write' }, kit.clients.secretPost, null)
    expect(token.status, JSON.stringify(token.body)).toBe(200)
    expect(token.body['token_type']).toBe('Bearer')
    expect(decodeJwt(token.body['access_token'] as string)).toMatchObject({ sub: 'repo:bound/sdk:ref:refs/heads/main', scope: 'orders:write', aud: kit.resource })
    expect(kit.as.counters().byBinding.bearer).toBe(1)
  })

  it('issues certificate-bound tokens to a tls_client_auth client', async () => {
    const token = await requestToken({
      tokenEndpoint: kit.as.mtlsTokenEndpoint,
      agent: workloadAgent,
      clientId: kit.clients.tlsClientAuth.clientId,
      params: {
        grant_type: GRANT_TYPE_TOKEN_EXCHANGE,
        subject_token: await kit.workloadIdentity.mintToken(),
        subject_token_type: TOKEN_TYPE_JWT,
      },
    })
    expect(token.status, JSON.stringify(token.body)).toBe(200)
    const accessToken = token.body['access_token'] as string
    expect((decodeJwt(accessToken)['cnf'] as Record<string, string>)['x5t#S256']).toBe(kit.pki.workload.x5tS256)
    const result = await callResource({ url: `${kit.api}/orders`, agent: workloadAgent, accessToken })
    expect(result.status, JSON.stringify(result.body)).toBe(200)
    expect(result.body).toMatchObject({ binding: 'mtls', sub: 'system:serviceaccount:ci:deployer' })
  })

  it('answers invalid_grant for a subject token with a wrong key, a wrong audience or an expired one', async () => {
    const impostor = await createWorkloadIdentityIssuer({ issuer: kit.workloadIdentity.issuer, defaultAudience: kit.issuer })
    const bad = [
      await impostor.mintToken(),
      await kit.workloadIdentity.mintToken({ aud: kit.resource }),
      await kit.workloadIdentity.mintToken({ ttlSeconds: -60 }),
      await kit.workloadIdentity.mintToken({ claims: { iss: 'https://elsewhere.test' } }),
      'not-a-jwt',
    ]
    for (const subjectToken of bad) {
      const result = await exchange(subjectToken, {}, kit.clients.secretBasic, null)
      expect(result.status, subjectToken).toBe(400)
      expect(result.body['error']).toBe('invalid_grant')
    }
    expect(kit.as.counters()).toMatchObject({ tokensIssued: 0, tokenErrors: bad.length })
  })

  it('refuses other subject token types, delegation and unknown resources', async () => {
    const subjectToken = await kit.workloadIdentity.mintToken()
    const wrongType = await exchange(subjectToken, { subject_token_type: TOKEN_TYPE_ACCESS_TOKEN }, kit.clients.secretBasic, null)
    expect(wrongType.status).toBe(400)
    expect(wrongType.body['error']).toBe('invalid_request')
    const actor = await exchange(subjectToken, { actor_token: subjectToken, actor_token_type: TOKEN_TYPE_JWT }, kit.clients.secretBasic, null)
    expect(actor.body['error']).toBe('invalid_request')
    const unknown = await exchange(subjectToken, { resource: 'https://unknown.test/' }, kit.clients.secretBasic, null)
    expect(unknown.body['error']).toBe('invalid_target')
  })

  it('authenticates the client as usual and enforces dpop_bound_access_tokens', async () => {
    const subjectToken = await kit.workloadIdentity.mintToken()
    const wrongSecret = await exchange(subjectToken, {}, { ...kit.clients.secretBasic, clientSecret: 'nope' }, null)
    expect(wrongSecret.status).toBe(401)
    expect(wrongSecret.body['error']).toBe('invalid_client')
    const noProof = await exchange(subjectToken, {}, kit.clients.dpopRequired, null)
    expect(noProof.status).toBe(400)
    expect(noProof.body['error']).toBe('invalid_grant')
  })
})

describe('RFC 7523 JWT bearer', () => {
  it('accepts an assertion once (also across a use_dpop_nonce retry) and refuses its replay', async () => {
    const assertion = await kit.workloadIdentity.mintToken({ sub: 'spiffe://bound.test/ns/ci/sa/deployer' })
    const params = { grant_type: GRANT_TYPE_JWT_BEARER, assertion, scope: 'orders:read' }
    const first = await grant({ client: kit.clients.secretPost, dpopKey, params })
    expect(first.status, JSON.stringify(first.body)).toBe(200)
    expect(first.nonceRetries).toBe(1)
    expect(first.body['token_type']).toBe('DPoP')
    expect(first.body['issued_token_type']).toBeUndefined()
    const accessToken = first.body['access_token'] as string
    expect(decodeJwt(accessToken)['sub']).toBe('spiffe://bound.test/ns/ci/sa/deployer')
    expect((await callResource({ url: `${kit.api}/orders`, agent, accessToken, dpopKey })).status).toBe(200)

    const replay = await grant({ client: kit.clients.secretPost, dpopKey, params })
    expect(replay.status).toBe(400)
    expect(replay.body['error']).toBe('invalid_grant')
    expect(kit.as.counters().byGrant).toEqual({ [GRANT_TYPE_JWT_BEARER]: 1 })
  })

  it('answers invalid_grant for a bad assertion', async () => {
    const impostor = await createWorkloadIdentityIssuer({ issuer: kit.workloadIdentity.issuer, defaultAudience: kit.issuer })
    for (const assertion of [await impostor.mintToken(), await kit.workloadIdentity.mintToken({ ttlSeconds: 0 }), await kit.workloadIdentity.mintToken({ aud: 'https://other-as.test' })]) {
      const result = await grant({ client: kit.clients.secretBasic, params: { grant_type: GRANT_TYPE_JWT_BEARER, assertion } })
      expect(result.status).toBe(400)
      expect(result.body['error']).toBe('invalid_grant')
    }
  })
})

describe('refresh tokens of the workload grants', () => {
  it('are issued only for offline_access, rotate on every use, and a reuse revokes the whole family', async () => {
    const subjectToken = await kit.workloadIdentity.mintToken()
    const initial = await exchange(subjectToken, { scope: 'orders:read offline_access' })
    expect(initial.status, JSON.stringify(initial.body)).toBe(200)
    const rt1 = initial.body['refresh_token'] as string
    expect(rt1).toBeTypeOf('string')
    expect(initial.body['scope']).toBe('orders:read')

    const second = await refresh(rt1)
    expect(second.status, JSON.stringify(second.body)).toBe(200)
    expect(second.body['token_type']).toBe('DPoP')
    const rt2 = second.body['refresh_token'] as string
    expect(rt2).toBeTypeOf('string')
    expect(rt2).not.toBe(rt1)
    const refreshedAccessToken = second.body['access_token'] as string
    expect(decodeJwt(refreshedAccessToken)).toMatchObject({ sub: 'system:serviceaccount:ci:deployer', scope: 'orders:read', aud: kit.resource })
    expect((await callResource({ url: `${kit.api}/orders`, agent, accessToken: refreshedAccessToken, dpopKey })).status).toBe(200)

    const third = await refresh(rt2)
    expect(third.status).toBe(200)
    const rt3 = third.body['refresh_token'] as string

    // rt1 was rotated away: presenting it again is a reuse.
    const reuse = await refresh(rt1)
    expect(reuse.status).toBe(400)
    expect(reuse.body['error']).toBe('invalid_grant')
    // The whole family is gone, the newest refresh token included ...
    const afterReuse = await refresh(rt3)
    expect(afterReuse.status).toBe(400)
    expect(afterReuse.body['error']).toBe('invalid_grant')
    // ... and so are its live access tokens, at the RS.
    const rejected = await callResource({ url: `${kit.api}/orders`, agent, accessToken: third.body['access_token'] as string, dpopKey })
    expect(rejected.status).toBe(401)
    expect(rejected.body['error']).toBe('invalid_token')

    const counters = kit.as.counters()
    expect(counters.refreshReuseDetected).toBe(1)
    expect(counters.byGrant).toEqual({ [GRANT_TYPE_TOKEN_EXCHANGE]: 1, refresh_token: 2 })
  })

  it('need a DPoP proof (with a nonce) when the first token was DPoP-bound, and stay with their client', async () => {
    const initial = await exchange(await kit.workloadIdentity.mintToken(), { scope: 'orders:read offline_access' })
    const rt = initial.body['refresh_token'] as string
    const withoutProof = await refresh(rt, { key: undefined })
    expect(withoutProof.status).toBe(400)
    expect(withoutProof.body['error']).toBe('invalid_grant')
    const otherClient = await refresh(rt, { client: kit.clients.secretPost })
    expect(otherClient.body['error']).toBe('invalid_grant')
    // Neither failure consumed it; a confidential client may refresh with another DPoP key.
    const otherKey = await newDpopKey()
    const ok = await refresh(rt, { key: otherKey })
    expect(ok.status, JSON.stringify(ok.body)).toBe(200)
    expect(ok.nonceRetries).toBe(1)
    expect((decodeJwt(ok.body['access_token'] as string)['cnf'] as { jkt: string }).jkt).toBe(await calculateJwkThumbprint(otherKey.publicJwk))
    expect(kit.as.counters().refreshReuseDetected).toBe(0)
  })

  it('bind a public client\'s refresh token to its DPoP key', async () => {
    const publicKey = await newDpopKey()
    const initial = await grant({
      clientId: kit.clients.publicClient.clientId,
      dpopKey: publicKey,
      params: { grant_type: GRANT_TYPE_JWT_BEARER, assertion: await kit.workloadIdentity.mintToken(), scope: 'offline_access orders:read' },
    })
    expect(initial.status, JSON.stringify(initial.body)).toBe(200)
    const rt = initial.body['refresh_token'] as string
    const otherKey = await refresh(rt, { clientId: kit.clients.publicClient.clientId, key: await newDpopKey() })
    expect(otherKey.status).toBe(400)
    expect(otherKey.body['error']).toBe('invalid_grant')
    const sameKey = await refresh(rt, { clientId: kit.clients.publicClient.clientId, key: publicKey })
    expect(sameKey.status, JSON.stringify(sameKey.body)).toBe(200)
    expect(sameKey.body['refresh_token']).not.toBe(rt)
  })

  it('narrow the scope on request and refuse a wider one', async () => {
    const initial = await exchange(await kit.workloadIdentity.mintToken(), { scope: 'orders:read orders:write offline_access' })
    const narrowed = await grant({ client: kit.clients.secretBasic, dpopKey, params: { grant_type: 'refresh_token', refresh_token: initial.body['refresh_token'] as string, scope: 'orders:read' } })
    expect(narrowed.status, JSON.stringify(narrowed.body)).toBe(200)
    expect(narrowed.body['scope']).toBe('orders:read')
    const wider = await exchange(await kit.workloadIdentity.mintToken(), { scope: 'orders:read offline_access' })
    const refused = await grant({ client: kit.clients.secretBasic, dpopKey, params: { grant_type: 'refresh_token', refresh_token: wider.body['refresh_token'] as string, scope: 'orders:write' } })
    expect(refused.body['error']).toBe('invalid_scope')
  })

  it('leave unknown refresh tokens to oidc-provider (invalid_grant)', async () => {
    const result = await refresh('not-a-refresh-token', { key: undefined })
    expect(result.status).toBe(400)
    expect(result.body['error']).toBe('invalid_grant')
  })
})

describe('revocation bridge (RFC 7009)', () => {
  it('makes the RS reject a revoked JWT access token with invalid_token', async () => {
    const token = await exchange(await kit.workloadIdentity.mintToken())
    const accessToken = token.body['access_token'] as string
    expect((await callResource({ url: `${kit.api}/orders`, agent, accessToken, dpopKey })).status).toBe(200)

    const revoked = await revoke(accessToken)
    expect(revoked.status).toBe(200)
    const after = await callResource({ url: `${kit.api}/orders`, agent, accessToken, dpopKey })
    expect(after.status).toBe(401)
    expect(after.body).toMatchObject({ error: 'invalid_token', error_description: 'token revoked' })
    expect(kit.as.counters().revocations).toBe(1)
  })

  it('works for client credentials tokens on the mTLS alias, and only for the token\'s own client', async () => {
    const token = await grant({ client: kit.clients.secretBasic, dpopKey, params: { scope: 'orders:read' } })
    const accessToken = token.body['access_token'] as string
    const foreign = await revoke(accessToken, kit.clients.secretPost, kit.as.mtlsRevocationEndpoint)
    expect(foreign.status).toBe(400)
    expect(JSON.parse(foreign.body)).toMatchObject({ error: 'invalid_request' })
    const unauthenticated = await revoke(accessToken, { ...kit.clients.secretBasic, clientSecret: 'wrong' })
    expect(unauthenticated.status).toBe(401)
    expect((await callResource({ url: `${kit.api}/orders`, agent, accessToken, dpopKey })).status).toBe(200)

    expect((await revoke(accessToken, kit.clients.secretBasic, kit.as.mtlsRevocationEndpoint)).status).toBe(200)
    expect((await callResource({ url: `${kit.api}/orders`, agent, accessToken, dpopKey })).body['error']).toBe('invalid_token')
    // Garbage and unknown tokens are not an error (RFC 7009 §2.2).
    expect((await revoke('eyJhbGciOiJub25lIn0.e30.')).status).toBe(200)
    expect(kit.as.counters().revocations).toBe(1)
  })

  it('revokes a testkit refresh token (and its access tokens)', async () => {
    const token = await exchange(await kit.workloadIdentity.mintToken(), { scope: 'orders:read offline_access' })
    const refreshToken = token.body['refresh_token'] as string
    expect((await revoke(refreshToken)).status).toBe(200)
    const result = await refresh(refreshToken)
    expect(result.status).toBe(400)
    expect(result.body['error']).toBe('invalid_grant')
    const call = await callResource({ url: `${kit.api}/orders`, agent, accessToken: token.body['access_token'] as string, dpopKey })
    expect(call.body['error']).toBe('invalid_token')
    expect(kit.as.counters()).toMatchObject({ revocations: 1, refreshReuseDetected: 0 })
  })
})
