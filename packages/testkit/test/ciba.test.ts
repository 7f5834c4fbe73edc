import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { calculateJwkThumbprint, decodeJwt } from 'jose'
import { fetch, type Agent } from 'undici'
import { GRANT_TYPE_CIBA, startTestkit, type CibaRequest, type Testkit } from '../src/index.js'
import {
  agentFor,
  basicAuthorization,
  callResource,
  newDpopKey,
  requestToken,
  type DpopKey,
  type TokenResult,
} from './helpers/hand-client.js'

const MFA = 'urn:bound:acr:mfa'

let kit: Testkit
let agent: Agent
let dpopKey: DpopKey

beforeAll(async () => {
  kit = await startTestkit()
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
  kit.rs.clearStepUp()
  kit.ciba.setSlowDown(0)
  kit.ciba.setInterval(1)
  kit.ciba.enforceInterval(false)
})

interface BackchannelResult {
  status: number
  body: Record<string, unknown>
}

/** POSTs a backchannel authentication request as `kit.clients.ciba` (client_secret_basic). */
async function backchannel(params: Record<string, string>, client = kit.clients.ciba): Promise<BackchannelResult> {
  const response = await fetch(kit.as.backchannelAuthenticationEndpoint, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      authorization: basicAuthorization(client.clientId, client.clientSecret),
    },
    body: new URLSearchParams({ scope: 'openid orders:read', login_hint: 'alice', resource: kit.resource, ...params }).toString(),
    dispatcher: agent,
  })
  return { status: response.status, body: (await response.json()) as Record<string, unknown> }
}

async function start(params: Record<string, string> = {}): Promise<string> {
  const result = await backchannel(params)
  expect(result.status, JSON.stringify(result.body)).toBe(200)
  return result.body['auth_req_id'] as string
}

/** One CIBA poll with a DPoP proof (answering `use_dpop_nonce` once). */
function poll(authReqId: string, key: DpopKey | null = dpopKey): Promise<TokenResult> {
  return requestToken({
    tokenEndpoint: kit.as.tokenEndpoint,
    agent,
    authenticate: { client: kit.clients.ciba },
    ...(key === null ? {} : { dpopKey: key }),
    params: { grant_type: GRANT_TYPE_CIBA, auth_req_id: authReqId },
  })
}

describe('CIBA (poll mode)', () => {
  it('publishes the backchannel endpoint, poll mode and the grant type', async () => {
    const response = await fetch(`${kit.issuer}/.well-known/openid-configuration`, { dispatcher: agent })
    const metadata = (await response.json()) as Record<string, unknown>
    expect(metadata['backchannel_authentication_endpoint']).toBe(kit.ciba.endpoint)
    expect(kit.ciba.endpoint).toBe(`${kit.issuer}/backchannel`)
    expect(metadata['backchannel_token_delivery_modes_supported']).toEqual(['poll'])
    expect(metadata['grant_types_supported']).toContain(GRANT_TYPE_CIBA)
    expect((metadata['mtls_endpoint_aliases'] as Record<string, unknown>)['backchannel_authentication_endpoint']).toBe(`${kit.as.mtlsOrigin}/backchannel`)
  })

  it('pending → approved through the hook → a DPoP-bound token with the acr that passes the RS step-up', async () => {
    const result = await backchannel({ binding_message: 'W4SCT', acr_values: `${MFA} urn:bound:acr:pwd` })
    expect(result.status, JSON.stringify(result.body)).toBe(200)
    expect(result.body).toMatchObject({ interval: 1 })
    expect(result.body['expires_in']).toBeGreaterThan(200)
    const authReqId = result.body['auth_req_id'] as string

    const [pending] = kit.ciba.pending().filter((request) => request.authReqId === authReqId)
    expect(pending).toMatchObject({
      authReqId,
      clientId: 'ciba',
      accountId: 'alice',
      loginHint: 'alice',
      bindingMessage: 'W4SCT',
      acrValues: [MFA, 'urn:bound:acr:pwd'],
      scope: 'openid orders:read',
      resource: kit.resource,
      status: 'pending',
      interval: 1,
      consumed: false,
    })

    const early = await poll(authReqId)
    expect(early.status).toBe(400)
    expect(early.body['error']).toBe('authorization_pending')
    expect(early.nonceRetries).toBe(1) // the DPoP nonce challenge comes first
    expect(kit.ciba.get(authReqId)?.polls).toBe(1)

    await kit.ciba.approve(authReqId)
    expect(kit.ciba.get(authReqId)).toMatchObject({ status: 'approved', acr: MFA })
    expect(kit.ciba.pending().some((request) => request.authReqId === authReqId)).toBe(false)

    const token = await poll(authReqId)
    expect(token.status, JSON.stringify(token.body)).toBe(200)
    expect(token.body).toMatchObject({ token_type: 'DPoP', scope: 'orders:read' })
    expect(typeof token.body['id_token']).toBe('string')
    const accessToken = token.body['access_token'] as string
    const claims = decodeJwt(accessToken)
    expect(claims).toMatchObject({ sub: 'alice', client_id: 'ciba', aud: kit.resource, acr: MFA, scope: 'orders:read' })
    expect(typeof claims['auth_time']).toBe('number')
    expect((claims['cnf'] as { jkt?: string }).jkt).toBe(await calculateJwkThumbprint(dpopKey.publicJwk))
    // oidc-provider leaves acr out of ID tokens unless `acrValues` is configured (the testkit does not).
    expect(decodeJwt(token.body['id_token'] as string)).toMatchObject({ sub: 'alice', aud: 'ciba' })
    expect(kit.ciba.get(authReqId)?.consumed).toBe(true)

    kit.rs.requireStepUp('/payments', { acr_values: MFA, max_age: 60 })
    const call = await callResource({ url: `${kit.api}/payments`, agent, accessToken, dpopKey })
    expect(call.status, JSON.stringify(call.body)).toBe(200)
    expect(call.body).toMatchObject({ sub: 'alice', acr: MFA, binding: 'dpop' })

    const again = await poll(authReqId)
    expect(again.status).toBe(400)
    expect(again.body['error']).toBe('invalid_grant')
    expect(kit.as.counters()).toMatchObject({ cibaRequests: 1, byGrant: { [GRANT_TYPE_CIBA]: 1 } })
  })

  it('approves from onRequest before the response is sent, with the acr given to approve()', async () => {
    const seen: CibaRequest[] = []
    const unsubscribe = kit.ciba.onRequest((request) => {
      seen.push(request)
      void kit.ciba.approve(request.authReqId, { acr: 'urn:bound:acr:hwk' })
    })
    try {
      const authReqId = await start({ login_hint: 'bob' })
      expect(seen.map((request) => request.authReqId)).toEqual([authReqId])
      const token = await poll(authReqId)
      expect(token.status, JSON.stringify(token.body)).toBe(200)
      expect(decodeJwt(token.body['access_token'] as string)).toMatchObject({ sub: 'bob', acr: 'urn:bound:acr:hwk' })
    } finally {
      unsubscribe()
    }
  })

  it('waitForRequest resolves with the next request; deny gives access_denied', async () => {
    const waiting = kit.ciba.waitForRequest({ timeoutMs: 2000 })
    const authReqId = await start()
    expect((await waiting).authReqId).toBe(authReqId)
    await kit.ciba.deny(authReqId, { description: 'the user said no' })
    expect(kit.ciba.get(authReqId)?.status).toBe('denied')
    await expect(kit.ciba.approve(authReqId)).rejects.toThrow(/denied/)
    const denied = await poll(authReqId)
    expect(denied.status).toBe(400)
    expect(denied.body).toMatchObject({ error: 'access_denied', error_description: 'the user said no' })
  })

  it('an expired request gives expired_token', async () => {
    const authReqId = await start({ requested_expiry: '30' })
    expect(kit.ciba.get(authReqId)?.requestedExpiry).toBe(30)
    await kit.ciba.expire(authReqId)
    expect(kit.ciba.get(authReqId)?.status).toBe('expired')
    await expect(kit.ciba.approve(authReqId)).rejects.toThrow(/expired/)
    const expired = await poll(authReqId)
    expect(expired.status).toBe(400)
    expect(expired.body['error']).toBe('expired_token')
  })

  it('setSlowDown(n) answers the next n polls with slow_down, then polling goes on', async () => {
    const authReqId = await start()
    kit.ciba.setSlowDown(2)
    for (let i = 0; i < 2; i += 1) {
      const slow = await poll(authReqId)
      expect(slow.status).toBe(400)
      expect(slow.body['error']).toBe('slow_down')
    }
    const pending = await poll(authReqId)
    expect(pending.body['error']).toBe('authorization_pending')
    await kit.ciba.approve(authReqId)
    expect((await poll(authReqId)).status).toBe(200)
    expect(kit.as.counters().cibaSlowDowns).toBe(2)
    expect(kit.ciba.get(authReqId)?.polls).toBe(4)
  })

  it('enforceInterval answers polls sooner than the interval with slow_down', async () => {
    kit.ciba.enforceInterval(true)
    const authReqId = await start()
    const tooSoon = await poll(authReqId)
    expect(tooSoon.body['error']).toBe('slow_down')
    await new Promise((resolve) => setTimeout(resolve, 1050))
    const onTime = await poll(authReqId)
    expect(onTime.body['error']).toBe('authorization_pending')
  })

  it('setInterval changes (or removes) the interval of later responses', async () => {
    kit.ciba.setInterval(3)
    expect((await backchannel({})).body['interval']).toBe(3)
    kit.ciba.setInterval(undefined)
    expect((await backchannel({})).body).not.toHaveProperty('interval')
  })

  it('checks the request like oidc-provider: openid scope, binding_message, grant allowed', async () => {
    const noOpenid = await backchannel({ scope: 'orders:read' })
    expect(noOpenid.status).toBe(400)
    expect(noOpenid.body['error']).toBe('invalid_request')
    const badMessage = await backchannel({ binding_message: 'this binding message is far too long' })
    expect(badMessage.status).toBe(400)
    expect(badMessage.body['error']).toBe('invalid_binding_message')
    const noHint = await fetch(kit.as.backchannelAuthenticationEndpoint, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basicAuthorization(kit.clients.ciba.clientId, kit.clients.ciba.clientSecret) },
      body: new URLSearchParams({ scope: 'openid' }).toString(),
      dispatcher: agent,
    })
    expect(noHint.status).toBe(400)
    const notAllowed = await backchannel({}, kit.clients.secretBasic)
    expect(notAllowed.status).toBe(400)
    // oidc-provider answers a client without the CIBA grant with invalid_request.
    expect(notAllowed.body['error']).toBe('invalid_request')
    expect(notAllowed.body['error_description']).toMatch(/not allowed for this client/)
  })

  it('issues a Bearer token without a DPoP proof', async () => {
    const authReqId = await start({ scope: 'openid orders:write' })
    await kit.ciba.approve(authReqId)
    const token = await poll(authReqId, null)
    expect(token.status, JSON.stringify(token.body)).toBe(200)
    expect(token.body['token_type']).toBe('Bearer')
    const claims = decodeJwt(token.body['access_token'] as string)
    expect(claims['cnf']).toBeUndefined()
    expect(claims['scope']).toBe('orders:write')
    expect(claims['acr']).toBeUndefined()
  })

  it('offline_access gives an oidc-provider refresh token whose access tokens keep the acr', async () => {
    const authReqId = await start({ scope: 'openid offline_access orders:read', acr_values: MFA })
    await kit.ciba.approve(authReqId)
    const token = await poll(authReqId)
    expect(token.status, JSON.stringify(token.body)).toBe(200)
    const refreshToken = token.body['refresh_token']
    expect(typeof refreshToken).toBe('string')
    const refreshed = await requestToken({
      tokenEndpoint: kit.as.tokenEndpoint,
      agent,
      authenticate: { client: kit.clients.ciba },
      dpopKey,
      params: { grant_type: 'refresh_token', refresh_token: refreshToken as string },
    })
    expect(refreshed.status, JSON.stringify(refreshed.body)).toBe(200)
    expect(decodeJwt(refreshed.body['access_token'] as string)).toMatchObject({ sub: 'alice', acr: MFA, aud: kit.resource, scope: 'orders:read' })
  })
})
