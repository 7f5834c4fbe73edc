import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { randomUUID } from 'node:crypto'
import { calculateJwkThumbprint, decodeJwt, decodeProtectedHeader, SignJWT } from 'jose'
import { fetch, type Agent } from 'undici'
import {
  CLIENT_ATTESTATION_POP_TYP,
  createClientAttester,
  DEFAULT_ATTESTER_ISSUER,
  GRANT_TYPE_CIBA,
  startTestkit,
  type Testkit,
} from '../src/index.js'
import { agentFor, callResource, makeProof, newDpopKey, type DpopKey } from './helpers/hand-client.js'

let kit: Testkit
let agent: Agent
/** The client instance key, attested by the Client Attester (`cnf.jwk`). */
let instanceKey: DpopKey
let attestation: string

beforeAll(async () => {
  kit = await startTestkit()
  agent = agentFor(kit.ca)
  instanceKey = await newDpopKey()
  attestation = await kit.attester.issue({ clientId: kit.clients.attested.clientId, cnfJwk: instanceKey.publicJwk })
})

afterAll(async () => {
  await agent?.close()
  await kit?.close()
})

beforeEach(() => {
  kit.as.resetCounters()
  kit.rs.resetCounters()
})

interface PopClaims {
  aud?: string
  jti?: string
  iat?: number
  challenge?: string
}

function makePop(claims: PopClaims = {}, key: DpopKey = instanceKey, typ = CLIENT_ATTESTATION_POP_TYP): Promise<string> {
  const payload: Record<string, unknown> = { aud: claims.aud ?? kit.issuer, jti: claims.jti ?? randomUUID() }
  if (claims.challenge !== undefined) payload['challenge'] = claims.challenge
  return new SignJWT(payload)
    .setProtectedHeader({ alg: 'ES256', typ })
    .setIssuedAt(claims.iat ?? Math.floor(Date.now() / 1000))
    .sign(key.privateKey)
}

interface Challenge {
  challenge: string
  dpopNonce: string | undefined
  cacheControl: string | null
}

async function getChallenge(): Promise<Challenge> {
  const response = await fetch(kit.as.challengeEndpoint, { method: 'POST', dispatcher: agent })
  expect(response.status).toBe(200)
  const body = (await response.json()) as { attestation_challenge?: string }
  expect(response.headers.get('oauth-client-attestation-challenge')).toBe(body.attestation_challenge)
  return {
    challenge: String(body.attestation_challenge),
    dpopNonce: response.headers.get('dpop-nonce') ?? undefined,
    cacheControl: response.headers.get('cache-control'),
  }
}

interface Post {
  url?: string
  headers?: Record<string, string>
  params?: Record<string, string>
  dpop?: { key: DpopKey; nonce?: string }
}

interface Answer {
  status: number
  body: Record<string, unknown>
  headers: Headers
}

async function post(request: Post): Promise<Answer> {
  const url = request.url ?? kit.as.tokenEndpoint
  const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded', ...request.headers }
  if (request.dpop !== undefined) {
    headers['dpop'] = await makeProof(request.dpop.key, { htm: 'POST', htu: url, ...(request.dpop.nonce === undefined ? {} : { nonce: request.dpop.nonce }) })
  }
  const response = await fetch(url, {
    method: 'POST',
    headers,
    body: new URLSearchParams({ grant_type: 'client_credentials', ...request.params }).toString(),
    dispatcher: agent,
  })
  const text = await response.text()
  return { status: response.status, body: text === '' ? {} : (JSON.parse(text) as Record<string, unknown>), headers: response.headers as unknown as Headers }
}

/** A token request of the `attested` client with a fresh PoP (challenge and DPoP nonce from the challenge endpoint). */
async function attestedTokenRequest(overrides: { attestation?: string; pop?: string; popClaims?: PopClaims; omitPop?: boolean } = {}): Promise<Answer> {
  const { challenge, dpopNonce } = await getChallenge()
  const pop = overrides.pop ?? await makePop({ challenge, ...overrides.popClaims })
  return post({
    headers: {
      'oauth-client-attestation': overrides.attestation ?? attestation,
      ...(overrides.omitPop === true ? {} : { 'oauth-client-attestation-pop': pop }),
    },
    dpop: { key: instanceKey, ...(dpopNonce === undefined ? {} : { nonce: dpopNonce }) },
  })
}

function expectInvalidClient(answer: Answer): void {
  expect(answer.status, JSON.stringify(answer.body)).toBe(401)
  expect(answer.body['error']).toBe('invalid_client')
}

describe('attestation-based client authentication', () => {
  it('publishes the methods, the challenge endpoint and the signing algorithms', async () => {
    const response = await fetch(kit.as.metadataUrl, { dispatcher: agent })
    const metadata = (await response.json()) as Record<string, unknown>
    expect(metadata['token_endpoint_auth_methods_supported']).toEqual(expect.arrayContaining(['attest_jwt_client_auth', 'attest_jwt_client_auth_dpop']))
    expect(metadata['challenge_endpoint']).toBe(kit.as.challengeEndpoint)
    expect(metadata['client_attestation_signing_alg_values_supported']).toContain('ES256')
    expect(metadata['client_attestation_pop_signing_alg_values_supported']).toContain('ES256')
    const challenge = await getChallenge()
    expect(challenge.cacheControl).toMatch(/no-store/)
    expect(challenge.dpopNonce).toBeDefined()
  })

  it('the attester signs typ oauth-client-attestation+jwt with iss, sub, exp and cnf.jwk', () => {
    expect(decodeProtectedHeader(attestation)).toMatchObject({ alg: 'ES256', typ: 'oauth-client-attestation+jwt', kid: kit.attester.jwks.keys[0]?.kid })
    const claims = decodeJwt(attestation)
    expect(claims).toMatchObject({ iss: DEFAULT_ATTESTER_ISSUER, sub: 'attested', cnf: { jwk: instanceKey.publicJwk } })
    expect(claims.exp! - claims.iat!).toBe(3600)
  })

  it('a valid attestation and PoP authenticate the client: a DPoP-bound token the RS accepts', async () => {
    const answer = await attestedTokenRequest()
    expect(answer.status, JSON.stringify(answer.body)).toBe(200)
    expect(answer.body['token_type']).toBe('DPoP')
    const accessToken = answer.body['access_token'] as string
    const claims = decodeJwt(accessToken)
    expect(claims).toMatchObject({ sub: 'attested', client_id: 'attested', aud: kit.resource })
    expect((claims['cnf'] as { jkt?: string }).jkt).toBe(await calculateJwkThumbprint(instanceKey.publicJwk))
    const call = await callResource({ url: `${kit.api}/orders`, agent, accessToken, dpopKey: instanceKey })
    expect(call.status).toBe(200)
    expect(kit.as.counters()).toMatchObject({ attestationsVerified: 1, attestationsRejected: 0, tokensIssued: 1 })
  })

  it('in PoP mode the DPoP key may differ from the attested key', async () => {
    const dpop = await newDpopKey()
    const { challenge, dpopNonce } = await getChallenge()
    const answer = await post({
      headers: { 'oauth-client-attestation': attestation, 'oauth-client-attestation-pop': await makePop({ challenge }) },
      dpop: { key: dpop, ...(dpopNonce === undefined ? {} : { nonce: dpopNonce }) },
    })
    expect(answer.status, JSON.stringify(answer.body)).toBe(200)
    expect((decodeJwt(answer.body['access_token'] as string)['cnf'] as { jkt?: string }).jkt).toBe(await calculateJwkThumbprint(dpop.publicJwk))
  })

  it('a PoP without a challenge gets use_attestation_challenge with the header; the retry succeeds', async () => {
    const { dpopNonce } = await getChallenge()
    const headers = { 'oauth-client-attestation': attestation, 'oauth-client-attestation-pop': await makePop() }
    const first = await post({ headers, dpop: { key: instanceKey, ...(dpopNonce === undefined ? {} : { nonce: dpopNonce }) } })
    expect(first.status).toBe(400)
    expect(first.body['error']).toBe('use_attestation_challenge')
    const challenge = first.headers.get('oauth-client-attestation-challenge')
    expect(challenge).toBeTruthy()
    const retry = await post({
      headers: { 'oauth-client-attestation': attestation, 'oauth-client-attestation-pop': await makePop({ challenge: challenge! }) },
      dpop: { key: instanceKey, ...(dpopNonce === undefined ? {} : { nonce: dpopNonce }) },
    })
    expect(retry.status, JSON.stringify(retry.body)).toBe(200)
    expect(kit.as.counters()).toMatchObject({ attestationChallenges: 1, attestationsVerified: 1 })
  })

  it('a missing PoP is invalid_client', async () => {
    expectInvalidClient(await attestedTokenRequest({ omitPop: true }))
    // and no attestation headers at all
    expectInvalidClient(await post({ params: { client_id: 'attested' } }))
    expect(kit.as.counters().attestationsRejected).toBe(2)
  })

  it('a replayed PoP (same jti) is invalid_client', async () => {
    const { challenge, dpopNonce } = await getChallenge()
    const pop = await makePop({ challenge })
    const send = () => post({
      headers: { 'oauth-client-attestation': attestation, 'oauth-client-attestation-pop': pop },
      dpop: { key: instanceKey, ...(dpopNonce === undefined ? {} : { nonce: dpopNonce }) },
    })
    expect((await send()).status).toBe(200)
    expectInvalidClient(await send())
    expect(kit.as.counters()).toMatchObject({ attestationsVerified: 1, attestationsRejected: 1 })
  })

  it('an attestation signed by an unknown key (same issuer name) is invalid_client', async () => {
    const impostor = await createClientAttester()
    expect(impostor.issuer).toBe(kit.attester.issuer)
    const forged = await impostor.issue({ clientId: 'attested', cnfJwk: instanceKey.publicJwk })
    expectInvalidClient(await attestedTokenRequest({ attestation: forged }))
    // even when its header names the trusted key's kid
    const noKid = await impostor.issue({ clientId: 'attested', cnfJwk: instanceKey.publicJwk, header: { kid: kit.attester.jwks.keys[0]!.kid! } })
    expectInvalidClient(await attestedTokenRequest({ attestation: noKid }))
  })

  it('a PoP with a wrong aud, a stale iat, another key or a wrong typ is invalid_client', async () => {
    expectInvalidClient(await attestedTokenRequest({ popClaims: { aud: 'https://as.example.com' } }))
    expectInvalidClient(await attestedTokenRequest({ popClaims: { iat: Math.floor(Date.now() / 1000) - 120 } }))
    const { challenge } = await getChallenge()
    expectInvalidClient(await attestedTokenRequest({ pop: await makePop({ challenge }, await newDpopKey()) }))
    expectInvalidClient(await attestedTokenRequest({ pop: await makePop({ challenge }, instanceKey, 'JWT') }))
    expect(kit.as.counters()).toMatchObject({ attestationsVerified: 0, attestationsRejected: 4 })
  })

  it('an expired attestation, one for another client or of the wrong typ is invalid_client', async () => {
    const expired = await kit.attester.issue({ clientId: 'attested', cnfJwk: instanceKey.publicJwk, ttlSeconds: -60 })
    expectInvalidClient(await attestedTokenRequest({ attestation: expired }))
    const wrongTyp = await kit.attester.issue({ clientId: 'attested', cnfJwk: instanceKey.publicJwk, header: { typ: 'JWT' } })
    expectInvalidClient(await attestedTokenRequest({ attestation: wrongTyp }))
    const otherClient = await kit.attester.issue({ clientId: kit.clients.secretBasic.clientId, cnfJwk: instanceKey.publicJwk })
    expectInvalidClient(await attestedTokenRequest({ attestation: otherClient }))
  })

  it('DPoP combined mode: the DPoP proof made with the attested key is the PoP', async () => {
    const key = await newDpopKey()
    const combined = await kit.attester.issue({ clientId: kit.clients.attestedDpop.clientId, cnfJwk: key.publicJwk })
    const { dpopNonce } = await getChallenge()
    const answer = await post({ headers: { 'oauth-client-attestation': combined }, dpop: { key, ...(dpopNonce === undefined ? {} : { nonce: dpopNonce }) } })
    expect(answer.status, JSON.stringify(answer.body)).toBe(200)
    expect(decodeJwt(answer.body['access_token'] as string)).toMatchObject({ client_id: 'attested-dpop' })
    const otherKey = await post({ headers: { 'oauth-client-attestation': combined }, dpop: { key: instanceKey, ...(dpopNonce === undefined ? {} : { nonce: dpopNonce }) } })
    expectInvalidClient(otherKey)
  })

  it('authenticates CIBA requests and polls of the attested client (bound to the attested key)', async () => {
    const headers = async (): Promise<Record<string, string>> => ({
      'oauth-client-attestation': attestation,
      'oauth-client-attestation-pop': await makePop({ challenge: (await getChallenge()).challenge }),
    })
    const started = await fetch(kit.as.backchannelAuthenticationEndpoint, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', ...await headers() },
      body: new URLSearchParams({ scope: 'openid orders:read', login_hint: 'carol', acr_values: 'urn:bound:acr:mfa' }).toString(),
      dispatcher: agent,
    })
    const body = (await started.json()) as Record<string, unknown>
    expect(started.status, JSON.stringify(body)).toBe(200)
    const authReqId = String(body['auth_req_id'])
    await kit.ciba.approve(authReqId)
    const token = await post({ headers: await headers(), params: { grant_type: GRANT_TYPE_CIBA, auth_req_id: authReqId } })
    expect(token.status, JSON.stringify(token.body)).toBe(200)
    expect(decodeJwt(token.body['access_token'] as string)).toMatchObject({ sub: 'carol', client_id: 'attested', acr: 'urn:bound:acr:mfa' })
  })
})
